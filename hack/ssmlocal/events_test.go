package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// eventStatuses decodes envelopes and returns their detail statuses.
func eventStatuses(t *testing.T, bodies [][]byte) []string {
	t.Helper()
	var statuses []string
	for _, b := range bodies {
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("event %s: %v", b, err)
		}
		statuses = append(statuses, e.Detail.Status)
	}
	return statuses
}

// waitEvents polls until the publisher has received n events.
func waitEvents(t *testing.T, pub *fakePublisher, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if bodies := pub.snapshot(); len(bodies) >= n {
			return bodies
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events, want %d", len(pub.snapshot()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStatusChangeEventsPublished(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{}
	l := newLab(t, withPublisher(pub))
	ok := l.shell("", "true", inst2)
	l.waitTerminal(ok, inst2)
	waitEvents(t, pub, 2)
	failed := l.shell("", "exit 1", inst2)
	l.waitTerminal(failed, inst2)
	bodies := waitEvents(t, pub, 4)

	if got := eventStatuses(t, bodies); strings.Join(got, ",") != "InProgress,Success,InProgress,Failed" {
		t.Errorf("event statuses %v", got)
	}
	// Decode generically so the test pins the wire names, not our struct.
	var e map[string]any
	if err := json.Unmarshal(bodies[1], &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"version":     "0",
		"detail-type": "EC2 Command Invocation Status-change Notification",
		"source":      "aws.ssm",
		"account":     "123456789012",
		"region":      "eu-west-1",
		"resources":   []any{"arn:aws:ec2:eu-west-1:123456789012:instance/" + inst2},
	}
	for k, v := range want {
		if got, _ := json.Marshal(e[k]); string(got) != mustJSON(t, v) {
			t.Errorf("%s = %s, want %s", k, got, mustJSON(t, v))
		}
	}
	if _, err := time.Parse(time.RFC3339, e["time"].(string)); err != nil || !strings.HasSuffix(e["time"].(string), "Z") {
		t.Errorf("time %v is not RFC3339 UTC: %v", e["time"], err)
	}
	if id, _ := e["id"].(string); len(id) != 36 {
		t.Errorf("id %q is not a UUID", id)
	}
	detail, _ := e["detail"].(map[string]any)
	if detail["command-id"] != ok || detail["document-name"] != "AWS-RunShellScript" || detail["instance-id"] != inst2 || detail["status"] != "Success" {
		t.Errorf("detail %v", detail)
	}
	if _, err := time.Parse(ssmTimeLayout, detail["requested-date-time"].(string)); err != nil {
		t.Errorf("requested-date-time: %v", err)
	}
}

func TestPublishFailureDoesNotAffectCommands(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{fail: true}
	l := newLab(t, withPublisher(pub))
	id := l.shell("", "echo fine", inst1)
	if out := l.waitTerminal(id, inst1); out.Status != types.CommandInvocationStatusSuccess {
		t.Errorf("status %q, want Success despite a failing publisher", out.Status)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSQSPublisher drives the real SDK path main uses (LoadDefaultConfig,
// AWS_ENDPOINT_URL_SQS) against a stub that speaks SQS's JSON protocol.
func TestSQSPublisher(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []map[string]string
	)
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		if r.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessage" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"__type":"InvalidAction"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		sent = append(sent, in)
		mu.Unlock()
		sum := md5.Sum([]byte(in["MessageBody"])) // the SDK verifies it
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_ = json.NewEncoder(w).Encode(map[string]string{"MessageId": newUUID(), "MD5OfMessageBody": hex.EncodeToString(sum[:])})
	}))
	defer stub.Close()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SQS": stub.URL, "AWS_ACCESS_KEY_ID": "AKIDLAB", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}

	ctx := context.Background()
	for _, queue := range []string{"http://sqs.local/123456789012/events", "http://sqs.local/123456789012/events.fifo"} {
		pub, err := newSQSPublisher(ctx, "eu-west-1", queue)
		if err != nil {
			t.Fatalf("newSQSPublisher: %v", err)
		}
		if err := pub.Publish(ctx, []byte(`{"detail":{}}`)); err != nil {
			t.Fatalf("Publish to %s: %v", queue, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("stub got %d messages, want 2", len(sent))
	}
	if sent[0]["QueueUrl"] != "http://sqs.local/123456789012/events" || sent[0]["MessageBody"] != `{"detail":{}}` || sent[0]["MessageGroupId"] != "" {
		t.Errorf("standard queue message %v", sent[0])
	}
	if sent[1]["MessageGroupId"] != fifoMessageGroup || len(sent[1]["MessageDeduplicationId"]) != 64 {
		t.Errorf("FIFO queue message %v, want a group and a deduplication id", sent[1])
	}
}
