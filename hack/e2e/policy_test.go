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

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

func (e *env) slurmJob(id string) *slurm.Job {
	e.t.Helper()
	j, err := slurm.New(filepath.Dir(strings.TrimSpace(e.Run(e.t, "which", "scontrol")))).Job(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// A --no-requeue job is rescued and recorded but not requeued, and not
// left held either.
func TestNoRequeueJob(t *testing.T) {
	e := setup(t)
	id, node := e.submit("", "--no-requeue")
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if rec.Outcome != state.OutcomeComplete || !strings.Contains(rec.Requeue, "--no-requeue") {
		t.Errorf("outcome %s requeue %q", rec.Outcome, rec.Requeue)
	}
	j := e.slurmJob(id)
	if j.State != "RUNNING" || j.Restarts != 0 || j.Held() {
		t.Errorf("job state %s restarts %d held %v reason %s", j.State, j.Restarts, j.Held(), j.Reason)
	}
}

// A job that finishes while its data is being uploaded is not requeued:
// Slurm would requeue a COMPLETED job and run it again.
func TestJobFinishesDuringRescue(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=3000")
	e.startController("--rescue-concurrency", "1")
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	os.WriteFile(filepath.Join(e.Scratch(node), id, "finish"), nil, 0o644)
	e.WaitJob(t, id, 30*time.Second, "COMPLETED")
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if !strings.Contains(rec.Requeue, "not requeued") || !strings.Contains(rec.Requeue, "COMPLETED") {
		t.Errorf("requeue %q", rec.Requeue)
	}
	time.Sleep(2 * time.Second)
	if j := e.slurmJob(id); j.State != "COMPLETED" || j.Restarts != 0 {
		t.Errorf("job state %s restarts %d: it was run again", j.State, j.Restarts)
	}
}

// A job its user held before the warning is rescued and requeued, and
// stays held by its user, who can release it.
func TestUserHeldJobStaysUserHeld(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	e.Run(t, "scontrol", "uhold", id)
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Done, 60*time.Second)
	lab.Eventually(t, 20*time.Second, "job pending", func() bool { return e.slurmJob(id).State == "PENDING" })
	if j := e.slurmJob(id); j.Reason != "JobHeldUser" || j.Restarts != 1 {
		t.Fatalf("reason %s restarts %d, want JobHeldUser and 1", j.Reason, j.Restarts)
	}
	e.Run(t, "scontrol", "release", id)
	e.waitResumed(id, 60*time.Second)
}

// A job an administrator held before the warning is rescued and
// requeued, and stays held: `scontrol release` would lift the
// administrator's hold with ours (it once did), so spotrescue lifts
// nothing, and the record says why.
func TestAdminHeldJobStaysHeld(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	e.Run(t, "scontrol", "hold", id)
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if !strings.Contains(rec.Requeue, "left held: an administrator held the job") {
		t.Errorf("record requeue %q does not say the job was left held", rec.Requeue)
	}
	lab.Eventually(t, 20*time.Second, "job pending", func() bool { return e.slurmJob(id).State == "PENDING" })
	if j := e.slurmJob(id); j.Reason != "JobHeldAdmin" || j.Restarts != 1 {
		t.Fatalf("reason %s restarts %d, want JobHeldAdmin and 1", j.Reason, j.Restarts)
	}
	e.Run(t, "scontrol", "release", id)
	e.waitResumed(id, 60*time.Second)
}

// With fallback.after 2, a job interrupted twice is requeued into the
// on-demand partition the second time, and the record says so.
func TestFallbackToOnDemand(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",KEEP_RUNNING=1", "-p", "spot")
	e.startController("--fallback-after", "2", "--fallback-partition", "ondemand")
	e.send(warning(e.Instances[node], time.Now()))
	first := e.record(id, 0, state.Done, 60*time.Second)
	if first.Fallback != "" {
		t.Fatalf("moved after one interruption: %q", first.Fallback)
	}
	lab.Eventually(t, 60*time.Second, "the second run", func() bool {
		j := e.slurmJob(id)
		_, err := os.Stat(filepath.Join(e.Scratch(j.BatchHost), id, "resumed-1"))
		return j.State == "RUNNING" && err == nil
	})
	node = e.slurmJob(id).BatchHost
	e.send(warning(e.Instances[node], time.Now()))
	second := e.record(id, 1, state.Done, 60*time.Second)
	if second.Fallback != "ondemand" {
		t.Errorf("record fallback %q after two interruptions", second.Fallback)
	}
	lab.Eventually(t, 60*time.Second, "the third run", func() bool { return e.slurmJob(id).Restarts == 2 && e.slurmJob(id).State == "RUNNING" })
	// The on-demand partition is compute-[3-4].
	if j := e.slurmJob(id); j.Partition != "ondemand" || (j.BatchHost != "compute-3" && j.BatchHost != "compute-4") {
		t.Errorf("third run in partition %s on %s", j.Partition, j.BatchHost)
	}
}

// The checkpoint signal reaches the job before the upload, and what the job
// writes in its grace period is in the rescued data.
func TestCheckpointSignal(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	e.startController("--rescue-checkpoint-signal", "USR1", "--rescue-checkpoint-grace", "3s")
	e.send(warning(e.Instances[node], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range m.Files {
		found = found || f.Path == "checkpoint.txt"
	}
	if !found {
		t.Errorf("checkpoint.txt not among the rescued files")
	}
	if grace := rec.Times.Dispatched.Sub(rec.Times.Held); grace < 3*time.Second {
		t.Errorf("dispatched %s after the hold, want at least the 3s grace", grace)
	}
}

// A dry run logs every decision and changes nothing: the job keeps running
// unheld, the node is not drained, no agent runs, nothing lands in S3 or
// in the state table.
func TestDryRunChangesNothing(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	c := e.startController("--dry-run")
	e.send(warning(e.Instances[node], time.Now()))
	lab.Eventually(t, 30*time.Second, "the dry run to decide", func() bool {
		return strings.Contains(c.log.String(), "dry run: would release the job")
	})
	j := e.slurmJob(id)
	if j.State != "RUNNING" || j.Held() || j.Restarts != 0 {
		t.Errorf("job state %s held %v restarts %d", j.State, j.Held(), j.Restarts)
	}
	if drained := e.Run(t, "sinfo", "-h", "-N", "-t", "drain,draining,drained", "-o", "%N"); drained != "" {
		t.Errorf("nodes drained: %s", drained)
	}
	if _, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node)); err == nil {
		t.Error("a manifest was written")
	}
	if runs, _ := e.store.Runs(context.Background(), "lab", id); len(runs) != 0 {
		t.Errorf("%d records written to the state table", len(runs))
	}
	for _, want := range []string{"dry run: would hold jobs", "dry run: would drain", "dry run: would send the rescue command", "dry run: would requeue the job"} {
		if !strings.Contains(c.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// A job interrupted on compute resource c5 of queue pc is requeued with
// c5's nodes excluded for steer.avoid_for, and given them back after: the
// reclaimed node is back in service at once (ParallelCluster replaced the
// instance) and the only other node is busy, so the job starts on c5, but
// not before the steering ends. Its next run restores the data, and the
// record then counts the compute the rescue saved.
func TestSteerOffReclaimedComputeResource(t *testing.T) {
	e := setup(t)
	c5, m5 := e.PCNodes()[0], e.PCNodes()[1]
	id, node := e.submit(",KEEP_RUNNING=1", "-p", "pc", "--exclusive")
	if node != c5 {
		t.Fatalf("job %s runs on %s; the lighter %s should take it", id, node, c5)
	}
	busy := e.Sbatch(t, "-p", "pc", "-w", m5, "--exclusive", "-o", "/dev/null", "--wrap", "sleep 600")
	t.Cleanup(func() { _ = e.Command("scancel", busy).Run() })
	e.WaitJob(t, busy, 30*time.Second, "RUNNING")

	c := e.startController("--steer-avoid-for", "20s")
	e.send(warning(e.Instances[c5], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if rec.Steer == nil || rec.Steer.Avoided != c5 || rec.Steer.Until.IsZero() {
		t.Fatalf("record steer %+v, want %s avoided", rec.Steer, c5)
	}
	if got := e.JobField(t, id, "ExcNodeList"); got != c5 {
		t.Errorf("Slurm's ExcNodeList %q, want %s", got, c5)
	}
	// ParallelCluster replaced the instance: the node is back, its
	// instance store empty.
	if err := os.RemoveAll(filepath.Join(e.Scratch(c5), id)); err != nil {
		t.Fatal(err)
	}
	e.Run(t, "scontrol", "update", "nodename="+c5, "state=resume")

	e.WaitJob(t, id, 60*time.Second, "RUNNING")
	j := e.slurmJob(id)
	if j.BatchHost != c5 || j.StartTime.Before(rec.Steer.Until.Truncate(time.Second)) {
		t.Errorf("run 1 started on %s at %s; want %s, not before the steering ended at %s", j.BatchHost, j.StartTime, c5, rec.Steer.Until)
	}
	if got := e.JobField(t, id, "ExcNodeList"); got != "(null)" {
		t.Errorf("ExcNodeList %q after the lift, want none", got)
	}
	e.waitResumed(id, 30*time.Second)

	// The compute saved: the rescued run's time up to the upload, x 4 CPUs.
	var saved *state.Saved
	lab.Eventually(t, 45*time.Second, "the record to count the compute saved", func() bool {
		r, err := e.store.Get(context.Background(), state.Key{Cluster: "lab", JobID: id, Run: 0})
		if err == nil {
			rec, saved = r, r.Saved
		}
		return saved != nil
	})
	want := int64(rec.Times.Dispatched.Sub(rec.Started).Seconds())
	if rec.CPUs != 4 || saved.Run != 1 || saved.Seconds != want || saved.CPUSeconds != 4*want || saved.NotCounted != "" {
		t.Errorf("cpus %d, saved %+v; want 4 CPUs, run 1, %d s, %d CPU-s", rec.CPUs, saved, want, 4*want)
	}
	if !strings.HasSuffix(rec.Steer.Lifted, " lifted") {
		t.Errorf("record lift %q", rec.Steer.Lifted)
	}
	if got := c.metric(t, "spotrescue_saved_cpu_seconds_total"); got != float64(saved.CPUSeconds) {
		t.Errorf("spotrescue_saved_cpu_seconds_total %v, want %d", got, saved.CPUSeconds)
	}
	out, err := e.Command(filepath.Join(e.Bin, "spotrescue"), "jobs", "show", id, "--state-table", e.table).CombinedOutput()
	show := string(out)
	if err != nil {
		t.Fatalf("jobs show: %v\n%s", err, show)
	}
	for _, want := range []string{"kept off " + c5 + " until", "lifted", fmt.Sprintf("x 4 CPUs); run 1 resumed on %s", c5), "S3 requests"} {
		if !strings.Contains(show, want) {
			t.Errorf("jobs show lacks %q:\n%s", want, show)
		}
	}
}
