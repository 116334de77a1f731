package main

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strconv"
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
	// LatencyMax, when above Latency, makes the added latency a uniform
	// draw between the two for each request: the spread of a real
	// service's time to first byte.
	LatencyMax Duration `json:"latency_max"`
	// Bandwidth caps each request's body and its response's body at this
	// many bytes per second: a connection's throughput to the service.
	Bandwidth int64 `json:"bandwidth"`
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

	limits limiters

	mu    sync.Mutex
	rules []Rule
	rnd   *rand.Rand
	stats map[string]int
}

// upstreamTransport keeps as many connections to the upstream open as
// clients keep to the proxy: the default two idle ones per host would make
// a benchmark with a hundred requests in flight open and close a
// connection for nearly every request.
var upstreamTransport = func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 1024
	return t
}()

func newProxy(byService map[string]*url.URL, def *url.URL, seed int64) *proxy {
	p := &proxy{upstreams: map[string]*httputil.ReverseProxy{}, rnd: rand.New(rand.NewSource(seed)), stats: map[string]int{}}
	reverse := func(u *url.URL) *httputil.ReverseProxy {
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = upstreamTransport
		return rp
	}
	for svc, u := range byService {
		p.upstreams[svc] = reverse(u)
	}
	p.fallback = reverse(def)
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_fault/rules":
		p.serveRules(w, r)
		return
	case "/_fault/limits":
		p.serveLimits(w, r)
		return
	case "/_fault/stats":
		p.serveStats(w)
		return
	}
	service, op := identify(r)
	fault, latency, bandwidth := p.pick(service, op)
	if fault == "" && !p.limits.allow(r, service, op) {
		fault = "throttle"
	}
	if latency > 0 {
		time.Sleep(latency)
	}
	if bandwidth > 0 {
		pace := newPaced(r.Context(), bandwidth)
		r.Body = pacedReader{ReadCloser: r.Body, paced: pace}
		w = pacedWriter{ResponseWriter: w, paced: pace}
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

// pick draws the fault and the latency for one request from the first
// matching rule, and returns its bandwidth.
func (p *proxy) pick(service, op string) (string, time.Duration, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if !rule.matches(service, op) {
			continue
		}
		latency := time.Duration(rule.Latency)
		if spread := time.Duration(rule.LatencyMax) - latency; spread > 0 {
			latency += time.Duration(p.rnd.Int63n(int64(spread)))
		}
		x := p.rnd.Float64()
		for _, f := range []struct {
			name  string
			share float64
		}{{"throttle", rule.Throttle}, {"error", rule.Error}, {"drop", rule.Drop}, {"lose", rule.Lose}} {
			if x < f.share {
				return f.name, latency, rule.Bandwidth
			}
			x -= f.share
		}
		return "", latency, rule.Bandwidth
	}
	return "", 0, 0
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

func (p *proxy) serveLimits(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		var limits []Limit
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&limits); err != nil {
			http.Error(w, "limits: "+err.Error(), http.StatusBadRequest)
			return
		}
		p.limits.set(limits)
	}
	json.NewEncoder(w).Encode(p.limits.get())
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
	copying := r.Header.Get("X-Amz-Copy-Source") != ""
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber") && copying:
		return "UploadPartCopy"
	case r.Method == http.MethodPut && object && copying:
		return "CopyObject"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
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
	case r.Method == http.MethodDelete && object:
		return "DeleteObject"
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
	body := fmt.Sprintf(`{"__type":%q,"message":%q}`, code, msg)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	// DynamoDB signs every answer with the CRC32 of its body, and the SDK
	// checks it.
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(status)
	io.WriteString(w, body)
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
