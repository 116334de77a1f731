package controller

import (
	"context"
	"testing"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// The timer pre-syncs the running jobs of every node, once per node at a
// time, and leaves held jobs and nodes being rescued alone.
func TestPresyncAllNodes(t *testing.T) {
	held := batchJob("102", nodeB)
	held.Reason, held.Priority = "JobHeldUser", 0
	h := newHarness(t, now(), nil, batchJob("101", nodeA), held, batchJob("103", nodeC))
	ctx := context.Background()

	// Job 103's node is interrupted: its rescue is under way.
	h.warn(t, "m1", instC)
	sent := len(h.disp.requests())
	h.disp.setStatus(instA, "InProgress")
	h.c.presync.all(ctx)
	reqs := h.disp.requests()[sent:]
	if len(reqs) != 1 || reqs[0].Instance != instA || reqs[0].Job.JobID != "101" || !reqs[0].Presync {
		t.Fatalf("pre-sync requests %+v, want one for job 101 on %s", reqs, instA)
	}

	// Still running: not sent again.
	h.c.presync.all(ctx)
	if n := len(h.disp.requests()) - sent; n != 1 {
		t.Fatalf("%d pre-sync requests after a second pass with the first still running, want 1", n)
	}
	// Done: the next pass sends another.
	h.disp.setStatus(instA, "Success")
	h.c.presync.all(ctx)
	if n := len(h.disp.requests()) - sent; n != 2 {
		t.Fatalf("%d pre-sync requests after the first finished, want 2", n)
	}
	// SSM's status event says the second is done while its API still says
	// InProgress (its view lags): the event is believed, and the next pass
	// sends a third.
	cmds := h.disp.commandsTo(instA)
	h.disp.setStatus(instA, "InProgress")
	h.c.intake.handle(ctx, []sqstypes.Message{
		message("s1", commandStatusBody("ev-s1", cmds[len(cmds)-1], testDocument, instA, "Success", h.clock.Now())),
	}, h.clock.Now())
	h.c.presync.all(ctx)
	if n := len(h.disp.requests()) - sent; n != 3 {
		t.Fatalf("%d pre-sync requests after SSM's event ended the second, want 3", n)
	}
}

// A Rebalance Recommendation that arrives after the warning (EC2 sends them
// in either order) drains the node but starts no pre-sync: the final rescue
// is uploading there, and the two must never write one prefix at once.
func TestRebalanceAfterWarningStartsNoPresync(t *testing.T) {
	h := newHarness(t, now(), func(o *Options) { o.Policy.Presync = true }, batchJob("101", nodeA))
	ctx := context.Background()
	h.warn(t, "m1", instA)
	sent := len(h.disp.requests())
	h.c.intake.handle(ctx, []sqstypes.Message{message("r1", rebalanceBody("ev-r1", instA, h.clock.Now()))}, h.clock.Now())
	for _, r := range h.disp.requests()[sent:] {
		if r.Presync {
			t.Fatalf("a pre-sync was sent to %s while its final rescue runs: %+v", r.Instance, r)
		}
	}
	// Once the record is gone from the cache (another controller, a
	// restart), the interruption item still says so.
	h.c.records.forget(key("101", 0))
	h.c.intake.handle(ctx, []sqstypes.Message{message("r2", rebalanceBody("ev-r2", instA, h.clock.Now()))}, h.clock.Now())
	for _, r := range h.disp.requests()[sent:] {
		if r.Presync {
			t.Fatalf("a pre-sync was sent after a restart: %+v", r)
		}
	}
}
