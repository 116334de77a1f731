package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Calls within the window share one run, and each caller gets its own
// items' results, in order.
func TestCallsWithinTheWindowShareOneRun(t *testing.T) {
	var runs atomic.Int32
	b := &Batcher[int, int]{Window: 50 * time.Millisecond, Run: func(_ context.Context, items []int) ([]int, error) {
		runs.Add(1)
		out := make([]int, len(items))
		for i, v := range items {
			out[i] = v * 10
		}
		return out, nil
	}}
	var wg sync.WaitGroup
	for c := range 20 {
		wg.Go(func() {
			got, err := b.Do(context.Background(), c, c+100)
			if err != nil || len(got) != 2 || got[0] != c*10 || got[1] != (c+100)*10 {
				t.Errorf("caller %d: %v, %v", c, got, err)
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("%d runs for 20 callers within the window, want 1", n)
	}
}

// A full batch runs at once, without waiting for the window; what does not
// fit starts the next batch.
func TestFullBatchRunsAtOnce(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	b := &Batcher[int, int]{Window: time.Hour, Max: 3, Run: func(_ context.Context, items []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		return items, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := b.Do(ctx, 1, 2, 3, 4, 5, 6)
	if err != nil || len(got) != 6 || got[5] != 6 {
		t.Fatalf("%v, %v", got, err)
	}
	if len(sizes) != 2 || sizes[0] != 3 || sizes[1] != 3 {
		t.Errorf("batch sizes %v, want [3 3]", sizes)
	}
}

// With Serial, one run at a time: the callers arriving meanwhile gather
// into the next batch instead of starting runs of their own.
func TestSerialRunsOneAtATime(t *testing.T) {
	var inFlight, most, runs atomic.Int32
	b := &Batcher[int, int]{Window: time.Millisecond, Serial: true, Run: func(_ context.Context, items []int) ([]int, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		return items, nil
	}}
	var wg sync.WaitGroup
	for c := range 50 {
		wg.Go(func() {
			time.Sleep(time.Duration(c%10) * 5 * time.Millisecond)
			if _, err := b.Do(context.Background(), c); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d runs at once, want 1", most.Load())
	}
	if runs.Load() >= 50 {
		t.Errorf("%d runs for 50 callers: batches did not grow", runs.Load())
	}
}

// An error for the batch reaches every caller in it; a caller whose
// context ends stops waiting.
func TestErrorsAndCancellation(t *testing.T) {
	boom := errors.New("slurmctld down")
	b := &Batcher[int, int]{Window: time.Millisecond, Run: func(context.Context, []int) ([]int, error) { return nil, boom }}
	if _, err := b.Do(context.Background(), 1); !errors.Is(err, boom) {
		t.Errorf("err %v, want %v", err, boom)
	}
	short := &Batcher[int, int]{Window: time.Millisecond, Run: func(_ context.Context, items []int) ([]int, error) { return items[:0], nil }}
	if _, err := short.Do(context.Background(), 1); err == nil {
		t.Error("a run that returned too few results passed")
	}
	slow := &Batcher[int, int]{Window: time.Hour, Run: func(_ context.Context, items []int) ([]int, error) { return items, nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := slow.Do(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the caller's deadline", err)
	}
}
