package controller

import (
	"slices"
	"testing"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// Which jobs on a warned node get a rescue, by the policy's job states.
func TestRescuedJobStates(t *testing.T) {
	job := func(id, st string, flags ...string) slurm.Job {
		j := batchJob(id, nodeA)
		j.State, j.Flags = st, flags
		return j
	}
	jobs := []slurm.Job{
		job("201", "RUNNING"),
		job("202", "SUSPENDED"),
		job("203", "COMPLETING"),
		job("204", "COMPLETED", "COMPLETING"), // 23.11+ state array
		job("205", "CONFIGURING"),             // nodes still booting: nothing written yet
		job("206", "PENDING"),
		job("207", "CANCELLED"),
	}
	cases := []struct {
		name   string
		states []string
		want   []string
	}{
		{"default", nil, []string{"lab/201/0", "lab/202/0", "lab/203/0", "lab/204/0"}},
		{"running only", []string{"RUNNING"}, []string{"lab/201/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, now(), func(o *Options) { o.Policy.States = tc.states }, jobs...)
			if got := h.warn(t, "m1", instA); !slices.Equal(got, tc.want) {
				t.Errorf("rescued %v, want %v", got, tc.want)
			}
		})
	}
}

// A job Spot keeps interrupting moves to the on-demand partition once it
// has been interrupted FallbackAfter times.
func TestFallbackPartitionAfterRepeatedInterruptions(t *testing.T) {
	cases := []struct {
		name      string
		earlier   int // records of earlier interrupted runs
		partition string
	}{
		{"first interruption", 0, "spot"},
		{"second interruption", 1, "ondemand"},
		{"third interruption", 2, "ondemand"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := batchJob("101", nodeA)
			j.Restarts = tc.earlier
			h := newHarness(t, now(), func(o *Options) {
				o.Policy.FallbackAfter, o.Policy.FallbackPartition = 2, "ondemand"
			}, j)
			for run := range tc.earlier {
				h.store.put(&state.Record{Key: key("101", run), Phase: state.Done, Outcome: state.OutcomeComplete})
			}
			h.warn(t, "m1", instA)
			k := key("101", tc.earlier)
			h.completeManifest("101", tc.earlier, nodeA, 10)
			h.reconcile(t, k)

			r := h.store.record(t, k)
			got := h.slurm.job("101")
			if r.Phase != state.Done || got.Restarts != tc.earlier+1 || got.Held() {
				t.Errorf("record %s, job restarts %d reason %s: want Done, requeued, released", r.Phase, got.Restarts, got.Reason)
			}
			if got.Partition != tc.partition {
				t.Errorf("partition %q, want %q", got.Partition, tc.partition)
			}
			if moved := tc.partition != "spot"; moved != (r.Fallback == "ondemand") {
				t.Errorf("record Fallback %q, job partition %q", r.Fallback, got.Partition)
			}
		})
	}
}
