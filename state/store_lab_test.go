//go:build lab

package state_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// newStore gives each test its own table so tests never see each other's records.
func newStore(t *testing.T) *state.Store {
	l := lab.Get(t)
	name := fmt.Sprintf("test-%s-%d", t.Name(), time.Now().UnixNano())
	if err := state.CreateTable(context.Background(), l.DynamoDB(), name); err != nil {
		t.Fatal(err)
	}
	return state.New(l.DynamoDB(), name)
}

func TestRecordLifecycle(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	k := state.Key{Cluster: "lab", JobID: "42", Run: 0}
	now := time.Now().UTC().Truncate(time.Millisecond)
	r := &state.Record{Key: k, Phase: state.Detected, User: "alice", Nodes: []state.Node{{Name: "compute-1", Instance: "i-0c0ffee0000000001", Interrupted: true}}, Times: state.Times{Detected: now}}
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &state.Record{Key: k, Phase: state.Detected, Times: state.Times{Detected: now}}); !errors.Is(err, state.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}

	stale, _ := s.Get(ctx, k)
	r.Phase, r.Times.Held = state.Held, now.Add(time.Second)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	stale.Phase = state.Failed
	if err := s.Update(ctx, stale); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("update from a stale read: %v, want ErrConflict", err)
	}

	got, err := s.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != state.Held || got.Version != 2 || got.User != "alice" || !got.Times.Held.Equal(now.Add(time.Second)) || got.Nodes[0].Instance != "i-0c0ffee0000000001" {
		t.Fatalf("read back %+v", got)
	}
	if _, err := s.Get(ctx, state.Key{Cluster: "lab", JobID: "43"}); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
}

// Active lists exactly the records of the cluster that are not Done; Runs
// lists a job's runs.
func TestQueries(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	base := time.Now().UTC().Add(-time.Hour)
	for i, ph := range []state.Phase{state.Done, state.Dispatched, state.Done, state.Held} {
		r := &state.Record{Key: state.Key{Cluster: "lab", JobID: fmt.Sprint(100 + i)}, Phase: ph, Times: state.Times{Detected: base.Add(time.Duration(i) * time.Minute)}}
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	other := &state.Record{Key: state.Key{Cluster: "other", JobID: "1"}, Phase: state.Held, Times: state.Times{Detected: base}}
	if err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	active, err := s.Active(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 2 || active[0].JobID != "101" || active[1].JobID != "103" {
		t.Fatalf("active = %v, want jobs 101 and 103", active)
	}
	runs, err := s.Runs(ctx, "lab", "101")
	if err != nil || len(runs) != 1 || runs[0].Phase != state.Dispatched {
		t.Fatalf("runs = %v, %v", ids(runs), err)
	}
}

func ids(rs []*state.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.JobID)
	}
	return out
}

// List pages through a cluster's records newest first with filters,
// without skipping or repeating a record.
func TestListPagesAndFilters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	base := time.Now().UTC().Add(-time.Hour)
	for i := range 7 {
		r := &state.Record{Key: state.Key{Cluster: "lab", JobID: fmt.Sprint(200 + i)}, Phase: state.Done, User: []string{"alice", "bob"}[i%2],
			Outcome: []state.Outcome{state.OutcomeComplete, state.OutcomePartial}[i%3/2], Times: state.Times{Detected: base.Add(time.Duration(i) * time.Minute)}}
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	token := ""
	for pages := 0; ; pages++ {
		recs, next, err := s.List(ctx, state.ListOptions{Cluster: "lab", Limit: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ids(recs)...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		token = next
	}
	if fmt.Sprint(all) != "[206 205 204 203 202 201 200]" {
		t.Fatalf("pages gave %v", all)
	}
	recs, _, err := s.List(ctx, state.ListOptions{Cluster: "lab", User: "alice", Outcome: state.OutcomeComplete})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.User != "alice" || r.Outcome != state.OutcomeComplete {
			t.Errorf("filter let through %+v", r)
		}
	}
	if len(recs) == 0 {
		t.Error("filter returned nothing")
	}
	if _, _, err := s.List(ctx, state.ListOptions{Cluster: "lab", PageToken: "garbage"}); err == nil {
		t.Error("a made-up page token was accepted")
	}
}

// PutInterruptions writes any number of interruptions in batches.
func TestPutInterruptions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var ins []*state.Interruption
	for i := range 60 {
		ins = append(ins, &state.Interruption{Instance: fmt.Sprintf("i-0c0ffee%010x", i), Node: fmt.Sprint("n", i), Jobs: []state.Key{{Cluster: "lab", JobID: fmt.Sprint(i)}}})
	}
	if err := s.PutInterruptions(ctx, ins); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetInterruption(ctx, fmt.Sprintf("i-0c0ffee%010x", 59))
	if err != nil || got.Node != "n59" || got.Jobs[0].JobID != "59" {
		t.Fatalf("interruption 60: %+v %v", got, err)
	}
	if exp, err := s.ExpiryOf(ctx, fmt.Sprintf("i-0c0ffee%010x", 0)); err != nil || time.Until(exp) < 6*24*time.Hour {
		t.Errorf("TTL attribute %s %v", exp, err)
	}
}

func TestExists(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var keys []state.Key
	for i := range 150 {
		k := state.Key{Cluster: "lab", JobID: fmt.Sprint(500 + i), Run: i % 3}
		keys = append(keys, k)
		if i%2 == 0 {
			if err := s.Create(ctx, &state.Record{Key: k, Phase: state.Held, Times: state.Times{Detected: time.Now()}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.Exists(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got[k] != (i%2 == 0) {
			t.Errorf("%s: exists %v", k, got[k])
		}
	}
}

// CreateAll writes 250 records; the ones that exist already, or appear
// twice, come back ErrExists and are left as they were.
func TestCreateAll(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	rec := func(i int, phase state.Phase) *state.Record {
		return &state.Record{Key: state.Key{Cluster: "lab", JobID: fmt.Sprint(1000 + i)}, Phase: phase, User: "alice", Times: state.Times{Detected: time.Now()}}
	}
	for _, i := range []int{3, 150, 249} {
		if err := s.Create(ctx, rec(i, state.Requeued)); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*state.Record
	for i := range 250 {
		recs = append(recs, rec(i, state.Dispatched))
	}
	recs = append(recs, rec(7, state.Held)) // the same key twice
	var mu sync.Mutex
	calls := map[string]int{}
	opts := lab.Get(t).DynamoDB().Options()
	opts.APIOptions = append(opts.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			mu.Lock()
			calls[awsmiddleware.GetOperationName(ctx)]++
			mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	})
	errs := state.New(dynamodb.New(opts), s.Table()).CreateAll(ctx, recs)
	// One conditional write per distinct record, nothing else.
	if calls["PutItem"] != 250 || len(calls) != 1 {
		t.Errorf("calls %v, want 250 PutItem and nothing else", calls)
	}
	for i, err := range errs {
		exists := i == 3 || i == 150 || i == 249 || i == 250
		if exists != errors.Is(err, state.ErrExists) || (!exists && err != nil) {
			t.Errorf("record %d (%s): %v", i, recs[i].Key, err)
		}
	}
	for _, c := range []struct {
		i     int
		phase state.Phase
	}{{0, state.Dispatched}, {3, state.Requeued}, {7, state.Dispatched}, {99, state.Dispatched}, {150, state.Requeued}, {248, state.Dispatched}} {
		got, err := s.Get(ctx, recs[c.i].Key)
		if err != nil || got.Phase != c.phase || got.Version != 1 {
			t.Errorf("record %d read back %v (version %v), %v; want %s", c.i, got.Phase, got.Version, err, c.phase)
		}
	}
}

// One holder at a time; the lease passes on when it expires or is
// released; a deposed holder can neither renew nor overwrite a record its
// successor wrote (fencing by the lease version).
func TestLeaseAndFencing(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b := state.New(lab.Get(t).DynamoDB(), a.Table())
	ttl := 600 * time.Millisecond

	ta, err := a.Acquire(ctx, "lab", "head-a:1", ttl)
	if err != nil || ta.Version() != 1 {
		t.Fatalf("first Acquire: %v, %v", ta, err)
	}
	if _, err := b.Acquire(ctx, "lab", "head-b:2", ttl); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("Acquire of a held lease: %v, want ErrLeaseHeld", err)
	}
	if err := ta.Renew(ctx, ttl); err != nil {
		t.Fatalf("Renew by the holder: %v", err)
	}
	ra := ta.Records()
	k := state.Key{Cluster: "lab", JobID: "77"}
	if err := ra.Create(ctx, &state.Record{Key: k, Phase: state.Held, Times: state.Times{Detected: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	stale, _ := ra.Get(ctx, k)

	time.Sleep(ttl + 200*time.Millisecond) // a stops renewing
	tb, err := b.Acquire(ctx, "lab", "head-b:2", ttl)
	if err != nil || tb.Version() != 2 {
		t.Fatalf("Acquire of an expired lease: %v, %v", tb, err)
	}
	if err := ta.Renew(ctx, ttl); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("Renew by the deposed holder: %v, want ErrLeaseLost", err)
	}
	rb := tb.Records()
	cur, _ := rb.Get(ctx, k)
	cur.Phase = state.Dispatched
	if err := rb.Update(ctx, cur); err != nil {
		t.Fatalf("Update by the new holder: %v", err)
	}
	// The deposed holder, even from a fresh read, is fenced off.
	fresh, _ := ra.Get(ctx, k)
	fresh.Phase = state.Failed
	if err := ra.Update(ctx, fresh); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("Update by the deposed holder: %v, want ErrConflict", err)
	}
	if err := ra.Update(ctx, stale); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale Update by the deposed holder: %v, want ErrConflict", err)
	}
	if got, _ := rb.Get(ctx, k); got.Phase != state.Dispatched {
		t.Fatalf("record phase %s, want the new holder's Dispatched", got.Phase)
	}
	// A release hands the lease over at once, with a new version.
	if err := tb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if tc, err := a.Acquire(ctx, "lab", "head-a:3", ttl); err != nil || tc.Version() != 3 {
		t.Fatalf("Acquire after a release: %v, %v", tc, err)
	}
}

// A mass reclaim creates hundreds of records at once, and DynamoDB answers
// ProvisionedThroughputExceededException beyond a table's or a partition's
// rate. Every record still lands: the client main wires (rescue.AWSConfig)
// slows down to the rate it is served at. With the SDK's standard retryer
// (5 attempts, 16 writes in flight against 15 a second) records failed
// with "exceeded maximum number of attempts".
func TestThrottledCreatesAllLand(t *testing.T) {
	ctx := context.Background()
	l := lab.Get(t)
	s := newStore(t)
	throttle(t, l, `[{"service":"dynamodb","operations":["PutItem"],"rate":15,"burst":1}]`)
	cfg, err := rescue.AWSConfig(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(l.Env["LAB_FAULTPROXY_URL"]) })
	var recs []*state.Record
	for i := range 150 {
		recs = append(recs, &state.Record{Key: state.Key{Cluster: "lab", JobID: fmt.Sprint(1000 + i)}, Phase: state.Detected, Times: state.Times{Detected: time.Now()}})
	}
	for i, err := range state.New(db, s.Table()).CreateAll(ctx, recs) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	for _, i := range []int{0, 75, 149} {
		if _, err := s.Get(ctx, recs[i].Key); err != nil {
			t.Errorf("record %d not stored: %v", i, err)
		}
	}
}

// throttle sets hack/faultproxy's rate limits until the test ends.
func throttle(t *testing.T, l *lab.Lab, limits string) {
	t.Helper()
	put := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, l.Env["LAB_FAULTPROXY_URL"]+"/_fault/limits", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("set faultproxy limits: %v", err)
		}
		resp.Body.Close()
	}
	put(limits)
	t.Cleanup(func() { put("[]") })
}
