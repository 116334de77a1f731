package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The network model makes the lab's loopback look like the path to a real
// AWS region: each request waits a latency drawn from a range before it is
// forwarded (Rule.Latency .. Rule.LatencyMax), bodies move no faster than
// a per-connection bandwidth (Rule.Bandwidth), and request rates above a
// service's published quota (Limit) get the service's throttling error, as
// AWS answers them, without reaching the upstream.

// Limit is a request-rate quota of a service's operations: Rate requests
// per second with bursts of Burst, counted separately for each partition.
// Beyond it a request is answered with the service's throttling error (S3:
// 503 SlowDown) and not forwarded.
type Limit struct {
	Service    string   `json:"service"`
	Operations []string `json:"operations"` // empty: every operation
	Rate       float64  `json:"rate"`
	Burst      int      `json:"burst"`
	// Partition is what the quota is counted per: "" one count for the
	// service (an account's API quota); "bucket" one per S3 bucket, which is
	// how a bucket S3 has not yet split by prefix behaves; "prefix:N" one
	// per bucket and first N key components, as S3 does once it has
	// partitioned a busy bucket.
	Partition string `json:"partition"`
}

func (l Limit) matches(service, op string) bool {
	if l.Service != "*" && l.Service != service {
		return false
	}
	if len(l.Operations) == 0 {
		return true
	}
	for _, o := range l.Operations {
		if o == op {
			return true
		}
	}
	return false
}

// partition names the count a request goes to under l.
func (l Limit) partition(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case l.Partition == "bucket":
		bucket, _, _ := strings.Cut(path, "/")
		return bucket
	case strings.HasPrefix(l.Partition, "prefix:"):
		n := 0
		for _, c := range strings.TrimPrefix(l.Partition, "prefix:") {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		parts := strings.SplitN(path, "/", n+2) // the bucket, N components, the rest
		if len(parts) > n+1 {
			parts = parts[:n+1]
		}
		return strings.Join(parts, "/")
	}
	return ""
}

// limiters holds the token buckets of the limits, one per limit and partition.
type limiters struct {
	mu      sync.Mutex
	limits  []Limit
	buckets map[limiterKey]*rate.Limiter
}

type limiterKey struct {
	limit     int
	partition string
}

func (ls *limiters) set(limits []Limit) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.limits, ls.buckets = limits, map[limiterKey]*rate.Limiter{}
}

func (ls *limiters) get() []Limit {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.limits
}

// allow takes a token from every limit the request falls under; false
// means one of them is exhausted.
func (ls *limiters) allow(r *http.Request, service, op string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	for i, l := range ls.limits {
		if !l.matches(service, op) {
			continue
		}
		k := limiterKey{i, l.partition(r)}
		b := ls.buckets[k]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(l.Rate), max(1, l.Burst))
			ls.buckets[k] = b
		}
		if !b.AllowN(now, 1) {
			return false
		}
	}
	return true
}

// paced limits a body to bytesPerSec, in chunks small enough that a short
// body is not held back by a whole burst.
type paced struct {
	lim *rate.Limiter
	ctx context.Context
}

const paceChunk = 32 << 10

func newPaced(ctx context.Context, bytesPerSec int64) paced {
	return paced{lim: rate.NewLimiter(rate.Limit(bytesPerSec), paceChunk), ctx: ctx}
}

func (p paced) wait(n int) error {
	return p.lim.WaitN(p.ctx, n)
}

// pacedReader is a request body read at the connection's bandwidth.
type pacedReader struct {
	io.ReadCloser
	paced
}

func (r pacedReader) Read(b []byte) (int, error) {
	if len(b) > paceChunk {
		b = b[:paceChunk]
	}
	n, err := r.ReadCloser.Read(b)
	if n > 0 {
		if werr := r.wait(n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// pacedWriter is a response written at the connection's bandwidth.
type pacedWriter struct {
	http.ResponseWriter
	paced
}

func (w pacedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), paceChunk)
		if err := w.wait(n); err != nil {
			return written, err
		}
		m, err := w.ResponseWriter.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (w pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
