package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/spotrescue/spotrescue/controller/slurm"
)

// coalescer merges the calls that arrive within a short window into one:
// during a mass reclaim hundreds of reconciles want the same Slurm query or
// a hold each, and one `scontrol hold a,b,c` (or one squeue) serves them
// all, so Slurm calls grow with passes, not events.
type coalescer[K comparable, R any] struct {
	window time.Duration
	// run does the work for all keys; per-key errors go in the map, an
	// error for the whole call in the second result.
	run func(ctx context.Context, keys []K) (map[K]result[R], error)

	mu   sync.Mutex
	open *round[K, R]
	// running admits one round at a time: while one runs, the next keeps
	// gathering callers, so under load rounds grow instead of piling up
	// concurrent squeues on slurmctld.
	running sync.Mutex
}

type result[R any] struct {
	val R
	err error
}

type round[K comparable, R any] struct {
	keys []K
	done chan struct{}
	res  map[K]result[R]
	err  error
}

func (c *coalescer[K, R]) do(ctx context.Context, k K) (R, error) {
	res, err := c.doAll(ctx, []K{k})
	if err != nil {
		var zero R
		return zero, err
	}
	return res[0].val, res[0].err
}

// doAll joins keys to the round being gathered and waits for it.
func (c *coalescer[K, R]) doAll(ctx context.Context, keys []K) ([]result[R], error) {
	c.mu.Lock()
	r := c.open
	if r == nil {
		r = &round[K, R]{done: make(chan struct{})}
		c.open = r
		go c.flush(r)
	}
	for _, k := range keys {
		if !slices.Contains(r.keys, k) {
			r.keys = append(r.keys, k)
		}
	}
	c.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]result[R], len(keys))
	for i, k := range keys {
		out[i] = r.res[k]
	}
	return out, nil
}

func (c *coalescer[K, R]) flush(r *round[K, R]) {
	time.Sleep(c.window)
	c.running.Lock()
	defer c.running.Unlock()
	c.mu.Lock()
	c.open = nil
	c.mu.Unlock()
	// The round serves many callers: it runs on its own context.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.res, r.err = c.run(ctx, r.keys)
	close(r.done)
}

// batchedSlurm is the Slurm the controller uses: Job, Hold, Release,
// UserHold and Drain calls from concurrent reconciles are coalesced; the
// rest go straight through.
type batchedSlurm struct {
	*slurm.Client
	all                     *coalescer[struct{}, []slurm.Job]
	jobs                    *coalescer[string, *slurm.Job]
	hold, release, userHold *coalescer[string, struct{}]
	drain                   *coalescer[drainReq, struct{}]
}

type drainReq struct{ node, reason string }

// NewBatchedSlurm wraps c so that calls within window share one command.
func NewBatchedSlurm(c *slurm.Client, window time.Duration) Slurm {
	b := &batchedSlurm{Client: c}
	b.all = &coalescer[struct{}, []slurm.Job]{window: window, run: func(ctx context.Context, _ []struct{}) (map[struct{}]result[[]slurm.Job], error) {
		jobs, err := c.Jobs(ctx)
		return map[struct{}]result[[]slurm.Job]{{}: {val: jobs}}, err
	}}
	b.jobs = &coalescer[string, *slurm.Job]{window: window, run: b.lookup}
	b.hold = &coalescer[string, struct{}]{window: window, run: perJob(c.Hold)}
	b.release = &coalescer[string, struct{}]{window: window, run: perJob(c.Release)}
	b.userHold = &coalescer[string, struct{}]{window: window, run: perJob(c.UserHold)}
	b.drain = &coalescer[drainReq, struct{}]{window: window, run: b.drainAll}
	return b
}

// lookup answers every Job(id) of a round from one listing of the jobs.
func (b *batchedSlurm) lookup(ctx context.Context, ids []string) (map[string]result[*slurm.Job], error) {
	if len(ids) == 1 {
		j, err := b.Client.Job(ctx, ids[0])
		return map[string]result[*slurm.Job]{ids[0]: {j, err}}, nil
	}
	jobs, err := b.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*slurm.Job{}
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
		byID[jobs[i].Target()] = &jobs[i]
	}
	out := map[string]result[*slurm.Job]{}
	for _, id := range ids {
		if j, ok := byID[id]; ok {
			out[id] = result[*slurm.Job]{val: j}
		} else {
			out[id] = result[*slurm.Job]{err: slurm.ErrNoJob}
		}
	}
	return out, nil
}

// perJob turns a Slurm command over a list of jobs into per-job results.
func perJob(op func(context.Context, ...string) error) func(context.Context, []string) (map[string]result[struct{}], error) {
	return func(ctx context.Context, ids []string) (map[string]result[struct{}], error) {
		err := op(ctx, ids...)
		out := map[string]result[struct{}]{}
		if err == nil {
			return out, nil
		}
		failed := slurm.JobErrors(err)
		for _, je := range failed {
			// A failure we cannot pin on a caller's id (Slurm named an
			// array task 123_4 for id 125) fails the round: every caller
			// retries, and these commands are idempotent.
			if !slices.Contains(ids, je.ID) {
				return nil, err
			}
			out[je.ID] = result[struct{}]{err: je}
		}
		if len(failed) == 0 {
			return nil, err // not about particular jobs: all failed
		}
		return out, nil
	}
}

func (b *batchedSlurm) drainAll(ctx context.Context, reqs []drainReq) (map[drainReq]result[struct{}], error) {
	byReason := map[string][]string{}
	for _, r := range reqs {
		byReason[r.reason] = append(byReason[r.reason], r.node)
	}
	var errs []error
	for reason, nodes := range byReason {
		errs = append(errs, b.Client.Drain(ctx, nodes, reason))
	}
	return nil, errors.Join(errs...)
}

func (b *batchedSlurm) Job(ctx context.Context, id string) (*slurm.Job, error) {
	return b.jobs.do(ctx, id)
}

func (b *batchedSlurm) Hold(ctx context.Context, ids ...string) error {
	return b.each(ctx, b.hold, ids)
}

func (b *batchedSlurm) Release(ctx context.Context, ids ...string) error {
	return b.each(ctx, b.release, ids)
}

func (b *batchedSlurm) UserHold(ctx context.Context, ids ...string) error {
	return b.each(ctx, b.userHold, ids)
}

func (b *batchedSlurm) each(ctx context.Context, c *coalescer[string, struct{}], ids []string) error {
	res, err := c.doAll(ctx, ids)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range res {
		errs = append(errs, r.err)
	}
	return errors.Join(errs...)
}

func (b *batchedSlurm) Drain(ctx context.Context, nodes []string, reason string) error {
	reqs := make([]drainReq, len(nodes))
	for i, n := range nodes {
		reqs[i] = drainReq{n, reason}
	}
	_, err := b.drain.doAll(ctx, reqs)
	return err
}

// Jobs shares one listing among the receivers that ask at once.
func (b *batchedSlurm) Jobs(ctx context.Context) ([]slurm.Job, error) {
	return b.all.do(ctx, struct{}{})
}
