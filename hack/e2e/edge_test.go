//go:build lab

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// One task of a job array is interrupted: only that task is held and
// requeued (the last task shares its number with the array itself), and
// its data goes under its own job id.
func TestArrayTask(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "job.sh")
	os.WriteFile(script, []byte(jobScript), 0o755)
	array := strings.TrimSpace(e.Run(t, "sbatch", "--parsable", "--array=1-2", "-n1", "--open-mode=append", "-o", filepath.Join(dir, "out-%A_%a.log"), script))
	var ids [2]string
	for i := range ids {
		task := fmt.Sprintf("%s_%d", array, i+1)
		e.WaitJob(t, task, 30*time.Second, "RUNNING")
		ids[i] = e.JobField(t, task, "JobId")
	}
	t.Cleanup(func() { e.Command("scancel", array).Run() })
	// Interrupt the node of the last task, whose numeric id is the array's.
	last := e.slurmJob(array + "_2")
	node := last.BatchHost
	lab.Eventually(t, 30*time.Second, "task data", func() bool {
		_, err := os.Stat(filepath.Join(e.Scratch(node), last.ID, "ready"))
		return err == nil
	})
	other := e.slurmJob(array + "_1")
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	rec := e.record(last.ID, 0, state.Done, 60*time.Second)
	if rec.Display != array+"_2" || rec.Outcome != state.OutcomeComplete {
		t.Errorf("record display %q outcome %s", rec.Display, rec.Outcome)
	}
	e.waitResumed(last.ID, 60*time.Second)
	if other.BatchHost != node {
		if j := e.slurmJob(array + "_1"); j.Restarts != 0 || j.State != "RUNNING" {
			t.Errorf("task 1 on another node was touched: %s restarts %d", j.State, j.Restarts)
		}
	}
}

// A job suspended by an admin when the warning arrives is rescued like a
// running one and runs again after the requeue.
func TestSuspendedJob(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	e.Run(t, "scontrol", "suspend", id)
	e.WaitJob(t, id, 10*time.Second, "SUSPENDED")
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if rec.Outcome != state.OutcomeComplete || !strings.HasPrefix(rec.Requeue, "requeued") {
		t.Fatalf("outcome %s requeue %q", rec.Outcome, rec.Requeue)
	}
	e.waitResumed(id, 60*time.Second)
}

// Slurm requeues the job itself while the upload runs (ParallelCluster
// marks a reclaimed node DOWN): the job stays held until its data is safe,
// is not requeued a second time, and resumes from the rescued data.
func TestAlreadyRequeuedBySlurm(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=1500")
	want := sums(t, filepath.Join(e.Scratch(node), id))
	e.startController("--rescue-concurrency", "2")
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	e.Run(t, "scontrol", "update", "nodename="+node, "state=down", "reason=instance reclaimed")
	lab.Eventually(t, 20*time.Second, "Slurm's own requeue", func() bool {
		j := e.slurmJob(id)
		return j.Restarts == 1 && j.State == "PENDING"
	})
	if j := e.slurmJob(id); !j.Held() {
		t.Fatalf("Slurm's requeue left the job runnable (reason %s) before its data was safe", j.Reason)
	}
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if !strings.Contains(rec.Requeue, "already requeued") {
		t.Errorf("requeue %q", rec.Requeue)
	}
	sameSums(t, want, resumedSums(e.waitResumed(id, 60*time.Second)))
	if j := e.slurmJob(id); j.Restarts != 1 {
		t.Errorf("restarts %d, want exactly 1", j.Restarts)
	}
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node))
	if err != nil || !m.Complete {
		t.Errorf("manifest complete=%v err=%v", m != nil && m.Complete, err)
	}
}

// A heterogeneous job is one rescue under its leader's id: every
// component's nodes are saved, and each component of the next run gets
// back the data of the same component.
func TestHeterogeneousJob(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "het.sh")
	os.WriteFile(script, []byte(`#!/bin/bash
#SBATCH -n1 --exclusive
#SBATCH hetjob
#SBATCH -n1 --exclusive
if [ -z "${SPOT_RESCUE_URI:-}" ]; then
  srun --het-group=0,1 bash -c 'cd "$SPOT_RESCUE_SCRATCH" && echo "$SLURMD_NODENAME" > origin && touch ready'
  sleep 600
else
  srun --het-group=0,1 bash -c 'echo "restored origin=$(cat "$SPOT_RESCUE_DIR/origin") on $SLURMD_NODENAME"'
  echo resumed
fi
`), 0o755)
	id := e.Sbatch(t, "--open-mode=append", "-o", filepath.Join(dir, "out.log"), script)
	e.WaitJob(t, id, 30*time.Second, "RUNNING")
	leader, second := e.slurmJob(id), e.slurmJob(fmt.Sprint(mustAtoi(t, id)+1))
	if second.HetJobID != id || leader.BatchHost == second.BatchHost {
		t.Fatalf("components: %+v / %+v", leader, second)
	}
	nodes := []string{leader.BatchHost, second.BatchHost}
	for _, n := range nodes {
		lab.Eventually(t, 30*time.Second, "data on "+n, func() bool {
			_, err := os.Stat(filepath.Join(e.Scratch(n), id, "ready"))
			return err == nil
		})
	}
	e.startController()
	e.send(warning(e.Instances[nodes[1]], time.Now()))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if len(rec.Nodes) != 2 || rec.Nodes[1].Group != 1 || !rec.Nodes[1].Interrupted || rec.Outcome != state.OutcomeComplete {
		t.Fatalf("record nodes %+v outcome %s", rec.Nodes, rec.Outcome)
	}
	t.Logf("rescue took %s", rec.Times.Done.Sub(rec.Times.Detected))
	// The leader's node was not interrupted and still holds its data: a
	// component of the next run placed there would find the job's
	// directory in use and keep what is there (README, the heterogeneous
	// job's row). Other work takes that node, as on a busy cluster.
	busy := e.Sbatch(t, "-w", nodes[0], "--exclusive", "-o", "/dev/null", "--wrap", "sleep 600")
	e.WaitJob(t, busy, 30*time.Second, "RUNNING")
	// Slurm starts a requeued heterogeneous job only in a backfill pass
	// that fits every component, a minute or more later (24.11: 1.5 min);
	// asking it to start the job now changes nothing spotrescue did.
	e.Run(t, "scontrol", "update", "jobid="+id, "StartTime=now")
	out := e.waitResumed(id, 120*time.Second)
	t.Logf("resumed %s after the warning", time.Since(rec.Times.Detected))
	for _, n := range nodes {
		if !strings.Contains(out, "restored origin="+n+" ") {
			t.Errorf("no component got %s's data back:\n%s", n, out)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// slurmctld is down for 30 s in the middle of a rescue: the steps that need
// it fail and are retried with backoff, the record shows the errors, and
// the rescue completes once Slurm is back.
func TestSlurmctldDownMidRescue(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=1500")
	want := sums(t, filepath.Join(e.Scratch(node), id))
	e.startController("--rescue-concurrency", "2")
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	e.StopSlurmctld(t)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			e.StartSlurmctld(t)
		}
	})
	lab.Eventually(t, 90*time.Second, "a recorded Slurm error", func() bool {
		r, err := e.store.Get(context.Background(), state.Key{Cluster: "lab", JobID: id})
		return err == nil && len(r.Errors) > 0
	})
	time.Sleep(30 * time.Second)
	e.StartSlurmctld(t)
	restarted = true
	rec := e.record(id, 0, state.Done, 90*time.Second)
	if rec.Outcome != state.OutcomeComplete || !strings.HasPrefix(rec.Requeue, "requeued") {
		t.Errorf("outcome %s requeue %q errors %v", rec.Outcome, rec.Requeue, rec.Errors)
	}
	sameSums(t, want, resumedSums(e.waitResumed(id, 60*time.Second)))
}

// withScratchTemplate sets the lab's scratch.path_template (below the
// node's scratch root) in its configuration file, which the controller,
// the Prolog, the TaskProlog and the agent all read, until the test ends.
func (e *env) withScratchTemplate(below string) {
	e.t.Helper()
	old, err := os.ReadFile(e.Config)
	if err != nil {
		e.t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^  path_template: .*$`)
	tmpl := filepath.Join(e.Dir, "nodes", "{node}", "scratch", below)
	if !line.Match(old) {
		e.t.Fatalf("%s has no scratch path_template", e.Config)
	}
	if err := os.WriteFile(e.Config, line.ReplaceAll(old, []byte("  path_template: "+tmpl)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.WriteFile(e.Config, old, 0o644) })
}

// With a template that uses the array ids, the controller, the agent, the
// Prolog and the TaskProlog all put an array task's scratch directory in
// the same place: the task's data is rescued from where it wrote it and
// restored where its next run looks (the Prolog once lost the array ids,
// and restored into .../none_none/).
func TestArrayTaskWithArrayTemplate(t *testing.T) {
	e := setup(t)
	e.withScratchTemplate("{array_job_id}_{array_task_id}/{job_id}")
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "job.sh")
	os.WriteFile(script, []byte(jobScript), 0o755)
	array := strings.TrimSpace(e.Run(t, "sbatch", "--parsable", "--array=3-3", "-n1", "--open-mode=append", "-o", filepath.Join(dir, "out-%A_%a.log"), script))
	t.Cleanup(func() { e.Command("scancel", array).Run() })
	task := array + "_3"
	e.WaitJob(t, task, 30*time.Second, "RUNNING")
	j := e.slurmJob(task)
	scratch := filepath.Join(e.Scratch(j.BatchHost), j.ArrayJobID+"_"+j.ArrayTaskID, j.ID)
	lab.Eventually(t, 30*time.Second, "task data in "+scratch, func() bool {
		_, err := os.Stat(filepath.Join(scratch, "ready"))
		return err == nil
	})
	want := sums(t, scratch)
	e.startController()
	e.send(warning(e.Instances[j.BatchHost], time.Now()))
	if rec := e.record(j.ID, 0, state.Done, 60*time.Second); rec.Outcome != state.OutcomeComplete || rec.Files < int64(len(want)) {
		t.Errorf("record: %s, %d files; want complete with the task's %d files", rec.Outcome, rec.Files, len(want))
	}
	out := e.waitResumed(j.ID, 90*time.Second)
	node := e.JobField(t, j.ID, "BatchHost")
	wantDir := filepath.Join(e.Scratch(node), j.ArrayJobID+"_"+j.ArrayTaskID, j.ID)
	if !strings.Contains(envLine(out), "dir="+wantDir) {
		t.Errorf("the resumed task was given %q, want its data in %s", envLine(out), wantDir)
	}
	sameSums(t, want, resumedSums(out))
}
