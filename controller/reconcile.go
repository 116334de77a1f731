package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// Reconcile moves the record named by key as far toward Done as it can go
// now: the sync handler of the work queue. It returns how long to wait
// before looking again when it has to wait (for a grace period or an
// upload), and an error when a step failed and should be retried with
// backoff.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	k, err := state.ParseKey(key)
	if err != nil {
		c.log.Error("dropping malformed work item", zap.String("key", key), zap.Error(err))
		return 0, nil
	}
	rec, err := c.records.get(ctx, k)
	if errors.Is(err, state.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for !rec.Phase.Terminal() {
		if wait := c.load.yield(rec); wait > 0 {
			return wait, nil
		}
		before := rec.Phase
		wait, err := c.step(ctx, rec)
		if err != nil && c.overdue(rec) {
			return 0, c.abandon(ctx, k, before, err)
		}
		if err != nil {
			c.recordError(ctx, k, before, err)
			// The backoff grows to 30 s; the bound is not to be missed by that.
			if bound := rec.Deadline.Add(c.opts.GiveUpAfter).Sub(c.now()); bound > 0 && bound < 30*time.Second {
				return bound + time.Millisecond, nil
			}
			return 0, err
		}
		if wait > 0 {
			return wait, nil
		}
		if rec.Phase == before {
			return 0, fmt.Errorf("reconcile %s: phase %s made no progress", k, before)
		}
	}
	return 0, nil
}

// step takes the record's next step.
func (c *Controller) step(ctx context.Context, rec *state.Record) (time.Duration, error) {
	switch rec.Phase {
	case state.Detected:
		return 0, c.hold(ctx, rec)
	case state.Held:
		return c.dispatch(ctx, rec)
	case state.Dispatched:
		return c.steps.track(ctx, rec)
	case state.Rescued, state.Partial, state.Failed:
		return 0, c.steps.requeue(ctx, rec)
	case state.Requeued:
		return 0, c.steps.release(ctx, rec)
	}
	return 0, fmt.Errorf("unknown phase %q", rec.Phase)
}

// hold holds a record the intake could not hold, unless its job is gone.
func (c *Controller) hold(ctx context.Context, rec *state.Record) error {
	log := logFor(c.log, rec)
	job, err := c.steps.slurm.Job(ctx, rec.JobID)
	if why := gone(rec, job, err); why != "" {
		// A hold of ours that was not recorded (a crash, a failed write)
		// must not outlive the record.
		if err == nil && !job.Finished() && job.Reason == "JobHeldAdmin" {
			if rerr := c.steps.releaseHold(ctx, log, rec); rerr != nil {
				return rerr
			}
		}
		rec.Outcome, rec.Requeue = state.OutcomeSkipped, why
		c.metrics.rescues.WithLabelValues(string(state.OutcomeSkipped)).Inc()
		return c.records.advance(ctx, rec, state.Done)
	}
	if err != nil {
		return err
	}
	if err := c.steps.hold(ctx, log, []*state.Record{rec}, interrupted(rec)); err != nil {
		return err
	}
	return c.records.advance(ctx, rec, state.Held)
}

// dispatch sends the agents of a held record once its checkpoint grace is
// over, or records that its deadline passed first.
func (c *Controller) dispatch(ctx context.Context, rec *state.Record) (time.Duration, error) {
	now := c.now()
	if p := c.opts.Policy; p.Signal != "" {
		// The grace period ends early enough to leave the upload its share.
		end := rec.Times.Held.Add(p.Grace)
		if latest := rec.Deadline.Add(-(Reclaim - c.opts.Margin) / 2); end.After(latest) {
			end = latest
		}
		if wait := end.Sub(now); wait > 0 {
			return wait, nil
		}
	}
	if now.After(rec.Deadline) {
		rec.URI = c.opts.Layout.RunURI(rec.JobID, rec.Run)
		rec.Outcome = state.OutcomeFailed
		rec.AddError(errors.New("the deadline passed before the upload could start"))
		return 0, c.steps.finish(ctx, rec)
	}
	err := c.steps.dispatch(ctx, logFor(c.log, rec), []*state.Record{rec})
	if rec.Phase != state.Dispatched {
		return 0, err
	}
	return 0, c.records.saveDispatched(ctx, rec, true)
}

// overdue reports a record that should have reached a terminal phase by now.
func (c *Controller) overdue(rec *state.Record) bool {
	return !rec.Phase.Terminal() && c.now().After(rec.Deadline.Add(c.opts.GiveUpAfter))
}

// abandon closes a record whose step keeps failing past its bound (a
// manifest S3 keeps refusing, a requeue Slurm keeps failing): the job must
// not stay held forever. Its outcome is what the record knows (failed when
// nothing was collected), our hold on the job is lifted if we can, and the
// record says why; it is Done, not requeued by us.
func (c *Controller) abandon(ctx context.Context, k state.Key, phase state.Phase, cause error) error {
	log := c.log.With(zap.String("job", k.JobID), zap.Int("run", k.Run))
	why := fmt.Sprintf("not requeued: gave up %s after the deadline, in %s: %v", c.opts.GiveUpAfter, phase, cause)
	var done *state.Record
	err := c.records.update(ctx, k, func(r *state.Record) bool {
		done = nil
		if r.Phase.Terminal() {
			return false
		}
		done = r // the copy written, if this attempt's write succeeds
		if r.Outcome == "" {
			r.Outcome = state.OutcomeFailed
		}
		if rerr := c.steps.releaseHold(ctx, log, r); rerr != nil {
			why += fmt.Sprintf("; the hold could not be lifted either (%v): release the job by hand", rerr)
		}
		r.Requeue, r.Phase = why, state.Done
		r.Times.Done = c.now().UTC()
		r.AddError(fmt.Errorf("%s: %w", phase, cause))
		return true
	})
	if err != nil {
		return fmt.Errorf("abandon %s: %w", k, err)
	}
	if done != nil {
		c.records.finished(done)
	}
	c.metrics.requeues.WithLabelValues("abandoned").Inc()
	log.Error("rescue abandoned: its job is released and not requeued", zap.String("phase", string(phase)), zap.Error(cause))
	return nil
}

// recordError notes a failed step on a fresh copy of the record: the
// in-memory one may hold half-applied changes of the failed step.
func (c *Controller) recordError(ctx context.Context, k state.Key, phase state.Phase, err error) {
	c.metrics.stepErrors.WithLabelValues(string(phase)).Inc()
	uerr := c.records.update(ctx, k, func(r *state.Record) bool {
		if r.Phase.Terminal() {
			return false
		}
		r.AddError(fmt.Errorf("%s: %w", phase, err))
		return true
	})
	if uerr != nil {
		c.log.Warn("cannot record the error", zap.String("key", k.String()), zap.Error(uerr))
	}
}

// gone says why a job no longer needs (or can have) a rescue or a requeue;
// "" if it does.
func gone(rec *state.Record, job *slurm.Job, err error) string {
	when := "before its data was rescued"
	if rec.Phase != state.Detected {
		when = "during the rescue"
	}
	switch {
	case errors.Is(err, slurm.ErrNoJob):
		return "not requeued: Slurm no longer knows the job"
	case err != nil:
		return ""
	case job.Finished():
		return fmt.Sprintf("not requeued: the job ended (%s) %s", job.State, when)
	case job.Restarts > rec.Run:
		return fmt.Sprintf("not requeued: Slurm had already requeued the job (now run %d)", job.Restarts)
	}
	return ""
}
