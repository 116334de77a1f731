// Package batch gathers the calls that arrive within a short window into
// one. During a mass reclaim hundreds of reconciles each want a Slurm
// listing, a hold or an agent started; one `scontrol hold a,b,c`, one
// squeue or one SendCommand to 50 instances serves them all, so the calls
// to Slurm and AWS grow with passes, not with events.
package batch

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Batcher runs the items added within Window in one call of Run.
type Batcher[T, R any] struct {
	Window time.Duration
	// Max, when above 0, is the most items one call takes: a batch that
	// reaches it runs at once, and the items after it start the next.
	Max int
	// Serial runs one call at a time: while one runs, the next batch keeps
	// gathering, so under load batches grow instead of piling up
	// concurrent calls (on slurmctld, say).
	Serial bool
	// Timeout bounds one call, which runs on its own context because it
	// serves many callers; a minute when 0.
	Timeout time.Duration
	// Run does the work of one batch: one result per item, in order, or an
	// error for every item.
	Run func(ctx context.Context, items []T) ([]R, error)

	mu      sync.Mutex
	open    *batch[T, R] // the batch being gathered
	running sync.Mutex   // held by the call in flight, with Serial
}

type batch[T, R any] struct {
	items []T
	full  chan struct{} // closed when the batch reaches Max
	done  chan struct{} // closed when Run returned
	res   []R
	err   error
}

// Do adds items to the batch being gathered, and waits for their results.
func (b *Batcher[T, R]) Do(ctx context.Context, items ...T) ([]R, error) {
	type slot struct {
		b  *batch[T, R]
		at int
	}
	slots := make([]slot, len(items))
	b.mu.Lock()
	for i, it := range items {
		bt := b.open
		if bt == nil {
			bt = &batch[T, R]{full: make(chan struct{}), done: make(chan struct{})}
			b.open = bt
			go b.flush(bt)
		}
		slots[i] = slot{bt, len(bt.items)}
		bt.items = append(bt.items, it)
		if b.Max > 0 && len(bt.items) == b.Max {
			b.open = nil // full: it takes no more, and runs now
			close(bt.full)
		}
	}
	b.mu.Unlock()
	out := make([]R, len(items))
	for i, s := range slots {
		select {
		case <-s.b.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s.b.err != nil {
			return nil, s.b.err
		}
		out[i] = s.b.res[s.at]
	}
	return out, nil
}

// flush runs bt after the window, or at once when it is full.
func (b *Batcher[T, R]) flush(bt *batch[T, R]) {
	t := time.NewTimer(b.Window)
	select {
	case <-t.C:
	case <-bt.full:
		t.Stop()
	}
	if b.Serial {
		b.running.Lock()
		defer b.running.Unlock()
	}
	b.mu.Lock()
	if b.open == bt {
		b.open = nil
	}
	b.mu.Unlock()
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bt.res, bt.err = b.Run(ctx, bt.items)
	if bt.err == nil && len(bt.res) != len(bt.items) {
		bt.err = fmt.Errorf("batch: %d results for %d items", len(bt.res), len(bt.items))
	}
	close(bt.done)
}
