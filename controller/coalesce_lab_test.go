//go:build lab

package controller

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/hack/lab"
)

// countingRunner runs Slurm commands for real and counts them.
type countingRunner struct {
	mu    sync.Mutex
	calls []string
}

func (r *countingRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, filepath.Base(name)+" "+strings.Join(args, " "))
	r.mu.Unlock()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, &slurm.CommandError{Cmd: name, Stderr: string(ee.Stderr), Err: err}
	}
	return out, err
}

func (r *countingRunner) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// Holds, lookups and releases of several jobs by concurrent reconciles
// cost one Slurm command each, and still act on every job.
func TestBatchedSlurmAgainstRealSlurm(t *testing.T) {
	l := lab.Get(t)
	bin := filepath.Dir(strings.TrimSpace(l.Run(t, "which", "scontrol")))
	r := &countingRunner{}
	b := NewBatchedSlurm(slurm.New(bin, slurm.WithRunner(r)), 30*time.Millisecond)
	var ids []string
	for range 3 {
		id := l.Sbatch(t, "-n1", "-o", "/dev/null", "--wrap", "sleep 120")
		l.WaitJob(t, id, 30*time.Second, "RUNNING")
		ids = append(ids, id)
	}
	concurrently := func(f func(id string) error) {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(id); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	ctx := context.Background()
	concurrently(func(id string) error { return b.Hold(ctx, id) })
	concurrently(func(id string) error {
		j, err := b.Job(ctx, id)
		if err == nil && j.Reason != "JobHeldAdmin" {
			t.Errorf("job %s reason %s after the hold", id, j.Reason)
		}
		return err
	})
	concurrently(func(id string) error { return b.Release(ctx, id) })
	if n := r.count("scontrol hold"); n != 1 {
		t.Errorf("%d scontrol hold calls for 3 jobs, want 1", n)
	}
	if n := r.count("scontrol release"); n != 1 {
		t.Errorf("%d scontrol release calls, want 1", n)
	}
	if n := r.count("squeue"); n != 1 {
		t.Errorf("%d squeue calls for 3 lookups, want 1", n)
	}
	for _, id := range ids {
		if reason := l.JobField(t, id, "Reason"); reason == "JobHeldAdmin" {
			t.Errorf("job %s still held", id)
		}
	}
}
