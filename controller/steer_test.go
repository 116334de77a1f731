package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// steerNodes is partition spot of queue "compute": compute resource spot
// (nodeA, nodeB, and a static node) and compute resource c5.
func steerNodes() []slurm.Node {
	spot := []string{"spot"}
	return []slurm.Node{
		{Name: nodeA, State: "ALLOCATED", Partitions: spot},
		{Name: nodeB, State: "IDLE", Flags: []string{"CLOUD", "POWERED_DOWN"}, Partitions: spot},
		{Name: "compute-st-spot-1", State: "IDLE", Partitions: spot},
		{Name: "compute-dy-c5-1", State: "IDLE", Flags: []string{"CLOUD", "POWERED_DOWN"}, Partitions: spot},
		{Name: "other-dy-spot-1", State: "IDLE", Partitions: []string{"other"}},
	}
}

func steerHarness(t *testing.T, mod func(*Options), job slurm.Job) *harness {
	t.Helper()
	h := newHarness(t, now(), func(o *Options) {
		o.Policy.AvoidFor = 10 * time.Minute
		if mod != nil {
			mod(o)
		}
	}, job)
	h.slurm.nodes = steerNodes()
	return h
}

// rescue runs job 101's rescue on nodeA to Done.
func (h *harness) rescue(t *testing.T) *state.Record {
	t.Helper()
	h.warn(t, "m1", instA)
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, key("101", 0))
	r := h.store.record(t, key("101", 0))
	if r.Phase != state.Done || !strings.HasPrefix(r.Requeue, "requeued") {
		t.Fatalf("record %s, requeue %q: want Done, requeued", r.Phase, r.Requeue)
	}
	return r
}

func TestSteerKeepsRequeuedJobOffReclaimedComputeResource(t *testing.T) {
	ctx := context.Background()
	j := batchJob("101", nodeA)
	j.ExcNodes = "login-[1-2]" // the user's own exclusions
	h := steerHarness(t, nil, j)
	r := h.rescue(t)

	want := "compute-dy-spot-[1-2],compute-st-spot-1"
	if r.Steer == nil || r.Steer.Avoided != want || r.Steer.Kept != "login-[1-2]" || !r.Steer.Until.Equal(now().Add(10*time.Minute)) {
		t.Fatalf("record steer %+v; want %s avoided until %s, login-[1-2] kept", r.Steer, want, now().Add(10*time.Minute))
	}
	if got := h.slurm.job("101").ExcNodes; !sameHosts(got, want+",login-[1-2]") {
		t.Fatalf("job excludes %q, want the compute resource and the user's nodes", got)
	}
	if n := h.metric(t, "spotrescue_steers_total", "result=steered"); n != 1 {
		t.Errorf("steered %v times, want 1", n)
	}

	// Before the time: the exclusion stays; the next look is when it is due.
	h.clock.Set(now().Add(9 * time.Minute))
	if wait := h.c.intake.fireDue(ctx); wait != time.Minute {
		t.Errorf("next look in %s, want 1m", wait)
	}
	h.clock.Set(now().Add(10 * time.Minute))
	h.c.intake.fireDue(ctx)
	if got := h.slurm.job("101").ExcNodes; got != "login-[1-2]" {
		t.Errorf("after the lift the job excludes %q, want only the user's login-[1-2]", got)
	}
	r = h.store.record(t, key("101", 0))
	if !strings.HasSuffix(r.Steer.Lifted, " lifted") {
		t.Errorf("record lift %q", r.Steer.Lifted)
	}
	if scs, _ := h.store.Schedules(ctx, testCluster); len(scs) != 0 {
		t.Errorf("schedules left after the lift: %+v", scs)
	}
}

func TestSteerLiftLeavesStartedJob(t *testing.T) {
	ctx := context.Background()
	h := steerHarness(t, nil, batchJob("101", nodeA))
	h.rescue(t)
	h.slurm.mutate("101", func(j *slurm.Job) { j.State, j.Nodes = "RUNNING", []string{"compute-dy-c5-1"} })
	h.clock.Set(now().Add(10 * time.Minute))
	h.c.intake.fireDue(ctx)
	r := h.store.record(t, key("101", 0))
	if !strings.Contains(r.Steer.Lifted, "the job had started (RUNNING on compute-dy-c5-1)") {
		t.Errorf("record lift %q", r.Steer.Lifted)
	}
	if got := h.slurm.job("101").ExcNodes; got != r.Steer.Set {
		t.Errorf("a running job's exclusion changed to %q", got)
	}
}

func TestSteerSkipped(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(*Options)
		setup func(h *harness, j *slurm.Job)
		want  string // the record's Skipped; "" for no steering at all
	}{
		{"nothing else in service", nil, func(h *harness, _ *slurm.Job) {
			h.slurm.drained["compute-dy-c5-1"] = "maintenance"
		}, "no other compute resource of partition spot has the 1 node(s) in service the job needs"},
		{"job needs more nodes", nil, func(_ *harness, j *slurm.Job) { j.NodeCount = 2 },
			"no other compute resource of partition spot has the 2 node(s) in service the job needs"},
		{"job asks for the node", nil, func(_ *harness, j *slurm.Job) { j.ReqNodes = nodeB },
			"the job asks for node " + nodeB + " of the reclaimed compute resource"},
		{"moved to the fallback partition", func(o *Options) { o.Policy.FallbackAfter, o.Policy.FallbackPartition = 1, "ondemand" }, nil, ""},
		{"steering off", func(o *Options) { o.Policy.AvoidFor = 0 }, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := batchJob("101", nodeA)
			h := steerHarness(t, tc.mod, j)
			if tc.setup != nil {
				h.slurm.mutate("101", func(j *slurm.Job) { tc.setup(h, j) })
			}
			r := h.rescue(t)
			switch {
			case tc.want == "" && r.Steer != nil:
				t.Errorf("steer %+v, want none", r.Steer)
			case tc.want != "" && (r.Steer == nil || r.Steer.Skipped != tc.want):
				t.Errorf("steer %+v, want skipped: %s", r.Steer, tc.want)
			}
			if got := h.slurm.job("101").ExcNodes; got != "" {
				t.Errorf("job excludes %q", got)
			}
			if scs, _ := h.store.Schedules(context.Background(), testCluster); len(scs) != 0 {
				t.Errorf("lift scheduled: %+v", scs)
			}
		})
	}
}

func TestSteerDryRunChangesNothing(t *testing.T) {
	h := steerHarness(t, func(o *Options) { o.DryRun = true }, batchJob("101", nodeA))
	h.warn(t, "m1", instA)
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, key("101", 0))
	if got := h.slurm.job("101"); got.ExcNodes != "" {
		t.Errorf("dry run set the job's excluded nodes to %q", got.ExcNodes)
	}
	if scs, _ := h.store.Schedules(context.Background(), testCluster); len(scs) != 0 {
		t.Errorf("dry run scheduled a lift: %+v", scs)
	}
}

func TestComputeSavedCountedWhenNextRunResumes(t *testing.T) {
	ctx := context.Background()
	j := batchJob("101", nodeA)
	j.StartTime, j.CPUs, j.GPUs = now().Add(-2*time.Hour), 8, 1
	h := newHarness(t, now(), nil, j)
	r := h.rescue(t)
	if !r.Started.Equal(j.StartTime) || r.CPUs != 8 || r.GPUs != 1 {
		t.Fatalf("record started %s cpus %d gpus %d", r.Started, r.CPUs, r.GPUs)
	}
	held := r.Times.Dispatched.Sub(j.StartTime)

	// Requeued, not started: nothing counted, the rescue stays watched.
	h.c.savings.pass(ctx)
	if r := h.store.record(t, key("101", 0)); r.Saved != nil {
		t.Fatalf("counted before the next run started: %+v", r.Saved)
	}
	// The next run starts; its node's word arrives a little later.
	h.clock.Advance(time.Minute)
	h.slurm.mutate("101", func(j *slurm.Job) { j.State, j.StartTime, j.Nodes = "RUNNING", h.clock.Now(), []string{nodeB} })
	h.c.savings.pass(ctx)
	if r := h.store.record(t, key("101", 0)); r.Saved != nil {
		t.Fatalf("counted without the node's word: %+v", r.Saved)
	}
	h.manifests.resume(h.layout.NodePrefix("101", 0, nodeA), rescue.Resumed{JobID: "101", Rescued: 0, Run: 1, Node: nodeB, Status: rescue.Complete, Time: h.clock.Now()})
	h.c.savings.pass(ctx)
	r = h.store.record(t, key("101", 0))
	want := int64(held.Seconds())
	if r.Saved == nil || r.Saved.Run != 1 || r.Saved.Seconds != want || r.Saved.CPUSeconds != 8*want || r.Saved.GPUSeconds != want {
		t.Fatalf("saved %+v; want run 1, %d s, %d CPU-s, %d GPU-s", r.Saved, want, 8*want, want)
	}
	if got := h.metric(t, "spotrescue_saved_cpu_seconds_total"); got != float64(8*want) {
		t.Errorf("saved CPU seconds metric %v, want %d", got, 8*want)
	}
	// Counted once.
	h.c.savings.watch(r)
	h.c.savings.pass(ctx)
	if got := h.metric(t, "spotrescue_saved_cpu_seconds_total"); got != float64(8*want) {
		t.Errorf("counted twice: %v", got)
	}
}

func TestComputeSavedWatchSurvivesLeaderChange(t *testing.T) {
	ctx := context.Background()
	j := batchJob("101", nodeA)
	j.StartTime, j.CPUs = now().Add(-time.Hour), 2
	h := newHarness(t, now(), nil, j)
	h.rescue(t)
	h.rebuild(t) // a new leader: nothing in memory
	h.c.savings.seed(ctx)
	h.slurm.mutate("101", func(j *slurm.Job) { j.State, j.StartTime = "RUNNING", now().Add(time.Second) })
	h.manifests.resume(h.layout.NodePrefix("101", 0, nodeA), rescue.Resumed{JobID: "101", Run: 1, Node: nodeA, Status: rescue.Partial})
	h.c.savings.pass(ctx)
	if r := h.store.record(t, key("101", 0)); r.Saved == nil || r.Saved.CPUSeconds <= 0 {
		t.Errorf("saved %+v", r.Saved)
	}
}
