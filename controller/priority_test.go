package controller

import (
	"testing"

	"github.com/spotrescue/spotrescue/state"
)

// While the intake handles warnings, a record whose agent is already on
// its way waits for it, but never longer than maxYield.
func TestDispatchedRecordWaitsForTheIntake(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.completeManifest("101", 0, nodeA, 10)
	h.disp.setStatus(instA, "Success")

	h.c.load.started()
	defer h.c.load.done()
	if wait := h.reconcile(t, k); wait != yieldFor {
		t.Fatalf("Reconcile during the intake: wait %v, want %v", wait, yieldFor)
	}
	if r := h.store.record(t, k); r.Phase != state.Dispatched {
		t.Fatalf("phase %s during the intake, want Dispatched (untouched)", r.Phase)
	}
	if got := h.metric(t, "spotrescue_reconcile_yields_total"); got == 0 {
		t.Error("yields_total = 0 after a reconcile that waited")
	}

	h.clock.Advance(maxYield)
	h.reconcile(t, k)
	if r := h.store.record(t, k); r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Fatalf("after %v of a busy intake: %s/%s, want Done/complete", maxYield, r.Phase, r.Outcome)
	}
}

// A node still to be dispatched is as urgent as a new warning: its
// reconcile does not wait for the intake.
func TestUndispatchedRecordDoesNotWait(t *testing.T) {
	h, k := heldSetup(t, nil, batchJob("101", nodeA))
	h.disp.fail = nil
	h.disp.setStatus(instA, "InProgress")

	h.c.load.started()
	defer h.c.load.done()
	h.reconcile(t, k)
	r := h.store.record(t, k)
	if r.Phase != state.Dispatched || r.Nodes[0].Command == "" {
		t.Fatalf("record during the intake: %s, command %q; want Dispatched with a command", r.Phase, r.Nodes[0].Command)
	}
	if n := len(h.disp.requests()); n != 1 {
		t.Errorf("%d agent requests, want 1", n)
	}
}
