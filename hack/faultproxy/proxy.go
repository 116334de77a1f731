package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Rule says how often each fault hits requests of a service and operation.
type Rule struct {
	Service   string   `json:"service"`
	Operation string   `json:"operation"`
	Throttle  float64  `json:"throttle"` // the service's throttling error
	Error     float64  `json:"error"`    // 500 or 503
	Drop      float64  `json:"drop"`     // connection closed before forwarding
	Lose      float64  `json:"lose"`     // forwarded, then the connection closed instead of answering
	Latency   Duration `json:"latency"`  // added before forwarding
}

// Duration reads "20ms" in JSON.
type Duration time.Duration

// UnmarshalJSON accepts Go duration strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// MarshalJSON writes Go duration strings.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (r Rule) matches(service, op string) bool {
	return (r.Service == "*" || r.Service == service) && (r.Operation == "*" || r.Operation == op)
}

type proxy struct {
	upstreams map[string]*httputil.ReverseProxy
	fallback  *httputil.ReverseProxy

	mu    sync.Mutex
	rules []Rule
	rnd   *rand.Rand
	stats map[string]int
}

func newProxy(byService map[string]*url.URL, def *url.URL, seed int64) *proxy {
	p := &proxy{upstreams: map[string]*httputil.ReverseProxy{}, rnd: rand.New(rand.NewSource(seed)), stats: map[string]int{}}
	for svc, u := range byService {
		p.upstreams[svc] = httputil.NewSingleHostReverseProxy(u)
	}
	p.fallback = httputil.NewSingleHostReverseProxy(def)
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_fault/rules":
		p.serveRules(w, r)
		return
	case "/_fault/stats":
		p.serveStats(w)
		return
	}
	service, op := identify(r)
	fault, latency := p.pick(service, op)
	if latency > 0 {
		time.Sleep(latency)
	}
	p.count(service, op, fault)
	switch fault {
	case "throttle":
		throttle(w, service)
	case "error":
		serverError(w, service, p.coin())
	case "drop":
		hangUp(w)
	case "lose":
		p.upstream(service).ServeHTTP(discard{header: http.Header{}}, r)
		hangUp(w)
	default:
		p.upstream(service).ServeHTTP(w, r)
	}
}

func (p *proxy) upstream(service string) *httputil.ReverseProxy {
	if u, ok := p.upstreams[service]; ok {
		return u
	}
	return p.fallback
}

// pick draws the fault for one request from the first matching rule.
func (p *proxy) pick(service, op string) (string, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if !rule.matches(service, op) {
			continue
		}
		x := p.rnd.Float64()
		for _, f := range []struct {
			name  string
			share float64
		}{{"throttle", rule.Throttle}, {"error", rule.Error}, {"drop", rule.Drop}, {"lose", rule.Lose}} {
			if x < f.share {
				return f.name, time.Duration(rule.Latency)
			}
			x -= f.share
		}
		return "", time.Duration(rule.Latency)
	}
	return "", 0
}

func (p *proxy) coin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rnd.Intn(2) == 0
}

func (p *proxy) count(service, op, fault string) {
	if fault == "" {
		fault = "forwarded"
	}
	p.mu.Lock()
	p.stats[service+"/"+op+"/"+fault]++
	p.mu.Unlock()
}

func (p *proxy) serveRules(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		var rules []Rule
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rules); err != nil {
			http.Error(w, "rules: "+err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.rules = rules
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	json.NewEncoder(w).Encode(p.rules)
}

func (p *proxy) serveStats(w http.ResponseWriter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, len(p.stats))
	for k := range p.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]int, len(keys))
	for _, k := range keys {
		out[k] = p.stats[k]
	}
	json.NewEncoder(w).Encode(out)
}

var scopeRe = regexp.MustCompile(`Credential=[^/]+/[0-9]{8}/[^/]+/([^/]+)/aws4_request`)

// identify names the service (from the SigV4 scope) and the operation (from
// X-Amz-Target for JSON protocols, from method and query for S3).
func identify(r *http.Request) (service, op string) {
	service = "unknown"
	if m := scopeRe.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		service = m[1]
	}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, op, _ = strings.Cut(t, ".")
		return service, op
	}
	if service == "s3" {
		return service, s3Operation(r)
	}
	return service, r.Method
}

func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	object := strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut && object:
		return "PutObject"
	case r.Method == http.MethodGet && object:
		return "GetObject"
	case r.Method == http.MethodHead && object:
		return "HeadObject"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet:
		return "ListObjectsV2"
	}
	return r.Method
}

// throttle answers with the service's own throttling error, which the SDK
// retries with backoff.
func throttle(w http.ResponseWriter, service string) {
	switch service {
	case "s3":
		xmlError(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case "dynamodb":
		jsonError(w, http.StatusBadRequest, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded.")
	case "sqs":
		w.Header().Set("x-amzn-query-error", "RequestThrottled;Sender")
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#RequestThrottled", "Request is throttled.")
	default:
		jsonError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
	}
}

func serverError(w http.ResponseWriter, service string, unavailable bool) {
	status, code := http.StatusInternalServerError, "InternalServerError"
	if unavailable {
		status, code = http.StatusServiceUnavailable, "ServiceUnavailable"
	}
	if service == "s3" {
		xmlError(w, status, map[bool]string{true: "ServiceUnavailable", false: "InternalError"}[unavailable], "injected by faultproxy")
		return
	}
	jsonError(w, status, code, "injected by faultproxy")
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"__type":%q,"message":%q}`, code, msg)
}

func xmlError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId></Error>`, code, msg)
}

// hangUp closes the client connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // net/http closes the connection for this value
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

// discard swallows the upstream's answer of a "lost" response.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
