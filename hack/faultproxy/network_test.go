package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// echo is an upstream that reads the whole request body and answers GETs
// with size bytes.
func echo(t *testing.T, size int) (*url.URL, *atomic.Int64) {
	hits := &atomic.Int64{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			w.Write(bytes.Repeat([]byte("x"), size))
		}
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	return u, hits
}

func front(t *testing.T, up *url.URL, rules []Rule, limits []Limit) string {
	p := newProxy(nil, up, 1)
	p.rules = rules
	p.limits.set(limits)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

func s3At(endpoint string, attempts int) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer:     retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = attempts })})
}

// Each request waits a latency drawn from the rule's range, not always the same.
func TestLatencyIsDrawnFromTheRange(t *testing.T) {
	up, _ := echo(t, 0)
	endpoint := front(t, up, []Rule{{Service: "*", Operation: "*", Latency: Duration(20 * time.Millisecond), LatencyMax: Duration(60 * time.Millisecond)}}, nil)
	c := s3At(endpoint, 1)
	var fastest, slowest time.Duration
	for i := range 15 {
		start := time.Now()
		if _, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if took < 20*time.Millisecond {
			t.Fatalf("request %d took %s, below the 20ms floor", i, took)
		}
		if i == 0 || took < fastest {
			fastest = took
		}
		slowest = max(slowest, took)
	}
	if slowest-fastest < 5*time.Millisecond {
		t.Errorf("15 requests took %s to %s: the latency is not drawn from 20-60ms", fastest, slowest)
	}
}

// Bodies move at the rule's bandwidth, both ways.
func TestBandwidthCapsBodies(t *testing.T) {
	const size, bw = 1 << 20, 4 << 20 // 1 MiB at 4 MiB/s: at least ~240 ms each way
	up, _ := echo(t, size)
	endpoint := front(t, up, []Rule{{Service: "s3", Operation: "*", Bandwidth: bw}}, nil)
	c := s3At(endpoint, 1)
	start := time.Now()
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader(make([]byte, size))})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("a 1 MiB PUT at 4 MiB/s took %s", took)
	}
	start = time.Now()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, out.Body)
	out.Body.Close()
	if took := time.Since(start); n != size || took < 200*time.Millisecond {
		t.Errorf("a 1 MiB GET at 4 MiB/s: %d bytes in %s", n, took)
	}
}

// Beyond a limit's rate the proxy answers SlowDown without forwarding; each
// bucket has its own count, and operations outside the limit pass.
func TestLimitAnswersSlowDownPerPartition(t *testing.T) {
	up, hits := echo(t, 0)
	endpoint := front(t, up, nil, []Limit{{Service: "s3", Operations: []string{"PutObject"}, Rate: 1, Burst: 10, Partition: "bucket"}})
	c := s3At(endpoint, 1)
	put := func(bucket string) error {
		_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/k"), Body: strings.NewReader("x")})
		return err
	}
	slow := 0
	for range 20 {
		err := put("one")
		var ae smithy.APIError
		switch {
		case err == nil:
		case errors.As(err, &ae) && ae.ErrorCode() == "SlowDown":
			slow++
		default:
			t.Fatal(err)
		}
	}
	if slow < 9 || hits.Load() > 11 {
		t.Fatalf("20 PUTs against a burst of 10: %d SlowDown, %d forwarded", slow, hits.Load())
	}
	if err := put("two"); err != nil {
		t.Errorf("another bucket has its own count: %v", err)
	}
	if _, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("one"), Key: aws.String("a/k")}); err != nil {
		t.Errorf("HeadObject is not limited: %v", err)
	}
}

func TestLimitPartitions(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "/bucket/spotrescue/node-1/job-7/a/b.dat", nil)
	for _, tc := range []struct{ partition, want string }{
		{"", ""}, {"bucket", "bucket"}, {"prefix:1", "bucket/spotrescue"}, {"prefix:3", "bucket/spotrescue/node-1/job-7"}, {"prefix:9", "bucket/spotrescue/node-1/job-7/a/b.dat"},
	} {
		if got := (Limit{Partition: tc.partition}).partition(r); got != tc.want {
			t.Errorf("partition %q: %q, want %q", tc.partition, got, tc.want)
		}
	}
}

// The SDK's retries back off from SlowDown until the requests get through.
func TestSlowDownIsRetried(t *testing.T) {
	up, hits := echo(t, 0)
	endpoint := front(t, up, nil, []Limit{{Service: "s3", Operations: []string{"PutObject"}, Rate: 20, Burst: 1, Partition: "bucket"}})
	c := s3At(endpoint, 20)
	for range 10 {
		if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 10 {
		t.Errorf("upstream saw %d PUTs, want 10", hits.Load())
	}
}

// -config starts the proxy with rules and limits, and names a mistyped field.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.json"
	os.WriteFile(good, []byte(`{"rules":[{"service":"s3","operation":"*","latency":"15ms","latency_max":"40ms","bandwidth":104857600}],
		"limits":[{"service":"s3","operations":["PutObject"],"rate":3500,"burst":3500,"partition":"bucket"}]}`), 0o644)
	p := newProxy(nil, &url.URL{}, 1)
	if err := p.load(good); err != nil {
		t.Fatal(err)
	}
	if len(p.rules) != 1 || time.Duration(p.rules[0].LatencyMax) != 40*time.Millisecond || p.rules[0].Bandwidth != 100<<20 || p.limits.get()[0].Rate != 3500 {
		t.Errorf("loaded %+v %+v", p.rules, p.limits.get())
	}
	bad := dir + "/bad.json"
	os.WriteFile(bad, []byte(`{"rules":[{"service":"s3","latencymax":"40ms"}]}`), 0o644)
	if err := p.load(bad); err == nil || !strings.Contains(err.Error(), "latencymax") {
		t.Errorf("a mistyped field: %v", err)
	}
}

// -route sends a service to its own upstream.
func TestRouteFlag(t *testing.T) {
	r := routeFlag{}
	if err := r.Set("sqs=http://127.0.0.1:9000"); err != nil || r["sqs"].Host != "127.0.0.1:9000" {
		t.Fatalf("route: %v, %v", r, err)
	}
	for _, bad := range []string{"sqs", "=http://x:1", "sqs=nohost"} {
		if err := r.Set(bad); err == nil {
			t.Errorf("-route %q accepted", bad)
		}
	}
	sqsUp, sqsHits := echo(t, 0)
	otherUp, otherHits := echo(t, 0)
	p := newProxy(map[string]*url.URL{"sqs": sqsUp}, otherUp, 1)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	for _, svc := range []string{"sqs", "dynamodb"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=k/20261207/us-east-1/"+svc+"/aws4_request, SignedHeaders=host, Signature=x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if sqsHits.Load() != 1 || otherHits.Load() != 1 {
		t.Errorf("sqs upstream %d, default %d; want 1 each", sqsHits.Load(), otherHits.Load())
	}
}
