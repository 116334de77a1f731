// Command faultproxy sits between spotrescue and the lab's AWS endpoints
// and breaks things on purpose: for each service and operation it injects a
// configurable share of throttling errors, 500/503 responses, added latency,
// connections dropped before the request is forwarded, and responses lost
// after it was (the request happened; the caller never hears so).
//
// Requests are routed by the SigV4 credential scope: ssm to -ssm-upstream,
// a service named by -route service=URL to its own upstream (one emulator
// process per service), everything else to -upstream. Rules change at runtime:
//
//	PUT  /_fault/rules  [{"service":"*","operation":"*","throttle":0.1,"error":0.05,"drop":0.02,"lose":0.02,"latency":"20ms"}]
//	GET  /_fault/stats  counts of forwarded and injected requests per service/operation/fault
//
// The first matching rule applies; "*" matches anything.
//
// A rule can also model the network to a real region rather than break it:
// a latency drawn for each request between "latency" and "latency_max", and
// a "bandwidth" in bytes per second for each connection's bodies. Request
// rate quotas (S3's per-prefix 3,500 writes and 5,500 reads per second, an
// API's calls per second) are limits, answered beyond their rate with the
// service's throttling error:
//
//	PUT  /_fault/limits [{"service":"s3","operations":["PutObject"],"rate":3500,"burst":3500,"partition":"bucket"}]
//
// -config names a JSON file {"rules": [...], "limits": [...]} to start with.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4575", "address to serve on (loopback only)")
	upstream := flag.String("upstream", "http://127.0.0.1:4570", "endpoint for every service but SSM (moto_server)")
	ssmUpstream := flag.String("ssm-upstream", "http://127.0.0.1:4580", "SSM endpoint (hack/ssmlocal)")
	seed := flag.Int64("seed", 1, "random seed, so a failing run can be replayed")
	config := flag.String("config", "", `JSON file {"rules": [...], "limits": [...]} to start with`)
	routes := routeFlag{}
	flag.Var(routes, "route", "service=URL: send that service's requests (by SigV4 scope: sqs, dynamodb, s3, ssm) to its own upstream; repeatable")
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
	if _, ok := routes["ssm"]; !ok {
		routes["ssm"] = ssm
	}
	p := newProxy(routes, def, *seed)
	if *config != "" {
		if err := p.load(*config); err != nil {
			log.Fatalf("faultproxy: -config: %v", err)
		}
	}
	log.Printf("faultproxy: serving on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, p))
}

// load reads a starting configuration of rules and limits.
func (p *proxy) load(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var c struct {
		Rules  []Rule  `json:"rules"`
		Limits []Limit `json:"limits"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p.mu.Lock()
	p.rules = c.Rules
	p.mu.Unlock()
	p.limits.set(c.Limits)
	return nil
}

// routeFlag collects -route service=URL.
type routeFlag map[string]*url.URL

func (r routeFlag) String() string { return fmt.Sprint(map[string]*url.URL(r)) }

func (r routeFlag) Set(v string) error {
	svc, raw, ok := strings.Cut(v, "=")
	u, err := url.Parse(raw)
	if !ok || svc == "" || err != nil || u.Host == "" {
		return fmt.Errorf("%q: want service=http://host:port", v)
	}
	r[svc] = u
	return nil
}
