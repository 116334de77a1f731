package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Calls made together share one run; each caller gets its own key's result.
func TestCoalescerMergesConcurrentCalls(t *testing.T) {
	var runs atomic.Int32
	var sizes []int
	c := &coalescer[string, int]{window: 20 * time.Millisecond, run: func(_ context.Context, keys []string) (map[string]result[int], error) {
		runs.Add(1)
		sizes = append(sizes, len(keys))
		out := map[string]result[int]{}
		for _, k := range keys {
			if k == "bad" {
				out[k] = result[int]{err: errors.New("refused")}
				continue
			}
			var n int
			fmt.Sscan(k, &n)
			out[k] = result[int]{val: n * 2}
		}
		return out, nil
	}}
	var wg sync.WaitGroup
	got := make([]int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.do(context.Background(), fmt.Sprint(i))
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	if runs.Load() != 1 || sizes[0] != 50 {
		t.Fatalf("%d runs with sizes %v, want 1 run of 50", runs.Load(), sizes)
	}
	for i, v := range got {
		if v != 2*i {
			t.Errorf("caller %d got %d", i, v)
		}
	}
	if _, err := c.do(context.Background(), "bad"); err == nil {
		t.Error("a per-key error was lost")
	}
}

// A failure of the whole call reaches every caller of the round.
func TestCoalescerSharesWholeFailure(t *testing.T) {
	boom := errors.New("slurmctld down")
	c := &coalescer[string, struct{}]{window: 10 * time.Millisecond, run: func(context.Context, []string) (map[string]result[struct{}], error) {
		return nil, boom
	}}
	res, err := c.doAll(context.Background(), []string{"1", "2"})
	if !errors.Is(err, boom) || res != nil {
		t.Fatalf("res %v err %v", res, err)
	}
}

// Rounds never overlap: callers arriving while one runs gather into the
// next, so a slow squeue is not joined by more squeues.
func TestCoalescerRunsOneRoundAtATime(t *testing.T) {
	var running, most atomic.Int32
	var rounds atomic.Int32
	c := &coalescer[int, struct{}]{window: time.Millisecond, run: func(_ context.Context, keys []int) (map[int]result[struct{}], error) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		rounds.Add(1)
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return nil, nil
	}}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 2 * time.Millisecond)
			if _, err := c.do(context.Background(), i); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d rounds ran at once, want 1", most.Load())
	}
	// 60 callers 2 ms apart, 20 ms rounds: they gather (alone, ~60 rounds).
	if r := rounds.Load(); r > 30 {
		t.Errorf("%d rounds for 60 callers, want them gathered", r)
	}
}
