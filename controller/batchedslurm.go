package controller

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/spotrescue/spotrescue/controller/batch"
	"github.com/spotrescue/spotrescue/controller/slurm"
)

// batchedSlurm is the Slurm the controller uses: Jobs, Job, Hold, Release,
// UserHold and Drain calls from concurrent reconciles and receivers within
// a short window share one command, one at a time (batch.Batcher, Serial);
// the rest go straight through.
type batchedSlurm struct {
	*slurm.Client
	all                     *batch.Batcher[struct{}, []slurm.Job]
	jobs                    *batch.Batcher[string, jobResult]
	hold, release, userHold *batch.Batcher[string, error]
	drain                   *batch.Batcher[drainReq, struct{}]
}

type jobResult struct {
	job *slurm.Job
	err error
}

type drainReq struct{ node, reason string }

// NewBatchedSlurm wraps c so that calls within window share one command.
func NewBatchedSlurm(c *slurm.Client, window time.Duration) Slurm {
	b := &batchedSlurm{Client: c}
	b.all = newSerial(window, func(ctx context.Context, items []struct{}) ([]([]slurm.Job), error) {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			return nil, err
		}
		out := make([][]slurm.Job, len(items))
		for i := range out {
			out[i] = jobs
		}
		return out, nil
	})
	b.jobs = newSerial(window, b.lookup)
	b.hold = newSerial(window, perJob(c.Hold))
	b.release = newSerial(window, perJob(c.Release))
	b.userHold = newSerial(window, perJob(c.UserHold))
	b.drain = newSerial(window, b.drainAll)
	return b
}

func newSerial[T, R any](window time.Duration, run func(context.Context, []T) ([]R, error)) *batch.Batcher[T, R] {
	return &batch.Batcher[T, R]{Window: window, Serial: true, Run: run}
}

// lookup answers every Job(id) of a batch from one listing of the jobs.
func (b *batchedSlurm) lookup(ctx context.Context, ids []string) ([]jobResult, error) {
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) == 1 {
		j, err := b.Client.Job(ctx, ids[0])
		out := make([]jobResult, len(ids))
		for i := range out {
			out[i] = jobResult{j, err}
		}
		return out, nil
	}
	jobs, err := b.Jobs(ctx) // shared with the receivers' listings
	if err != nil {
		return nil, err
	}
	byID := map[string]*slurm.Job{}
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
		byID[jobs[i].Target()] = &jobs[i]
	}
	out := make([]jobResult, len(ids))
	for i, id := range ids {
		if j, ok := byID[id]; ok {
			out[i] = jobResult{job: j}
		} else {
			out[i] = jobResult{err: slurm.ErrNoJob}
		}
	}
	return out, nil
}

// perJob turns a Slurm command over a list of jobs into per-job results:
// one command for the batch's jobs, each named once.
func perJob(op func(context.Context, ...string) error) func(context.Context, []string) ([]error, error) {
	return func(ctx context.Context, ids []string) ([]error, error) {
		err := op(ctx, slices.Compact(slices.Sorted(slices.Values(ids)))...)
		out := make([]error, len(ids))
		if err == nil {
			return out, nil
		}
		failed := map[string]error{}
		for _, je := range slurm.JobErrors(err) {
			// A failure we cannot pin on a caller's id (Slurm named an
			// array task 123_4 for id 125) fails the batch: every caller
			// retries, and these commands are idempotent.
			if !slices.Contains(ids, je.ID) {
				return nil, err
			}
			failed[je.ID] = je
		}
		if len(failed) == 0 {
			return nil, err // not about particular jobs: all failed
		}
		for i, id := range ids {
			out[i] = failed[id]
		}
		return out, nil
	}
}

// drainAll drains the batch's nodes, one command per reason.
func (b *batchedSlurm) drainAll(ctx context.Context, reqs []drainReq) ([]struct{}, error) {
	byReason := map[string][]string{}
	for _, r := range reqs {
		if !slices.Contains(byReason[r.reason], r.node) {
			byReason[r.reason] = append(byReason[r.reason], r.node)
		}
	}
	var errs []error
	for reason, nodes := range byReason {
		errs = append(errs, b.Client.Drain(ctx, nodes, reason))
	}
	return make([]struct{}, len(reqs)), errors.Join(errs...)
}

func (b *batchedSlurm) Job(ctx context.Context, id string) (*slurm.Job, error) {
	res, err := b.jobs.Do(ctx, id)
	if err != nil {
		return nil, err
	}
	return res[0].job, res[0].err
}

func (b *batchedSlurm) Hold(ctx context.Context, ids ...string) error {
	return each(ctx, b.hold, ids)
}

func (b *batchedSlurm) Release(ctx context.Context, ids ...string) error {
	return each(ctx, b.release, ids)
}

func (b *batchedSlurm) UserHold(ctx context.Context, ids ...string) error {
	return each(ctx, b.userHold, ids)
}

func each(ctx context.Context, b *batch.Batcher[string, error], ids []string) error {
	res, err := b.Do(ctx, ids...)
	if err != nil {
		return err
	}
	return errors.Join(res...)
}

func (b *batchedSlurm) Drain(ctx context.Context, nodes []string, reason string) error {
	reqs := make([]drainReq, len(nodes))
	for i, n := range nodes {
		reqs[i] = drainReq{n, reason}
	}
	_, err := b.drain.Do(ctx, reqs...)
	return err
}

// Jobs shares one listing among the receivers that ask at once.
func (b *batchedSlurm) Jobs(ctx context.Context) ([]slurm.Job, error) {
	res, err := b.all.Do(ctx, struct{}{})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}
