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

// Reclaim is how long after its warning EC2 takes a Spot instance back.
const Reclaim = 120 * time.Second

// steps are the phase steps of a rescue, one implementation each, shared
// by the intake (for a whole batch of warnings at once) and Reconcile (for
// one record): hold (this file), dispatch (dispatch.go), track and collect
// (track.go), requeue and release (requeue.go). A step changes Slurm, SSM
// or S3 and the records in memory; who calls it writes the records: the
// intake all of a batch's at once, Reconcile one at a time.
type steps struct {
	opts       Options
	act        actor
	plans      planner
	slurm      Slurm
	dispatcher Dispatcher
	manifests  Manifests
	records    *records
	commands   *commands
	presync    *presyncer
	wake       func(key string) // queues a record to reconcile
	scheduled  chan struct{}    // wakes the schedules loop (schedules.go)
	log        *zap.Logger
	metrics    *Metrics
	now        func() time.Time
}

// hold keeps the jobs of recs from restarting anywhere before their data is
// safe (one `scontrol hold` for all), drains nodes so that nothing new
// lands on them, sends the checkpoint signal, and moves the records to
// Held. On an error nothing is moved, and the step is retried whole: each
// part is idempotent.
func (s *steps) hold(ctx context.Context, log *zap.Logger, recs []*state.Record, nodes []string) error {
	if len(recs) > 0 {
		ids := make([]string, len(recs))
		for i, r := range recs {
			ids[i] = r.JobID
		}
		if err := s.act.do(log, fmt.Sprintf("hold jobs %v", ids), func() error { return s.slurm.Hold(ctx, ids...) }); err != nil {
			s.metrics.slurmError("scontrol hold")
			return fmt.Errorf("hold jobs %v: %w", ids, err)
		}
	}
	if err := s.drain(ctx, log, nodes, "spot interruption"); err != nil {
		return err
	}
	now := s.now()
	for _, r := range recs {
		s.signal(ctx, log, r.JobID)
		enter(r, state.Held, now)
	}
	return nil
}

// drain sets nodes DRAIN (never DOWN: ParallelCluster terminates DOWN nodes
// and Slurm kills their jobs).
func (s *steps) drain(ctx context.Context, log *zap.Logger, nodes []string, reason string) error {
	if len(nodes) == 0 {
		return nil
	}
	err := s.act.do(log, "drain "+fmt.Sprint(nodes), func() error { return s.slurm.Drain(ctx, nodes, reason) })
	if err != nil {
		s.metrics.slurmError("scontrol update nodename")
		return fmt.Errorf("drain %v: %w", nodes, err)
	}
	return nil
}

// signal sends the checkpoint signal to a held job, so it can write a
// checkpoint during the grace period before the upload starts.
func (s *steps) signal(ctx context.Context, log *zap.Logger, job string) {
	if s.opts.Policy.Signal == "" {
		return
	}
	err := s.act.do(log, "signal job "+job+" to checkpoint", func() error { return s.slurm.Signal(ctx, job, s.opts.Policy.Signal) })
	if err != nil {
		s.metrics.slurmError("scancel --signal")
		log.Warn("checkpoint signal failed; rescuing what is there", zap.String("job", job), zap.Error(err))
	}
}

// releaseHold lifts our hold. `scontrol release` also lifts a user's own
// hold (our admin hold replaced it), so a job its user had held gets that
// hold back as a user hold the user can release. A job an administrator or
// Slurm itself had held is not released at all: the release would lift
// their hold too, and that is not ours to lift.
func (s *steps) releaseHold(ctx context.Context, log *zap.Logger, rec *state.Record) error {
	if rec.KeptHold != "" {
		log.Info("job left held: its hold was not only ours", zap.String("why", rec.KeptHold))
		return nil
	}
	err := s.act.do(log, "release the job", func() error { return s.slurm.Release(ctx, rec.JobID) })
	if err != nil && !errors.Is(err, slurm.ErrNoJob) && !errors.Is(err, slurm.ErrFinished) {
		s.metrics.slurmError("scontrol release")
		return fmt.Errorf("release job %s: %w", rec.JobID, err)
	}
	if !rec.UserHeld || err != nil {
		return nil
	}
	err = s.act.do(log, "restore the user's hold", func() error { return s.slurm.UserHold(ctx, rec.JobID) })
	if err != nil {
		s.metrics.slurmError("scontrol uhold")
		return fmt.Errorf("restore user hold of job %s: %w", rec.JobID, err)
	}
	log.Info("job left held by its user, as it was before the interruption")
	return nil
}

// actor runs changes to Slurm and the spool, or in a dry run only logs them.
type actor struct {
	dryRun bool
	log    *zap.Logger
}

func (a actor) do(log *zap.Logger, what string, f func() error) error {
	if a.dryRun {
		log.Info("dry run: would " + what)
		return nil
	}
	return f()
}

// interrupted lists the nodes of rec whose instances were warned.
func interrupted(rec *state.Record) []string {
	var nodes []string
	for _, n := range rec.Nodes {
		if n.Interrupted {
			nodes = append(nodes, n.Name)
		}
	}
	return nodes
}
