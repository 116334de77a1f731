//go:build lab

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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

// A rescued run is restored only into a scratch directory that holds
// nothing: once a later run of the job has written there (the job came
// back to a node it ran on since the rescue), what it left is at least as
// new, and the Prolog leaves it as it is (it once restored the rescued run
// over it, putting the job's checkpoint back two steps). The job is told
// where its data is all the same.
func TestNewerRunIsNotRestoredOver(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",KEEP_RUNNING=1")
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Done, 60*time.Second)
	e.waitResumed(id, 90*time.Second)
	// Run 1 runs on another node with the rescued data, and gets further.
	again := e.JobField(t, id, "BatchHost")
	scratch := filepath.Join(e.Scratch(again), id)
	lab.Eventually(t, 30*time.Second, "run 1 running", func() bool {
		_, err := os.Stat(filepath.Join(scratch, "resumed-1"))
		return err == nil
	})
	os.WriteFile(filepath.Join(scratch, "ckpt", "state.txt"), []byte("step 9 of 10\n"), 0o644)
	// Its user requeues it, and it starts on that node again.
	e.Run(t, "scontrol", "requeuehold", id)
	e.WaitJob(t, id, 60*time.Second, "PENDING")
	e.Run(t, "scontrol", "update", "jobid="+id, "ReqNodeList="+again)
	e.Run(t, "scontrol", "release", id)
	lab.Eventually(t, 90*time.Second, "run 2 running on "+again, func() bool {
		_, err := os.Stat(filepath.Join(scratch, "resumed-2"))
		return err == nil
	})
	if data, _ := os.ReadFile(filepath.Join(scratch, "ckpt", "state.txt")); string(data) != "step 9 of 10\n" {
		t.Errorf("run 2 finds its checkpoint at %q: the rescued run 0 was restored over run 1's", data)
	}
	var run2 string
	for _, line := range strings.Split(e.output(id), "\n") {
		if strings.HasPrefix(line, "env uri=s3://") {
			run2 = line // the last one: run 2's
		}
	}
	if !strings.Contains(run2, "dir="+scratch) || !strings.Contains(run2, "rrun=0") {
		t.Errorf("run 2 was told %q; want the rescued run 0 and its data in %s", run2, scratch)
	}
}

// slowSlurm is a Slurm bin dir whose commands take delay each while the
// returned file exists: a slurmctld under load.
func (e *env) slowSlurm(delay time.Duration) (dir, slow string) {
	e.t.Helper()
	dir = e.t.TempDir()
	slow = filepath.Join(dir, "slow")
	real := filepath.Dir(strings.TrimSpace(e.Run(e.t, "which", "scontrol")))
	for _, cmd := range []string{"squeue", "sinfo", "scontrol", "scancel"} {
		script := fmt.Sprintf("#!/bin/sh\n[ -e %q ] && sleep %d\nexec %q \"$@\"\n", slow, int(delay.Seconds()), filepath.Join(real, cmd))
		if err := os.WriteFile(filepath.Join(dir, cmd), []byte(script), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	return dir, slow
}

// A warning batch handled against a slow slurmctld takes longer than the
// queue's visibility timeout (10 s here, to keep the test short; the
// stack's is 30 s and a batch may take 90); its messages are kept
// invisible while they are handled, so SQS never hands the same warning to
// a second receiver mid-handling (it once did, and the warning was handled
// twice).
func TestSlowBatchIsNotDeliveredTwice(t *testing.T) {
	e := setup(t)
	if _, err := e.SQS().SetQueueAttributes(context.Background(), &sqs.SetQueueAttributesInput{QueueUrl: aws.String(e.queueURL),
		Attributes: map[string]string{"VisibilityTimeout": "10"}}); err != nil {
		t.Fatal(err)
	}
	id, node := e.submit("")
	bin, slow := e.slowSlurm(5 * time.Second)
	c := e.startController("--slurm-bin-dir", bin)
	os.WriteFile(slow, nil, 0o644)
	start := time.Now()
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 90*time.Second)
	t.Logf("the batch took %v to dispatch", time.Since(start).Round(time.Second))
	os.Remove(slow)
	e.record(id, 0, state.Done, 90*time.Second)
	if n := c.metric(t, `spotrescue_events_received_total{kind="spot_interruption"}`); n != 1 {
		t.Errorf("the warning was received %v times, want once", n)
	}
	if n := c.metric(t, `spotrescue_events_ignored_total{reason="duplicate"}`); n != 0 {
		t.Errorf("%v duplicate deliveries", n)
	}
}

// The spool directory does not grow for ever: the controller removes plans
// and env files older than controller.spool_retention, but never the env
// file of a job Slurm still runs or may run again, however old.
func TestSpoolIsCleaned(t *testing.T) {
	e := setup(t)
	running, _ := e.submit("")
	spool := filepath.Join(e.Dir, "shared", "spotrescue")
	month := time.Now().Add(-30 * 24 * time.Hour)
	oldPlan := filepath.Join(spool, "plans", "0123456789abcdef")
	os.MkdirAll(oldPlan, 0o700)
	os.WriteFile(filepath.Join(oldPlan, "i-0c0ffee0000000001.json"), []byte("{}"), 0o600)
	os.Chtimes(oldPlan, month, month)
	gone, live := filepath.Join(spool, "jobs", "999991.env"), filepath.Join(spool, "jobs", running+".env")
	for _, p := range []string{gone, live} {
		os.WriteFile(p, []byte("SPOT_RESCUE_URI=s3://b/p/\n"), 0o444)
		os.Chtimes(p, month, month)
	}
	t.Cleanup(func() { os.Remove(live); os.Remove(gone); os.RemoveAll(oldPlan) })
	c := e.startController("--controller-spool-retention", "24h")
	lab.Eventually(t, 30*time.Second, "the spool cleaned", func() bool {
		return c.metric(t, `spotrescue_spool_removed_total{kind="env"}`) >= 1 && c.metric(t, `spotrescue_spool_removed_total{kind="plan"}`) >= 1
	})
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the env file of a job Slurm no longer knows is still there: %v", err)
	}
	if _, err := os.Stat(oldPlan); !os.IsNotExist(err) {
		t.Errorf("the month-old plan is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the env file of a running job was removed: %v", err)
	}
}
