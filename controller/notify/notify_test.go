package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

var partial = Notice{Cluster: "lab", Job: "42", Run: 1, User: "alice", Outcome: "partial", URI: "s3://b/p/lab/42/run-1/", Files: 7, Bytes: 4096}

func fast(outcomes ...string) Options {
	return Options{Outcomes: outcomes, Attempts: 3, Backoff: time.Millisecond, Timeout: 200 * time.Millisecond}
}

// A webhook gets the summary as Slack's "text" and the notice as JSON; one
// that fails is tried again until it takes it.
func TestWebhookRetriesUntilItTakes(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	n := New(fast("failed", "partial"), []Sink{&Webhook{URL: srv.URL}}, zaptest.NewLogger(t), reg)
	run(t, n)
	n.Notify(Notice{Job: "41", Outcome: "complete"}) // not an outcome to tell
	n.Notify(partial)
	waitFor(t, func() bool { return testutil.ToFloat64(n.metrics.WithLabelValues("webhook", "sent")) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || calls.Load() != 3 {
		t.Fatalf("%d notices delivered in %d calls: %v", len(got), calls.Load(), got)
	}
	want := "spotrescue lab: job 42 (run 1, user alice) rescue partial: 7 files, 4096 bytes at s3://b/p/lab/42/run-1/"
	if got[0]["text"] != want || got[0]["spotrescue"].(map[string]any)["outcome"] != "partial" {
		t.Errorf("delivered %v, want text %q", got[0], want)
	}
}

// A webhook that hangs costs each attempt its timeout and is given up;
// while the sender waits on it, Notify never blocks: past the queue's size
// notices are dropped and counted.
func TestHangingWebhookNeverBlocksNotify(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	opts := fast()
	opts.QueueSize = 2
	n := New(opts, []Sink{&Webhook{URL: srv.URL}}, zaptest.NewLogger(t), nil)
	run(t, n)
	start := time.Now()
	for range 50 {
		n.Notify(partial)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("50 notices took %s to queue", took)
	}
	if dropped := testutil.ToFloat64(n.metrics.WithLabelValues("webhook", "dropped")); dropped < 47 {
		t.Errorf("%v dropped, want at least 47 of 50 with room for 2 and 1 in flight", dropped)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(n.metrics.WithLabelValues("webhook", "failed")) >= 1 })
}

// run sends n's notices until the test ends, and waits for the sender to
// stop, so that nothing it logs outlives the test.
func run(t *testing.T, n *Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met in 10 s")
}
