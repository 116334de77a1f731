//go:build lab

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// A record reaches a terminal phase in bounded time, whatever keeps
// failing. Here every manifest read of the controller fails (S3 answers
// 500 to its GetObject), which once kept the record Dispatched, and the
// job held, for ever. Past deadline.give_up_after the record is closed,
// the reason recorded, the job released, and the abandon counted.
func TestRescueGivenUpIsClosedAndItsJobReleased(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	e.faults(`[{"service":"s3","operation":"GetObject","error":1}]`)
	// The controller reads S3 through faultproxy; a short window and bound
	// keep the test short: the deadline comes 25 s after the warning.
	c := e.startControllerEnv([]string{"AWS_ENDPOINT_URL_S3=" + e.Env["LAB_FAULTPROXY_URL"]},
		"--deadline-safety-margin", "95s", "--deadline-give-up-after", "10s")
	sent := time.Now()
	e.send(warning(e.Instances[node], sent))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	if got := e.JobField(t, id, "Reason"); got != "JobHeldAdmin" {
		t.Fatalf("the job is not held during its rescue (reason %q)", got)
	}
	rec := e.record(id, 0, state.Done, 120*time.Second)
	t.Logf("closed %v after the warning: %s", time.Since(sent).Round(time.Second), rec.Requeue)
	if !strings.Contains(rec.Requeue, "gave up") || rec.Outcome != state.OutcomeFailed || len(rec.Errors) == 0 {
		t.Errorf("record: outcome %s, requeue %q, errors %v; want failed, the reason, the last error", rec.Outcome, rec.Requeue, rec.Errors)
	}
	if reason, prio := e.JobField(t, id, "Reason"), e.JobField(t, id, "Priority"); reason == "JobHeldAdmin" || prio == "0" {
		t.Errorf("the job is still held: reason %s, priority %s", reason, prio)
	}
	if n := c.metric(t, `spotrescue_requeues_total{result="abandoned"}`); n != 1 {
		t.Errorf("abandoned rescues counted %v, want 1", n)
	}
	if n := c.metric(t, "spotrescue_records_overdue"); n != 0 {
		t.Errorf("records overdue %v after the close, want 0", n)
	}
}

// EC2 may send the Rebalance Recommendation after the warning. It drains
// the node, but it must not start a pre-sync of jobs whose final rescue is
// uploading there: the two would write one prefix at once.
func TestRebalanceAfterWarningLeavesTheFinalRescueAlone(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=24")
	e.faults(`[{"service":"s3","operation":"PutObject","latency":"500ms"}]`)
	c := e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	e.send(envelope("EC2 Instance Rebalance Recommendation", e.Instances[node], time.Now(), map[string]any{}))
	lab.Eventually(t, 30*time.Second, "the rebalance recommendation handled", func() bool {
		return c.metric(t, `spotrescue_events_received_total{kind="rebalance_recommendation"}`) == 1 && strings.Contains(c.log.String(), "rebalance recommendation: draining")
	})
	if rec := e.record(id, 0, state.Done, 90*time.Second); rec.Outcome != state.OutcomeComplete {
		t.Errorf("the final rescue: %s", rec.Outcome)
	}
	if strings.Contains(c.log.String(), "pre-sync started") {
		t.Error("a pre-sync was started on the node while its final rescue ran")
	}
}
