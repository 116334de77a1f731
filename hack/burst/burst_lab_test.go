//go:build lab

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	plans, _ := filepath.Glob(filepath.Join(dir, "spool", "plans", "*", "*.json"))
	perInstance := map[string]int{}
	for _, p := range plans {
		perInstance[strings.TrimSuffix(filepath.Base(p), ".json")]++
	}
	if len(perInstance) != o.n {
		t.Errorf("%d instances got an agent, want %d", len(perInstance), o.n)
	}
	for inst, n := range perInstance {
		if n != 1 {
			t.Errorf("instance %s got %d agents, want 1", inst, n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "slurm-calls.log")); err != nil {
		t.Errorf("no Slurm command was run: %v", err)
	}
}
