package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/state"
)

// fakeLease is held by someone else until free is set; renewals fail
// with ErrLeaseLost once lost is set. Its term's records are records.
type fakeLease struct {
	mu             sync.Mutex
	free, lost     bool
	released       bool
	acquireAttempt int
	records        Store
}

func (l *fakeLease) Acquire(context.Context, string, string, time.Duration) (LeaseTerm, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acquireAttempt++
	if !l.free {
		return nil, state.ErrLeaseHeld
	}
	return fakeTerm{l}, nil
}

type fakeTerm struct{ l *fakeLease }

func (fakeTerm) Version() int64   { return 7 }
func (t fakeTerm) Records() Store { return t.l.records }

func (t fakeTerm) Renew(context.Context, time.Duration) error {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	if t.l.lost {
		return state.ErrLeaseLost
	}
	return nil
}

func (t fakeTerm) Release(context.Context) error {
	t.l.mu.Lock()
	t.l.released = true
	t.l.mu.Unlock()
	return nil
}

func (l *fakeLease) set(f func(l *fakeLease)) { l.mu.Lock(); f(l); l.mu.Unlock() }

// A controller stands by while another holds the lease, acts once it has
// it (fencing its writes with the lease's version), and stops with
// ErrLeaseLost when the lease is taken over.
func TestLeaseStandbyActDepose(t *testing.T) {
	h := newHarness(t, now(), func(o *Options) { o.LeaseTTL, o.Holder = 300*time.Millisecond, "head-b:2" })
	lease := &fakeLease{records: h.deps.Store}
	h.deps.Lease = lease
	h.deps.Store = nil // the term's records are the only store
	h.rebuild(t)
	done := make(chan error, 1)
	go func() { done <- h.c.Run(context.Background()) }()

	waitFor(t, "standing by", func() bool { return h.c.Standby() && !h.c.Ready() })
	if h.metric(t, "spotrescue_leader") != 0 {
		t.Error("a standby counts itself the leader")
	}
	lease.set(func(l *fakeLease) { l.free = true })
	waitFor(t, "acting", func() bool { return h.c.Ready() && !h.c.Standby() })
	if h.c.records.store == nil {
		t.Error("acting without the term's records")
	}
	if h.metric(t, "spotrescue_leader") != 1 {
		t.Error("the holder does not count itself the leader")
	}

	lease.set(func(l *fakeLease) { l.lost = true })
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Run after losing the lease: %v, want ErrLeaseLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run went on after losing the lease")
	}
	if !h.c.deposed.Load() {
		t.Error("not marked deposed")
	}
}

// A controller stopped while it holds the lease releases it.
func TestLeaseReleasedOnStop(t *testing.T) {
	h := newHarness(t, now(), func(o *Options) { o.LeaseTTL, o.Holder = time.Second, "head-a:1" })
	lease := &fakeLease{free: true, records: h.deps.Store}
	h.deps.Lease = lease
	h.rebuild(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.c.Run(ctx) }()
	waitFor(t, "acting", h.c.Ready)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after a stop: %v", err)
	}
	lease.set(func(l *fakeLease) {
		if !l.released {
			t.Error("lease not released on stop")
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
