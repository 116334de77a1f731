//go:build lab

package main

import (
	"encoding/json"

	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/rescue"
)

// A burst of 100 interruptions (200 jobs) through the real controller:
// every job is dispatched, and every instance gets exactly one agent.
// Correctness only; `make bench-burst` measures speed.
func TestBurstDispatchesEveryJobOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o := options{mode: "replay", n: 100, jobsPerNode: 2, bin: "../../bin"}
	bin, _ := filepath.Abs(o.bin)
	repo, _ := filepath.Abs("../..")
	dir := t.TempDir()
	ep, err := privateMoto(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.stop()
	c, err := prepare(ctx, nil, ep, o, repo, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := measure(ctx, ep, o, c, bin)
	if err != nil {
		t.Fatal(err)
	}
	if res.dispatched != c.jobs {
		t.Errorf("%d of %d jobs dispatched", res.dispatched, c.jobs)
	}
	// Every job is in exactly one plan: one agent saves it, once.
	plans, _ := filepath.Glob(filepath.Join(dir, "spool", "plans", "*", "*.json"))
	perJob, instances := map[string]int{}, map[string]bool{}
	for _, p := range plans {
		var plan rescue.Plan
		b, _ := os.ReadFile(p)
		if err := json.Unmarshal(b, &plan); err != nil {
			t.Fatal(err)
		}
		instances[plan.Instance] = true
		for _, j := range plan.Jobs {
			perJob[j.JobID]++
		}
	}
	if len(instances) != o.n || len(perJob) != c.jobs {
		t.Errorf("%d instances and %d jobs got an agent, want %d and %d", len(instances), len(perJob), o.n, c.jobs)
	}
	for job, n := range perJob {
		if n != 1 {
			t.Errorf("job %s is in %d plans, want 1", job, n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "slurm-calls.log")); err != nil {
		t.Errorf("no Slurm command was run: %v", err)
	}
}
