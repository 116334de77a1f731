package controller

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/state"
)

// A warning creates one Detected record per batch job running on the
// node, and nothing for interactive, pending or other nodes' jobs.
func TestWarningDetectsRunningBatchJobsOfTheNode(t *testing.T) {
	start := now()
	multi := batchJob("102", nodeA, nodeB)
	multi.Reason, multi.Priority, multi.Restarts = "JobHeldUser", 0, 2
	interactive := batchJob("103", nodeA)
	interactive.Batch = false
	pending := batchJob("104", nodeA)
	pending.Nodes, pending.State, pending.BatchHost = nil, "PENDING", ""
	h := newHarness(t, start, nil, batchJob("101", nodeA), multi, interactive, pending, batchJob("105", nodeC))

	evTime := start.Add(-3 * time.Second)
	received := start
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", warningBody("ev-1", instA, evTime))}, received)

	if !h.queue.wasDeleted("rh-m1") {
		t.Error("the handled warning was not deleted")
	}
	if n := h.store.count(); n != 2 {
		t.Fatalf("store holds %d records, want 2 (jobs 101 and 102)", n)
	}
	deadline := evTime.Add(Reclaim - testMargin)
	want := map[state.Key]struct {
		userHeld bool
		nodes    []state.Node
	}{
		key("101", 0): {false, []state.Node{{Name: nodeA, Instance: instA, Interrupted: true}}},
		key("102", 2): {true, []state.Node{{Name: nodeA, Instance: instA, Interrupted: true}, {Name: nodeB, Instance: instB}}},
	}
	for k, w := range want {
		r := h.store.record(t, k)
		// Held and dispatched by the intake, before the first write.
		if r.Phase != state.Dispatched || r.URI == "" {
			t.Errorf("%s: phase %s uri %q, want Dispatched", k, r.Phase, r.URI)
		}
		for i := range r.Nodes {
			if r.Nodes[i].Command == "" {
				t.Errorf("%s: node %s got no agent", k, r.Nodes[i].Name)
			}
			r.Nodes[i].Command, r.Nodes[i].Status = "", ""
		}
		if !r.Deadline.Equal(deadline) {
			t.Errorf("%s: deadline %s, want %s (event + 120 s - margin)", k, r.Deadline, deadline)
		}
		if !r.EventTime.Equal(evTime) || r.Event != "ev-1" {
			t.Errorf("%s: event %q at %s, want ev-1 at %s", k, r.Event, r.EventTime, evTime)
		}
		if !r.Times.Detected.Equal(received) {
			t.Errorf("%s: detected at %s, want the receive time %s", k, r.Times.Detected, received)
		}
		if r.UserHeld != w.userHeld {
			t.Errorf("%s: UserHeld %v, want %v", k, r.UserHeld, w.userHeld)
		}
		if r.User != "alice" || r.Name != "train-"+k.JobID {
			t.Errorf("%s: user %q name %q not taken from the job", k, r.User, r.Name)
		}
		if !slices.Equal(r.Nodes, w.nodes) {
			t.Errorf("%s: nodes %+v, want %+v", k, r.Nodes, w.nodes)
		}
	}
	in, err := h.store.GetInterruption(context.Background(), instA)
	if err != nil {
		t.Fatalf("interruption item: %v", err)
	}
	if in.Node != nodeA || in.Event != "ev-1" || !in.Time.Equal(evTime) {
		t.Errorf("interruption item %+v", in)
	}
	if !slices.Equal(in.Jobs, []state.Key{key("101", 0), key("102", 2)}) {
		t.Errorf("interruption jobs %v, want 101/0 and 102/2", in.Jobs)
	}
	if got := h.queued(); !slices.Equal(got, []string{"lab/101/0", "lab/102/2"}) {
		t.Errorf("work queue %v, want both records", got)
	}
	if got := h.metric(t, "spotrescue_events_received_total", "kind="+string(event.SpotInterruption)); got != 1 {
		t.Errorf("events_received_total{spot_interruption} = %v, want 1", got)
	}
	// The jobs are held and the node drained before the message is gone.
	if d := h.slurm.drainedNodes(); len(d) != 1 {
		t.Errorf("drained %v, want the warned node", d)
	}
	for _, id := range []string{"101", "102"} {
		if j := h.slurm.job(id); j.Reason != "JobHeldAdmin" {
			t.Errorf("job %s reason %s, want held", id, j.Reason)
		}
	}
	if j := h.slurm.job("103"); j.Held() {
		t.Error("the interactive job was held")
	}
}

// A warning for a node without jobs drains it at once so nothing new starts.
func TestWarningForIdleNodeDrainsIt(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("105", nodeC))
	if keys := h.warn(t, "m1", instA); len(keys) != 0 {
		t.Errorf("queued %v for an idle node", keys)
	}
	if h.store.count() != 0 {
		t.Error("records created for an idle node")
	}
	if r, ok := h.slurm.drainedNodes()[nodeA]; !ok || r == "" {
		t.Errorf("idle node not drained (drained: %v)", h.slurm.drainedNodes())
	}
	if _, err := h.store.GetInterruption(context.Background(), instA); err != nil {
		t.Errorf("interruption not recorded: %v", err)
	}
}

func TestDuplicateWarningIsIgnored(t *testing.T) {
	cases := []struct {
		name         string
		msgID, event string
	}{
		{"same message redelivered", "m1", "ev-1"},
		{"same event in another message", "m2", "ev-1"},
		{"second warning event for the instance", "m3", "ev-2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := now()
			h := newHarness(t, start, nil, batchJob("101", nodeA))
			ctx := context.Background()
			h.c.intake.handle(ctx, []sqstypes.Message{message("m1", warningBody("ev-1", instA, start))}, start)
			before := h.store.record(t, key("101", 0))
			h.queued()

			h.clock.Advance(2 * time.Second)
			h.c.intake.handle(ctx, []sqstypes.Message{message(tc.msgID, warningBody(tc.event, instA, start))}, h.clock.Now())

			if !h.queue.wasDeleted("rh-" + tc.msgID) {
				t.Error("duplicate not deleted")
			}
			if got := h.ignored(t, "duplicate"); got != 1 {
				t.Errorf("ignored{duplicate} = %v, want 1", got)
			}
			if h.store.count() != 1 {
				t.Errorf("store holds %d records, want 1", h.store.count())
			}
			after := h.store.record(t, key("101", 0))
			if after.Version != before.Version || !after.Times.Detected.Equal(before.Times.Detected) {
				t.Errorf("duplicate rewrote the record: version %d -> %d", before.Version, after.Version)
			}
			// The duplicate nudges the existing rescue along.
			if got := h.queued(); !slices.Equal(got, []string{"lab/101/0"}) {
				t.Errorf("work queue %v, want the existing record", got)
			}
		})
	}
}

// SQS delivers at least once: two receivers can hold copies of one warning
// at the same time (the burst bench saw it). The copy that comes while the
// first is being dispatched is left for redelivery, and the instance gets
// one agent.
func TestConcurrentCopiesOfAWarningDispatchOnce(t *testing.T) {
	start := now()
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	h.disp.gate = func() { close(entered); <-release }
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.c.intake.handle(ctx, []sqstypes.Message{message("m1", warningBody("ev-1", instA, start))}, start)
	}()
	<-entered // the first copy is sending its command
	h.c.intake.handle(ctx, []sqstypes.Message{message("m1-again", warningBody("ev-1", instA, start))}, start)
	close(release)
	<-done
	h.disp.mu.Lock()
	sent := len(h.disp.cmds[instA])
	h.disp.mu.Unlock()
	if sent != 1 {
		t.Fatalf("%d commands sent to %s, want 1", sent, instA)
	}
	if h.queue.wasDeleted("rh-m1-again") {
		t.Error("the second copy was deleted while the first was in flight; it must be left for redelivery")
	}
	if !h.queue.wasDeleted("rh-m1") {
		t.Error("the first copy was not deleted once handled")
	}
	// Redelivered later, the copy is a plain duplicate.
	h.c.intake.handle(ctx, []sqstypes.Message{message("m1-again", warningBody("ev-1", instA, start))}, start)
	if !h.queue.wasDeleted("rh-m1-again") || len(h.disp.cmds[instA]) != 1 {
		t.Errorf("redelivered copy: deleted %v, %d commands", h.queue.wasDeleted("rh-m1-again"), len(h.disp.cmds[instA]))
	}
}

func TestWarningForForeignInstanceIsIgnored(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA))
	keys := h.warn(t, "m1", foreignI)
	if got := h.ignored(t, "foreign_instance"); got != 1 {
		t.Errorf("ignored{foreign_instance} = %v, want 1", got)
	}
	if len(keys) != 0 || h.store.count() != 0 {
		t.Errorf("foreign warning created work: keys %v, %d records", keys, h.store.count())
	}
	if d := h.slurm.drainedNodes(); len(d) != 0 {
		t.Errorf("drained %v for another cluster's instance", d)
	}
	if _, err := h.store.GetInterruption(context.Background(), foreignI); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("interruption recorded for a foreign instance: %v", err)
	}
}

func TestUnparseableMessagesAreLeftForTheDLQ(t *testing.T) {
	start := now()
	cases := []struct{ name, body string }{
		{"not json", "hello"},
		{"no time", `{"id":"ev-1","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","region":"ap-northeast-1","detail":{"instance-id":"i-0b662ef9931388ba0","instance-action":"terminate"}}`},
		{"bad instance id", warningBody("ev-1", "i-xyz; rm -rf /", start)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, start, nil, batchJob("101", nodeA))
			h.c.intake.handle(context.Background(), []sqstypes.Message{message("bad", tc.body)}, start)
			if h.queue.wasDeleted("rh-bad") {
				t.Error("an unparseable message was deleted: evidence destroyed")
			}
			if v, ok := h.queue.visibilityOf("rh-bad"); !ok || v != invalidRetry {
				t.Errorf("visibility of the bad message = %v (set %v), want %d so redrive moves it soon", v, ok, invalidRetry)
			}
			if got := h.metric(t, "spotrescue_messages_invalid_total"); got != 1 {
				t.Errorf("messages_invalid_total = %v, want 1", got)
			}
			if h.store.count() != 0 {
				t.Error("a record was created from an unparseable message")
			}
		})
	}
}

func TestUnsupportedKindIsDeleted(t *testing.T) {
	start := now()
	h := newHarness(t, start, nil)
	body := envelope("ev-1", "aws.ec2", "EC2 Fleet Spot Instance Request Error", testRegion, start, map[string]string{"instance-id": instA})
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", body)}, start)
	if !h.queue.wasDeleted("rh-m1") {
		t.Error("unsupported event not deleted")
	}
	if got := h.ignored(t, "unsupported_kind"); got != 1 {
		t.Errorf("ignored{unsupported_kind} = %v, want 1", got)
	}
	if got := h.metric(t, "spotrescue_messages_invalid_total"); got != 0 {
		t.Errorf("an unsupported kind counted as invalid (%v)", got)
	}
}

func TestWarningsThatCannotBeActedOn(t *testing.T) {
	start := now()
	cases := []struct {
		name   string
		body   string
		reason string
	}{
		{"other region", envelope("ev-1", "aws.ec2", "EC2 Spot Instance Interruption Warning", "us-east-1", start,
			map[string]string{"instance-id": instA, "instance-action": "terminate"}), "other_region"},
		{"older than two minutes", warningBody("ev-1", instA, start.Add(-Reclaim-time.Second)), "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, start, nil, batchJob("101", nodeA))
			h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", tc.body)}, start)
			if !h.queue.wasDeleted("rh-m1") {
				t.Error("message not deleted")
			}
			if got := h.ignored(t, tc.reason); got != 1 {
				t.Errorf("ignored{%s} = %v, want 1", tc.reason, got)
			}
			if h.store.count() != 0 {
				t.Errorf("%d records created", h.store.count())
			}
			if j := h.slurm.job("101"); j.Reason != "None" {
				t.Errorf("job touched: reason %s", j.Reason)
			}
		})
	}
	t.Run("just inside two minutes", func(t *testing.T) {
		h := newHarness(t, start, nil, batchJob("101", nodeA))
		h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", warningBody("ev-1", instA, start.Add(-Reclaim+time.Second)))}, start)
		if h.store.count() != 1 {
			t.Errorf("a warning with a second left was not acted on (%d records)", h.store.count())
		}
	})
}

// When squeue fails, the warning stays in the queue for redelivery; the
// other events of the batch are still handled.
func TestSlurmListingFailureLeavesTheWarning(t *testing.T) {
	start := now()
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	h.slurm.jobsErr = errors.New("squeue: Unable to contact slurm controller")
	msgs := []sqstypes.Message{
		message("warn", warningBody("ev-1", instA, start)),
		message("rebal", rebalanceBody("ev-2", instB, start)),
		message("other", envelope("ev-3", "aws.ec2", "EC2 Fleet Error", testRegion, start, map[string]string{})),
	}
	h.c.intake.handle(context.Background(), msgs, start)

	if h.queue.wasDeleted("rh-warn") {
		t.Error("the warning was deleted although its jobs could not be listed")
	}
	if h.store.count() != 0 {
		t.Error("records created without a job list")
	}
	if _, err := h.store.GetInterruption(context.Background(), instA); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("interruption recorded, so the redelivered warning would be ignored as a duplicate: %v", err)
	}
	if !h.queue.wasDeleted("rh-rebal") || !h.queue.wasDeleted("rh-other") {
		t.Error("the other events of the batch were not handled")
	}
	if _, ok := h.slurm.drainedNodes()[nodeB]; !ok {
		t.Error("the rebalance recommendation in the same batch did not drain its node")
	}

	// Slurm is back; the redelivered warning is acted on.
	h.slurm.mu.Lock()
	h.slurm.jobsErr = nil
	h.slurm.mu.Unlock()
	h.clock.Advance(30 * time.Second)
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("warn", warningBody("ev-1", instA, start))}, h.clock.Now())
	if !h.queue.wasDeleted("rh-warn") || h.store.count() != 1 {
		t.Errorf("redelivered warning: deleted %v, %d records", h.queue.wasDeleted("rh-warn"), h.store.count())
	}
}

func TestRebalanceDrainsOnlyOurNodes(t *testing.T) {
	start := now()
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	h.c.intake.handle(context.Background(), []sqstypes.Message{
		message("m1", rebalanceBody("ev-1", instA, start)),
		message("m2", rebalanceBody("ev-2", foreignI, start)),
	}, start)
	if !h.queue.wasDeleted("rh-m1") || !h.queue.wasDeleted("rh-m2") {
		t.Error("rebalance messages not deleted")
	}
	d := h.slurm.drainedNodes()
	if _, ok := d[nodeA]; !ok || len(d) != 1 {
		t.Errorf("drained %v, want only %s", d, nodeA)
	}
	if j := h.slurm.job("101"); j.Reason != "None" || j.State != "RUNNING" {
		t.Errorf("a rebalance recommendation touched the running job: %s %s", j.State, j.Reason)
	}
	if h.store.count() != 0 {
		t.Error("a rebalance recommendation created records")
	}
	if got := h.ignored(t, "foreign_instance"); got != 1 {
		t.Errorf("ignored{foreign_instance} = %v, want 1", got)
	}
}

// A node lookup that fails (DynamoDB down) is not "foreign": the warning
// is redelivered.
func TestNodeLookupFailureLeavesTheWarning(t *testing.T) {
	start := now()
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	h.nodes.lookupErr = errors.New("ProvisionedThroughputExceededException")
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", warningBody("ev-1", instA, start))}, start)
	if h.queue.wasDeleted("rh-m1") {
		t.Error("warning deleted although its node could not be looked up")
	}
	if got := h.ignored(t, "foreign_instance"); got != 0 {
		t.Errorf("lookup failure counted as foreign (%v)", got)
	}
}

// With pre-sync on, a rebalance recommendation copies the node's jobs
// ahead of time; the warning that follows cancels that copy before the
// final rescue starts on the same instance.
func TestRebalancePresyncThenWarning(t *testing.T) {
	start := now()
	h := newHarness(t, start, func(o *Options) { o.Policy.Presync = true }, batchJob("101", nodeA))
	h.c.intake.handle(context.Background(), []sqstypes.Message{message("m1", rebalanceBody("ev-1", instA, start))}, start)
	reqs := h.disp.requests()
	if len(reqs) != 1 || !reqs[0].Presync || reqs[0].Job.JobID != "101" || reqs[0].Job.Prefix == "" {
		t.Fatalf("pre-sync requests %+v", reqs)
	}
	if h.store.count() != 0 {
		t.Error("a pre-sync created a record")
	}
	presync := h.disp.commandsTo(instA)[0]
	h.warn(t, "m2", instA)
	reqs = h.disp.requests()
	if len(reqs) != 2 || reqs[1].Presync {
		t.Fatalf("final rescue requests %+v", reqs)
	}
	if !slices.Equal(h.disp.canceled, []string{presync}) {
		t.Errorf("canceled %v, want the pre-sync %s", h.disp.canceled, presync)
	}
}

// A warning that cannot be recorded leaves no hold behind (nothing would
// ever release it) and is redelivered; the redelivery holds and records.
func TestUnrecordedWarningLeavesNoHold(t *testing.T) {
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
