package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/state"
)

// An SSM status event for the agent wakes the record waiting on it, and
// its terminal status settles the upload without asking SSM.
func TestCommandStatusEventWakesTheRescue(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.queued()
	cmd := h.store.record(t, k).Nodes[0].Command

	// SSM's API still says InProgress (its view lags the event); the
	// event says the agent is done.
	h.completeManifest("101", 0, nodeA, 10)
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("s1", commandStatusBody("ev-s1", cmd, testDocument, instA, "Success", h.clock.Now())),
	}, h.clock.Now())
	if !h.queue.wasDeleted("rh-s1") {
		t.Error("status event not deleted")
	}
	if got := h.queued(); !slices.Equal(got, []string{k.String()}) {
		t.Fatalf("queued %v, want the waiting record %s", got, k)
	}
	if wait := h.reconcile(t, k); wait != 0 {
		t.Errorf("still waiting (%v) after a terminal status event", wait)
	}
	r := h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete || r.Nodes[0].Status != "Success" {
		t.Errorf("record %s %s node status %q, want Done complete Success", r.Phase, r.Outcome, r.Nodes[0].Status)
	}
}

func TestCommandStatusEventsThatWakeNothing(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.queued()
	cmd := h.store.record(t, k).Nodes[0].Command
	at := h.clock.Now()
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("s1", commandStatusBody("ev-s1", cmd, "AWS-RunShellScript", instA, "Success", at)),
		message("s2", commandStatusBody("ev-s2", "0000ffff-0000-4000-8000-00000000ffff", testDocument, instA, "Success", at)),
		message("s3", commandStatusBody("ev-s3", cmd, testDocument, instA, "InProgress", at)),
	}, at)
	for _, m := range []string{"rh-s1", "rh-s2", "rh-s3"} {
		if !h.queue.wasDeleted(m) {
			t.Errorf("%s not deleted", m)
		}
	}
	if got := h.ignored(t, "other_document"); got != 1 {
		t.Errorf("ignored{other_document} = %v, want 1", got)
	}
	// Only the non-terminal status of our own command wakes the record;
	// it then keeps waiting.
	if got := h.queued(); !slices.Equal(got, []string{k.String()}) {
		t.Errorf("queued %v", got)
	}
	if wait := h.reconcile(t, k); wait <= 0 {
		t.Errorf("a record woken by InProgress stopped waiting (wait %v)", wait)
	}
	if r := h.store.record(t, k); r.Phase != state.Dispatched {
		t.Errorf("phase %s, want Dispatched", r.Phase)
	}
}

// EC2 terminating the interrupted instance ends the wait: the outcome is
// whatever the manifest in S3 says was saved.
func TestInstanceTerminatedEndsTheWait(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.queued()
	h.partialManifest("101", 0, nodeA, 10) // the agent's last checkpoint

	h.clock.Advance(90 * time.Second)
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("t1", stateChangeBody("ev-t1", instA, "shutting-down", h.clock.Now())),
	}, h.clock.Now())
	if !h.queue.wasDeleted("rh-t1") {
		t.Error("state-change not deleted")
	}
	r := h.store.record(t, k)
	if !r.Nodes[0].Gone {
		t.Fatalf("node not marked gone: %+v", r.Nodes[0])
	}
	if got := h.queued(); !slices.Equal(got, []string{k.String()}) {
		t.Fatalf("queued %v, want %s", got, k)
	}
	if wait := h.reconcile(t, k); wait != 0 {
		t.Errorf("still waiting (%v) on an instance that is gone", wait)
	}
	r = h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomePartial {
		t.Errorf("record %s %s, want Done partial", r.Phase, r.Outcome)
	}
	if env := h.env(t, "101"); env.Status != "partial" {
		t.Errorf("env status %q", env.Status)
	}
}

func TestStateChangesThatChangeNothing(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.queued()
	before := h.store.record(t, k)
	at := h.clock.Now()
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("t1", stateChangeBody("ev-t1", instA, "running", at)),
		message("t2", stateChangeBody("ev-t2", instC, "terminated", at)),
	}, at)
	if !h.queue.wasDeleted("rh-t1") || !h.queue.wasDeleted("rh-t2") {
		t.Error("state-changes not deleted")
	}
	if got := h.ignored(t, "instance_state"); got != 1 {
		t.Errorf("ignored{instance_state} = %v", got)
	}
	if got := h.ignored(t, "no_rescue_in_flight"); got != 1 {
		t.Errorf("ignored{no_rescue_in_flight} = %v", got)
	}
	if after := h.store.record(t, k); after.Version != before.Version {
		t.Error("an unrelated state-change rewrote the record")
	}
	if got := h.queued(); len(got) != 0 {
		t.Errorf("queued %v", got)
	}
}

// A terminated event for a record already Done leaves it alone.
func TestStateChangeAfterDone(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, k)
	before := h.store.record(t, k)
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("t1", stateChangeBody("ev-t1", instA, "terminated", h.clock.Now())),
	}, h.clock.Now())
	if !h.queue.wasDeleted("rh-t1") {
		t.Error("state-change not deleted")
	}
	if after := h.store.record(t, k); after.Version != before.Version || after.Nodes[0].Gone {
		t.Error("a Done record was rewritten")
	}
}

// If the agent never reports and the instance is gone past its reclaim
// time, the outcome is read from S3 rather than waiting forever.
func TestTrackStopsWaitingAfterReclaim(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.completeManifest("101", 0, nodeA, 10)
	h.clock.Advance(Reclaim + 11*time.Second)
	if wait := h.reconcile(t, k); wait != 0 {
		t.Errorf("still waiting %v after the instance was reclaimed", wait)
	}
	if r := h.store.record(t, k); r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Errorf("record %s %s", r.Phase, r.Outcome)
	}
}

// A second interrupted node of a multi-node job joins its record.
func TestSecondWarningMarksAnotherNodeOfTheJob(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA, nodeB))
	h.warn(t, "m1", instA)
	h.warn(t, "m2", instB)
	r := h.store.record(t, key("101", 0))
	if h.store.count() != 1 || !r.Nodes[0].Interrupted || !r.Nodes[1].Interrupted {
		t.Errorf("%d records, nodes %+v; want one record with both nodes interrupted", h.store.count(), r.Nodes)
	}
	h.completeManifest("101", 0, nodeA, 10)
	h.completeManifest("101", 0, nodeB, 10)
	h.reconcile(t, key("101", 0))
	d := h.slurm.drainedNodes()
	if _, ok := d[nodeA]; !ok {
		t.Errorf("node A not drained: %v", d)
	}
	if _, ok := d[nodeB]; !ok {
		t.Errorf("node B not drained: %v", d)
	}
}

// Both nodes of a multi-node job warned in the same batch: one record with
// both nodes interrupted, and one agent per node, not two.
func TestBothNodesOfAJobInOneBatch(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA, nodeB))
	at := h.clock.Now()
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("m1", warningBody("ev-m1", instA, at)), message("m2", warningBody("ev-m2", instB, at)),
	}, at)
	if !h.queue.wasDeleted("rh-m1") || !h.queue.wasDeleted("rh-m2") {
		t.Fatal("the warnings were not both deleted")
	}
	r := h.store.record(t, key("101", 0))
	if h.store.count() != 1 || !r.Nodes[0].Interrupted || !r.Nodes[1].Interrupted || r.Phase != state.Dispatched {
		t.Errorf("%d records, %s, nodes %+v; want one Dispatched record with both nodes interrupted", h.store.count(), r.Phase, r.Nodes)
	}
	for _, inst := range []string{instA, instB} {
		if cmds := h.disp.commandsTo(inst); len(cmds) != 1 {
			t.Errorf("%s got %d agents, want 1", inst, len(cmds))
		}
	}
}

// Every interrupted node is drained, also one warned after its job's rescue
// is past Held: Slurm must start nothing on an instance about to go.
func TestNodeWarnedLaterIsDrained(t *testing.T) {
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

// An AWS Health scheduled change drains the node at once and is kept; the
// jobs still running when it is Reclaim away are rescued as from a
// warning, with the change's time as the reclaim time; then it is forgotten.
func TestScheduledChangeRescuesWhenDue(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, now(), nil, batchJob("101", nodeA))
	due := h.clock.Now().Add(time.Hour)
	h.c.intake.handle(ctx, []sqstypes.Message{message("m", healthBody("ev-health", h.clock.Now(), due, instA))}, h.clock.Now())
	if !h.queue.wasDeleted("rh-m") || h.slurm.drainedNodes()[nodeA] == "" {
		t.Fatalf("deleted %v, drained %v", h.queue.wasDeleted("rh-m"), h.slurm.drainedNodes())
	}
	// An hour early: nothing, and no look again before the next is due
	// (capped at scheduleIdle).
	if wait := h.c.intake.fireDue(ctx); wait != scheduleIdle {
		t.Errorf("next look in %s, want %s", wait, scheduleIdle)
	}
	if n := h.store.count(); n != 0 {
		t.Fatalf("%d records an hour before the change", n)
	}
	h.clock.Set(due.Add(-Reclaim - time.Minute))
	if wait := h.c.intake.fireDue(ctx); wait != time.Minute {
		t.Errorf("a minute before it is due: next look in %s, want 1m", wait)
	}
	h.clock.Set(due.Add(-Reclaim + time.Second))
	h.c.intake.fireDue(ctx)
	rec := h.store.record(t, key("101", 0))
	if rec.Event != "health:ev-health" || !rec.Deadline.Equal(due.Add(-testMargin)) || rec.Phase != state.Dispatched {
		t.Errorf("record event %q deadline %s phase %s; want the change's, %s, Dispatched", rec.Event, rec.Deadline, rec.Phase, due.Add(-testMargin))
	}
	if scs, _ := h.store.Schedules(ctx, testCluster); len(scs) != 0 {
		t.Errorf("schedules left after firing: %+v", scs)
	}
}
