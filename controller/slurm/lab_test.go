//go:build lab

package slurm_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/hack/lab"
)

// These tests run the real Slurm of the lab (22.05 from Debian). They only
// touch jobs they submit, and put back any node they drain.

func labClient(t *testing.T) (*lab.Lab, *slurm.Client) {
	t.Helper()
	l := lab.Get(t)
	scontrol, err := exec.LookPath("scontrol")
	if err != nil {
		t.Fatal(err)
	}
	return l, slurm.New(filepath.Dir(scontrol), slurm.WithLogger(zaptest.NewLogger(t)), slurm.WithTimeout(20*time.Second))
}

// waitJob polls until cond holds for the job and returns it.
func waitJob(t *testing.T, c *slurm.Client, id, what string, cond func(*slurm.Job) bool) *slurm.Job {
	t.Helper()
	var j *slurm.Job
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if j, err = c.Job(context.Background(), id); err == nil && cond(j) {
			return j
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Fatalf("job %s never %s: last %+v, %v", id, what, j, err)
	return nil
}

func running(j *slurm.Job) bool { return j.State == "RUNNING" }

func TestLabVersion(t *testing.T) {
	_, c := labClient(t)
	v, err := c.Version(context.Background())
	if err != nil || !v.AtLeast(22, 5) {
		t.Fatalf("Version = %v, %v", v, err)
	}
	t.Logf("Slurm %s", v)
}

// Jobs (squeue --json) and Job (scontrol show job) read the same jobs the
// same way: single-node with a hostile name, 2-node, array tasks,
// --no-requeue and a job its user holds.
func TestLabJobs(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	name := "lab name = spaces ünï ✓ JobState=COMPLETED"
	one := l.Sbatch(t, "-o", "/dev/null", "-J", name, "-w", "compute-1", "--wrap", "sleep 60")
	two := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-two", "-N", "2", "-w", "compute-[1-2]", "--wrap", "sleep 60")
	arr := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-arr", "-a", "1-2", "-w", "compute-4", "--wrap", "sleep 60")
	noreq := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-noreq", "--no-requeue", "-w", "compute-3", "--wrap", "sleep 60")
	held := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-held", "-H", "--wrap", "sleep 60")
	for _, id := range []string{one, two, noreq, arr + "_1", arr + "_2"} {
		waitJob(t, c, id, "running", running)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byDisplay := map[string]slurm.Job{}
	for _, j := range jobs {
		byDisplay[j.Display] = j
	}
	check := func(display string, f func(j slurm.Job) bool) {
		t.Helper()
		j, ok := byDisplay[display]
		if !ok {
			t.Fatalf("Jobs has no %s", display)
		}
		if !f(j) {
			t.Errorf("Jobs: %s = %+v", display, j)
		}
		one, err := c.Job(ctx, j.Target())
		if err != nil {
			t.Fatal(err)
		}
		one.Priority, j.Priority = 0, 0 // may move between the reads
		if !jobEqual(*one, j) {
			t.Errorf("Job(%s) = %+v\nJobs has %+v", j.Target(), *one, j)
		}
	}
	check(one, func(j slurm.Job) bool {
		return j.Name == name && j.Active() && slices.Equal(j.Nodes, []string{"compute-1"}) && j.Requeue && j.Batch && j.User == "root"
	})
	check(two, func(j slurm.Job) bool {
		return slices.Equal(j.Nodes, []string{"compute-1", "compute-2"}) && j.BatchHost == "compute-1"
	})
	check(noreq, func(j slurm.Job) bool { return !j.Requeue && j.Active() })
	check(held, func(j slurm.Job) bool { return j.HeldByUser() && j.Held() && j.State == "PENDING" && !j.Finished() })
	for _, task := range []string{"1", "2"} {
		check(arr+"_"+task, func(j slurm.Job) bool {
			return j.ArrayJobID == arr && j.ArrayTaskID == task && j.Target() == arr+"_"+task && j.OnNode("compute-4")
		})
	}
}

func jobEqual(a, b slurm.Job) bool {
	return a.ID == b.ID && a.Display == b.Display && a.Name == b.Name && a.State == b.State &&
		slices.Equal(a.Flags, b.Flags) && a.Reason == b.Reason && slices.Equal(a.Nodes, b.Nodes) &&
		a.BatchHost == b.BatchHost && a.Requeue == b.Requeue && a.Restarts == b.Restarts &&
		a.AdminComment == b.AdminComment && a.ArrayJobID == b.ArrayJobID && a.ArrayTaskID == b.ArrayTaskID &&
		a.HetJobID == b.HetJobID && a.HetJobOffset == b.HetJobOffset && a.SubmitTime.Equal(b.SubmitTime) &&
		a.StartTime.Equal(b.StartTime) && a.User == b.User && a.UID == b.UID && a.Batch == b.Batch
}

// An administrator hold replaces a user's hold and a release lifts both:
// the user's hold has to be given back with UserHold.
func TestLabHoldReleaseUserHold(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-uhold", "-H", "--wrap", "sleep 60")
	waitJob(t, c, id, "held by its user", (*slurm.Job).HeldByUser)
	if err := c.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, id, "held", func(j *slurm.Job) bool { return j.Reason == "JobHeldAdmin" })
	if j.HeldByUser() || !j.Held() || j.Priority != 0 {
		t.Errorf("after Hold: %+v", j)
	}
	if err := c.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if j, _ = c.Job(ctx, id); j.Held() {
		t.Errorf("after Release still held: %+v", j)
	}
	if err := c.UserHold(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, id, "held by its user again", (*slurm.Job).HeldByUser)
}

// A held running job keeps running; requeued it comes back pending and
// still held, with one more restart; released it runs again.
func TestLabHoldRequeueRelease(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-rescue", "-w", "compute-3", "--wrap", "sleep 60")
	waitJob(t, c, id, "running", running)
	if err := c.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	j, _ := c.Job(ctx, id)
	if j.State != "RUNNING" || !j.Held() || j.Priority != 0 {
		t.Fatalf("held running job: %+v", j)
	}
	if err := c.Requeue(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Requeued again while it is on its way back: already pending.
	if err := c.Requeue(ctx, id); !errors.Is(err, slurm.ErrAlreadyPending) {
		t.Errorf("second Requeue: %v, want ErrAlreadyPending", err)
	}
	j = waitJob(t, c, id, "pending", func(j *slurm.Job) bool { return j.State == "PENDING" && !j.Completing() })
	if !j.Held() || j.Restarts != 1 || j.Finished() || j.Active() {
		t.Errorf("requeued: %+v", j)
	}
	if err := c.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if j = waitJob(t, c, id, "running again", running); j.Restarts != 1 {
		t.Errorf("restarted: %+v", j)
	}
}

func TestLabRequeueErrors(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	pending := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-pend", "-H", "--wrap", "sleep 60")
	noreq := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-noreq", "--no-requeue", "-w", "compute-3", "--wrap", "sleep 60")
	het := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-het", "-w", "compute-3", "--wrap", "sleep 60", ":", "-w", "compute-4", "--wrap", "sleep 60")
	done := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-done", "-w", "compute-4", "--wrap", "true")
	waitJob(t, c, noreq, "running", running)
	comp := waitJob(t, c, het, "running", running)
	if comp.Display != het+"+0" || comp.HetJobID != het {
		t.Errorf("het leader %+v", comp)
	}
	waitJob(t, c, done, "finished", (*slurm.Job).Finished)
	jobs, err := c.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var member string
	for _, j := range jobs {
		if j.HetJobID == het && j.HetJobOffset == 1 {
			member = j.ID
		}
	}
	for id, want := range map[string]error{
		pending: slurm.ErrAlreadyPending, noreq: slurm.ErrNotRequeueable,
		member: slurm.ErrNotHetLeader, "4000000000": slurm.ErrNoJob,
	} {
		if err := c.Requeue(ctx, id); !errors.Is(err, want) {
			t.Errorf("Requeue(%s): %v, want %v", id, err, want)
		}
	}
	// slurmctld still remembers the completed job, and requeues it.
	if err := c.Requeue(ctx, done); err != nil {
		t.Errorf("Requeue of a COMPLETED job: %v", err)
	}
	if err := c.Hold(ctx, "4000000000"); !errors.Is(err, slurm.ErrNoJob) {
		t.Errorf("Hold of an unknown job: %v", err)
	}
}

// Draining leaves the job running and shows on the node with its reason.
func TestLabDrain(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	const node = "compute-4"
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-drain", "-w", node, "--wrap", "sleep 60")
	waitJob(t, c, id, "running", running)
	reason := "spotrescue lab: interruption = i-0c0ffee ✓"
	t.Cleanup(func() { _ = l.Command("scontrol", "update", "nodename="+node, "state=resume").Run() })
	if err := c.Drain(ctx, []string{node}, reason); err != nil {
		t.Fatal(err)
	}
	n, err := c.Node(ctx, node)
	if err != nil || !n.Drained() || n.Reason != reason || n.State == "DOWN" {
		t.Fatalf("node %+v, %v", n, err)
	}
	if j, _ := c.Job(ctx, id); j.State != "RUNNING" {
		t.Errorf("job after drain: %+v", j)
	}
}

// An admin comment with spaces, '=' and Unicode reads back exactly from
// scontrol's text (Job) and from squeue --json (Jobs).
func TestLabAdminComment(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-comment", "-H", "--wrap", "sleep 60")
	waitJob(t, c, id, "known", func(*slurm.Job) bool { return true })
	comment := `spotrescue phase=held node=compute-1 ✓ "quoted" StdOut=/x  two spaces`
	if err := c.SetAdminComment(ctx, id, comment); err != nil {
		t.Fatal(err)
	}
	j, err := c.Job(ctx, id)
	if err != nil || j.AdminComment != comment {
		t.Fatalf("Job: %q, %v", j.AdminComment, err)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.ID == id && j.AdminComment != comment {
			t.Errorf("Jobs: %q", j.AdminComment)
		}
	}
	// 24.11's slurmctld once refused this for several seconds with EAGAIN
	// ("Resource temporarily unavailable"), on a lab just started while
	// the unit tests loaded the machine; the controller retries its step
	// with backoff, and so does the test.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		err := c.SetPartition(ctx, id, "ondemand")
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "temporarily unavailable") || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if j, _ = c.Job(ctx, id); j.Partition != "ondemand" {
		t.Errorf("partition %q", j.Partition)
	}
}

// Signal reaches a trap in the batch script.
func TestLabSignal(t *testing.T) {
	l, c := labClient(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	marker, trapped := filepath.Join(dir, "got-usr1"), filepath.Join(dir, "trapped")
	script := `trap 'echo usr1 > ` + marker + `; exit 0' USR1; touch ` + trapped + `; for i in $(seq 600); do sleep 0.1; done`
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-signal", "-w", "compute-2", "--wrap", script)
	waitJob(t, c, id, "running", running)
	// A signal before the trap is installed would end the job unseen.
	lab.Eventually(t, 30*time.Second, "the trap to be installed", func() bool {
		_, err := os.Stat(trapped)
		return err == nil
	})
	if err := c.Signal(context.Background(), id, "SIGUSR1"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "the trap to run", func() bool {
		b, err := os.ReadFile(marker)
		return err == nil && strings.TrimSpace(string(b)) == "usr1"
	})
	waitJob(t, c, id, "finished", (*slurm.Job).Finished)
}

// The last task of an array shares its id with the array: holding that id
// must hold that task only.
func TestLabArrayTaskHold(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	arr := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-arr-hold", "-a", "1-2", "-w", "compute-1", "--wrap", "sleep 60")
	waitJob(t, c, arr+"_1", "running", running)
	last := waitJob(t, c, arr+"_2", "running", running)
	if last.ID != arr {
		t.Skipf("task %s has id %s, not the array's", last.Display, last.ID)
	}
	if err := c.Hold(ctx, arr); err != nil {
		t.Fatal(err)
	}
	first, _ := c.Job(ctx, arr+"_1")
	last, _ = c.Job(ctx, arr+"_2")
	if !last.Held() || first.Held() {
		t.Errorf("Hold(%s) held task 1: %v, task 2: %v; want only task 2", arr, first.Held(), last.Held())
	}
}

// Reading while a job completes: every read parses, and the states seen go
// RUNNING, completing, then finished.
func TestLabCompletingWhileReading(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	// The job says when its trap is set: a TERM that came before would end
	// it at once, with no COMPLETING to see (seen on a loaded machine).
	ready := filepath.Join(t.TempDir(), "trap-set")
	os.Chmod(filepath.Dir(ready), 0o777)
	id := l.Sbatch(t, "-o", "/dev/null", "-J", "lab-completing", "-w", "compute-2", "--wrap", `trap "" TERM; touch `+ready+`; sleep 60`)
	waitJob(t, c, id, "running", running)
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("job %s did not start its script within 30s", id)
		}
	}
	if err := l.Command("scancel", id).Run(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		j, err := c.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		jobs, err := c.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(jobs, func(x slurm.Job) bool { return x.ID == id }) {
			t.Fatalf("Jobs lost job %s", id)
		}
		if j.Completing() && (!j.Active() || j.Finished()) {
			t.Errorf("completing job: Active %v Finished %v", j.Active(), j.Finished())
		}
		// 22.05 reports the state COMPLETING; 23.11 on (24.11 here) the
		// base state CANCELLED with the flag COMPLETING. Completing
		// reads both.
		st := j.State
		if j.Completing() {
			st = "COMPLETING"
		}
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if j.Finished() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Contains(seen, "COMPLETING") || seen[len(seen)-1] != "CANCELLED" {
		t.Errorf("states seen %q, want COMPLETING then CANCELLED", seen)
	}
}

// A running job's excluded nodes cannot change (ErrNotPending); right
// after a requeue, while the old run may still be completing, they can,
// and "" clears them. Nodes lists every node with its partitions.
func TestLabExcludedNodesAndNodes(t *testing.T) {
	l, c := labClient(t)
	ctx := context.Background()
	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string][]string{}
	for _, n := range nodes {
		parts[n.Name] = n.Partitions
	}
	if !slices.Equal(parts["compute-3"], []string{"spot", "ondemand"}) || !slices.Equal(parts["pc-dy-c5-1"], []string{"pc"}) || len(nodes) != len(l.Instances) {
		t.Errorf("Nodes: %d nodes (lab has %d), partitions %v", len(nodes), len(l.Instances), parts)
	}

	id := l.Sbatch(t, "-o", "/dev/null", "-p", "pc", "-x", "pc-dy-m5-1", "--wrap", "sleep 60")
	j := waitJob(t, c, id, "running", running)
	if j.ExcNodes != "pc-dy-m5-1" || j.BatchHost != "pc-dy-c5-1" {
		t.Fatalf("running job excludes %q, runs on %s", j.ExcNodes, j.BatchHost)
	}
	if err := c.SetExcludedNodes(ctx, id, "pc-dy-c5-1"); !errors.Is(err, slurm.ErrNotPending) {
		t.Errorf("on a running job: %v, want ErrNotPending", err)
	}
	if err := c.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.Requeue(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.SetExcludedNodes(ctx, id, "pc-dy-c5-1,pc-dy-m5-1"); err != nil {
		t.Fatalf("just after the requeue: %v", err)
	}
	if j, _ := c.Job(ctx, id); j.ExcNodes != "pc-dy-c5-1,pc-dy-m5-1" && j.ExcNodes != "pc-dy-c5-[1],pc-dy-m5-[1]" {
		t.Errorf("excludes %q", j.ExcNodes)
	}
	if err := c.SetExcludedNodes(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if j, _ := c.Job(ctx, id); j.ExcNodes != "" {
		t.Errorf("cleared, still excludes %q", j.ExcNodes)
	}
	l.Run(t, "scancel", id)
}
