package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// lab starts an upstream that answers every request with an empty success,
// the proxy in front of it, and returns the proxy's URL and the upstream's hit count.
func lab(t *testing.T, rules []Rule) (string, *atomic.Int64) {
	hits := &atomic.Int64{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("{}"))
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	p := newProxy(nil, u, 1)
	p.rules = rules
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return front.URL, hits
}

func dynamo(endpoint string, attempts int) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer:     retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = attempts; o.MaxBackoff = 1 }),
	})
}

// Throttling looks like DynamoDB's own, so the SDK retries it; the request
// never reaches the upstream.
func TestThrottleIsTheServicesOwnError(t *testing.T) {
	endpoint, hits := lab(t, []Rule{{Service: "dynamodb", Operation: "ListTables", Throttle: 1}})
	_, err := dynamo(endpoint, 3).ListTables(context.Background(), &dynamodb.ListTablesInput{})
	var pt *dbtypes.ProvisionedThroughputExceededException
	if !errors.As(err, &pt) {
		t.Fatalf("err = %v, want ProvisionedThroughputExceededException", err)
	}
	if hits.Load() != 0 {
		t.Errorf("throttled requests reached the upstream %d times", hits.Load())
	}
}

// With a share of faults the SDK's retries get through.
func TestRetriesGetThroughPartialFaults(t *testing.T) {
	endpoint, hits := lab(t, []Rule{{Service: "*", Operation: "*", Throttle: 0.3, Error: 0.2}})
	c := dynamo(endpoint, 20)
	for range 20 {
		if _, err := c.ListTables(context.Background(), &dynamodb.ListTablesInput{}); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 20 {
		t.Errorf("upstream saw %d requests, want 20", hits.Load())
	}
}

// A lost response means the upstream did the work and the caller saw a
// broken connection; a drop means it never got there.
func TestDropAndLose(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		hits int64
	}{
		{Rule{Service: "*", Operation: "*", Drop: 1}, 0},
		{Rule{Service: "*", Operation: "*", Lose: 1}, 1},
	} {
		endpoint, hits := lab(t, []Rule{tc.rule})
		_, err := dynamo(endpoint, 1).ListTables(context.Background(), &dynamodb.ListTablesInput{})
		if err == nil {
			t.Fatalf("%+v: no error", tc.rule)
		}
		if hits.Load() != tc.hits {
			t.Errorf("%+v: upstream hit %d times, want %d", tc.rule, hits.Load(), tc.hits)
		}
	}
}

// S3 operations are told apart and throttled with SlowDown.
func TestS3OperationsAndSlowDown(t *testing.T) {
	endpoint, hits := lab(t, []Rule{{Service: "s3", Operation: "PutObject", Throttle: 1}})
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer:     retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 2; o.MaxBackoff = 1 })})
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: strings.NewReader("x")})
	if err == nil || !strings.Contains(err.Error(), "SlowDown") {
		t.Fatalf("err = %v, want SlowDown", err)
	}
	c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if hits.Load() != 1 {
		t.Errorf("GetObject should pass: upstream hits %d", hits.Load())
	}
}

func TestRulesAndStatsEndpoints(t *testing.T) {
	endpoint, _ := lab(t, nil)
	req, _ := http.NewRequest(http.MethodPut, endpoint+"/_fault/rules", strings.NewReader(`[{"service":"dynamodb","operation":"*","error":1,"latency":"1ms"}]`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("put rules: %v", err)
	}
	dynamo(endpoint, 1).ListTables(context.Background(), &dynamodb.ListTablesInput{})
	resp, err := http.Get(endpoint + "/_fault/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]int
	json.NewDecoder(resp.Body).Decode(&stats)
	if stats["dynamodb/ListTables/error"] != 1 {
		t.Errorf("stats %v", stats)
	}
}
