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
	h.c.presyncAll(ctx)
	reqs := h.disp.requests()[sent:]
	if len(reqs) != 1 || reqs[0].Instance != instA || reqs[0].Job.JobID != "101" || !reqs[0].Presync {
		t.Fatalf("pre-sync requests %+v, want one for job 101 on %s", reqs, instA)
	}

	// Still running: not sent again.
	h.c.presyncAll(ctx)
	if n := len(h.disp.requests()) - sent; n != 1 {
		t.Fatalf("%d pre-sync requests after a second pass with the first still running, want 1", n)
	}
	// Done: the next pass sends another.
	h.disp.setStatus(instA, "Success")
	h.c.presyncAll(ctx)
	if n := len(h.disp.requests()) - sent; n != 2 {
		t.Fatalf("%d pre-sync requests after the first finished, want 2", n)
	}
	// SSM's status event says the second is done while its API still says
	// InProgress (its view lags): the event is believed, and the next pass
	// sends a third.
	cmds := h.disp.commandsTo(instA)
	h.disp.setStatus(instA, "InProgress")
	h.c.handle(ctx, []sqstypes.Message{
		message("s1", commandStatusBody("ev-s1", cmds[len(cmds)-1], testDocument, instA, "Success", h.clock.Now())),
	}, h.clock.Now())
	h.c.presyncAll(ctx)
	if n := len(h.disp.requests()) - sent; n != 3 {
		t.Fatalf("%d pre-sync requests after SSM's event ended the second, want 3", n)
	}
}
