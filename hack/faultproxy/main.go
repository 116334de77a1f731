// Command faultproxy sits between spotrescue and the lab's AWS endpoints
// and breaks things on purpose: for each service and operation it injects a
// configurable share of throttling errors, 500/503 responses, added latency,
// connections dropped before the request is forwarded, and responses lost
// after it was (the request happened; the caller never hears so).
//
// Requests are routed by the SigV4 credential scope: ssm to -ssm-upstream,
// everything else to -upstream. Rules change at runtime:
//
//	PUT  /_fault/rules  [{"service":"*","operation":"*","throttle":0.1,"error":0.05,"drop":0.02,"lose":0.02,"latency":"20ms"}]
//	GET  /_fault/stats  counts of forwarded and injected requests per service/operation/fault
//
// The first matching rule applies; "*" matches anything.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/url"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4575", "address to serve on (loopback only)")
	upstream := flag.String("upstream", "http://127.0.0.1:4570", "endpoint for every service but SSM (moto_server)")
	ssmUpstream := flag.String("ssm-upstream", "http://127.0.0.1:4580", "SSM endpoint (hack/ssmlocal)")
	seed := flag.Int64("seed", 1, "random seed, so a failing run can be replayed")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("faultproxy: -listen %q must be a loopback address", *listen)
	}
	def, err := url.Parse(*upstream)
	if err != nil {
		log.Fatalf("faultproxy: -upstream: %v", err)
	}
	ssm, err := url.Parse(*ssmUpstream)
	if err != nil {
		log.Fatalf("faultproxy: -ssm-upstream: %v", err)
	}
	p := newProxy(map[string]*url.URL{"ssm": ssm}, def, *seed)
	log.Printf("faultproxy: serving on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, p))
}
