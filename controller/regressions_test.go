package controller

// Regression tests for bugs found in review: each asserts what a user
// should see, and failed before its fix.

import (
	"context"
	"errors"
	"testing"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// reconcile.go, track: the poll delay is time.Until(EventTime+131s), the
// wall clock, not Deps.Now. With any clock that is not the wall clock the
// delay is negative, Reconcile reports "phase Dispatched made no
// progress" and the record is retried with error backoff instead of polled.
func TestTrackPollDelayUsesTheControllerClock(t *testing.T) {
	start := time.Date(2026, 11, 20, 5, 12, 58, 0, time.UTC) // the fixture's warning time
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	k := key("101", 0)
	h.warn(t, "m1", instA)
	h.disp.setStatus(instA, "InProgress")
	wait, err := h.c.Reconcile(context.Background(), k.String())
	if err != nil || wait <= 0 || wait > pollEvery {
		t.Errorf("Reconcile while the agent uploads = %v, %v; want a poll delay in (0, %v]", wait, err, pollEvery)
	}
}

// reconcile.go, dispatch: when the deadline has passed before the upload
// starts, the record becomes Failed with no URI; requeue.go tellNextRun then
// writes an env file with an empty SPOT_RESCUE_URI (and AdminComment
// "uri="), which rescue.Layout.ReadJobEnv rejects ("no SPOT_RESCUE_URI"):
// the TaskProlog prints no SPOT_RESCUE_STATUS=failed, and an env file of an
// earlier, successful rescue of the job is overwritten with one nobody can read.
func TestDeadlinePassedStillWritesAReadableEnvFile(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.clock.Advance(Reclaim - testMargin + time.Second)
	h.reconcile(t, k)
	if r := h.store.record(t, k); r.Phase != state.Done || r.Outcome != state.OutcomeFailed {
		t.Fatalf("record %s %s", r.Phase, r.Outcome)
	}
	env, err := h.layout.ReadJobEnv("101")
	switch {
	case errors.Is(err, rescue.ErrNoEnv):
	case err != nil:
		t.Errorf("the next run's env file cannot be read: %v", err)
	case env.Status != "failed":
		t.Errorf("env status %q, want failed", env.Status)
	}
}

// events.go, onWarning: a warning only drains its node when the node has
// no job to record (len(keys) == 0); otherwise draining is left to hold(),
// which drains the nodes interrupted at that time. A later warning for
// another node of a multi-node job whose record is already past Detected
// marks the node Interrupted but nothing ever drains it, so Slurm can start
// jobs (the requeued one included) on an instance about to be reclaimed.
func TestSecondNodeWarnedAfterHoldIsDrained(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA, nodeB))
	k := key("101", 0)
	h.warn(t, "m1", instA)
	h.untilDispatched(t, k)
	h.warn(t, "m2", instB)
	if r := h.store.record(t, k); !r.Nodes[1].Interrupted {
		t.Fatalf("second node not marked interrupted: %+v", r.Nodes)
	}
	h.completeManifest("101", 0, nodeA, 10)
	h.completeManifest("101", 0, nodeB, 10)
	h.disp.setStatus(instA, "Success")
	h.reconcile(t, k)
	if _, ok := h.slurm.drainedNodes()[nodeB]; !ok {
		t.Errorf("interrupted node %s never drained (drained: %v)", nodeB, h.slurm.drainedNodes())
	}
}

// When scontrol hold went through but the warning could not be recorded,
// the hold is given back: if Slurm requeued the job before the redelivery,
// no record would ever release it and it would stay JobHeldAdmin forever.
func TestUnrecordedHoldIsReleased(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA))
	h.store.failCreate = errors.New("dynamodb unavailable")
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", warningBody("ev-1", instA, h.clock.Now()))}, h.clock.Now())
	if h.queue.wasDeleted("rh-m1") {
		t.Fatal("a warning that could not be recorded was deleted")
	}
	if j := h.slurm.job("101"); j.Held() {
		t.Errorf("job left %s though nothing recorded the hold", j.Reason)
	}
	// The redelivery holds and records it.
	h.store.failCreate = nil
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", warningBody("ev-1", instA, h.clock.Now()))}, h.clock.Now())
	if r := h.store.record(t, key("101", 0)); r.Phase != state.Dispatched {
		t.Errorf("after the redelivery: %s, want Dispatched", r.Phase)
	}
	if j := h.slurm.job("101"); j.Reason != "JobHeldAdmin" {
		t.Errorf("after the redelivery the job is %s, want held", j.Reason)
	}
}

// reconcile.go, dispatch/sendAgents: the command ids live only in the
// in-memory record until advance(Dispatched) writes them. When that write
// conflicts (another warning of the same multi-node job marking its node,
// a state-change), the retry re-reads a record without commands and sends
// a second agent to every node, which uploads the same files to the same
// prefix concurrently with the first, inside the same two minutes.
func TestConflictAfterDispatchSendsNoSecondAgent(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.completeManifest("101", 0, nodeA, 10)
	interfered := false
	h.store.interfere = func(r *state.Record) bool {
		if r.Phase == state.Dispatched && !interfered {
			interfered = true
			return true
		}
		return false
	}
	h.reconcile(t, k)
	if n := len(h.disp.commandsTo(instA)); n != 1 {
		t.Errorf("%d agents sent to %s for one rescue, want 1", n, instA)
	}
}
