package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// requeue tells the next run where its data is (env file, AdminComment) and
// requeues the job. A job that ended meanwhile, or that its user submitted
// with --no-requeue, is not requeued; the record says why.
func (s *steps) requeue(ctx context.Context, rec *state.Record) error {
	log := logFor(s.log, rec)
	job, err := s.slurm.Job(ctx, rec.JobID)
	if errors.Is(err, slurm.ErrNoJob) || err == nil && job.Finished() {
		rec.Requeue = gone(rec, job, err)
		s.metrics.requeues.WithLabelValues("job_ended").Inc()
		return s.records.advance(ctx, rec, state.Done)
	}
	if err != nil {
		s.metrics.slurmError("scontrol show job")
		return err
	}
	if rec.KeptHold == "" && job.HeldBySlurm() {
		rec.KeptHold = keptHold(job) // Slurm held it meanwhile (an admin hold now is ours)
	}
	if ok, why := Requeueable(job); !ok {
		rec.Requeue = "not requeued: " + why + keptNote(rec)
		s.metrics.requeues.WithLabelValues("not_requeueable").Inc()
		if err := s.releaseHold(ctx, log, rec); err != nil {
			return err
		}
		return s.records.advance(ctx, rec, state.Done)
	}
	if err := s.tellNextRun(ctx, log, rec); err != nil {
		return err
	}
	switch {
	case job.Restarts > rec.Run:
		// Requeued already: by ParallelCluster after the node died, or by
		// us just before a restart. Either way, once is enough.
		rec.Requeue = fmt.Sprintf("requeued (found already requeued, now run %d)", job.Restarts)
	default:
		err := s.act.do(log, "requeue the job", func() error { return s.slurm.Requeue(ctx, rec.JobID) })
		switch {
		case errors.Is(err, slurm.ErrAlreadyPending):
			rec.Requeue = "requeued (the job was already pending)"
		case err != nil:
			s.metrics.slurmError("scontrol requeue")
			return fmt.Errorf("requeue job %s: %w", rec.JobID, err)
		default:
			rec.Requeue = "requeued"
		}
	}
	if err := s.fallback(ctx, log, rec); err != nil {
		return err
	}
	if err := s.steer(ctx, log, rec); err != nil {
		return err
	}
	s.metrics.requeues.WithLabelValues("requeued").Inc()
	return s.records.advance(ctx, rec, state.Requeued)
}

// fallback moves a job that Spot keeps interrupting to the on-demand
// partition. Every record of the job is one interruption.
func (s *steps) fallback(ctx context.Context, log *zap.Logger, rec *state.Record) error {
	p := s.opts.Policy
	if p.FallbackAfter <= 0 || rec.Fallback != "" {
		return nil
	}
	runs, err := s.records.store.Runs(ctx, rec.Cluster, rec.JobID)
	if err != nil {
		return fmt.Errorf("count interruptions of job %s: %w", rec.JobID, err)
	}
	if len(runs) < p.FallbackAfter {
		return nil
	}
	err = s.act.do(log, "move the job to partition "+p.FallbackPartition, func() error { return s.slurm.SetPartition(ctx, rec.JobID, p.FallbackPartition) })
	if err != nil {
		s.metrics.slurmError("scontrol update partition")
		return fmt.Errorf("fallback of job %s: %w", rec.JobID, err)
	}
	rec.Fallback = p.FallbackPartition
	log.Info("job moved to on-demand capacity after repeated interruptions", zap.Int("interruptions", len(runs)), zap.String("partition", p.FallbackPartition))
	return nil
}

// tellNextRun writes the env file the TaskProlog exports and mirrors the
// URI into AdminComment, which only admins can set (users can forge
// Comment), so operators see it in scontrol show job.
func (s *steps) tellNextRun(ctx context.Context, log *zap.Logger, rec *state.Record) error {
	// The record's outcome is the status the next run sees (skipped
	// records are never requeued).
	status := rescue.Status(rec.Outcome)
	var nodes [][]string
	for _, n := range rec.Nodes {
		for len(nodes) <= n.Group {
			nodes = append(nodes, nil)
		}
		nodes[n.Group] = append(nodes[n.Group], n.Name)
	}
	uri := rec.URI
	if uri == "" { // nothing was dispatched: say where the data would have been
		uri = s.plans.layout.RunURI(rec.JobID, rec.Run)
	}
	env := rescue.JobEnv{URI: uri, Status: status, Run: rec.Run, Nodes: nodes, Time: rec.EventTime}
	if rec.Outcome == state.OutcomeFailed {
		// Nothing of this run was saved: an earlier rescued run of the job
		// is still the best the next run can start from.
		if prev, err := s.plans.layout.ReadJobEnv(rec.JobID); err == nil && prev.Run < rec.Run && prev.Status != rescue.Failed {
			log.Info("nothing saved of this run; the next run resumes from an earlier rescue", zap.Int("from_run", prev.Run))
			env = *prev
		}
	}
	err := s.act.do(log, "write the job's env file", func() error { return s.plans.layout.WriteJobEnv(rec.JobID, env) })
	if err != nil {
		return fmt.Errorf("env file of job %s: %w", rec.JobID, err)
	}
	comment := fmt.Sprintf("spotrescue run=%d status=%s uri=%s", env.Run, env.Status, env.URI)
	err = s.act.do(log, "set the AdminComment", func() error { return s.slurm.SetAdminComment(ctx, rec.JobID, comment) })
	if err != nil {
		s.metrics.slurmError("scontrol update admincomment")
		return fmt.Errorf("admin comment of job %s: %w", rec.JobID, err)
	}
	return nil
}

// release lets the requeued job run again, unless its user had held it.
func (s *steps) release(ctx context.Context, rec *state.Record) error {
	if err := s.releaseHold(ctx, logFor(s.log, rec), rec); err != nil {
		return err
	}
	if note := keptNote(rec); !strings.HasSuffix(rec.Requeue, note) {
		rec.Requeue += note
	}
	return s.records.advance(ctx, rec, state.Done)
}

// Requeueable says whether a rescued job is requeued, and why not: the one
// rule that requeue and `spotrescue inspect` share. A job that ends is not
// (see requeue); a job submitted with --no-requeue is rescued and released,
// not requeued.
func Requeueable(j *slurm.Job) (bool, string) {
	switch {
	case j.Finished():
		return false, fmt.Sprintf("the job ended (%s)", j.State)
	case !j.Requeue:
		return false, "the job was submitted with --no-requeue"
	}
	return true, ""
}

// keptHold says whose hold the job has that is not ours, or "".
func keptHold(j *slurm.Job) string {
	switch {
	case j.HeldByAdmin():
		return "an administrator held the job before the interruption"
	case j.HeldBySlurm():
		return fmt.Sprintf("Slurm held the job (%s)", j.Reason)
	}
	return ""
}

// keptNote is what the record's requeue says of a hold left in place.
func keptNote(rec *state.Record) string {
	if rec.KeptHold == "" {
		return ""
	}
	return "; left held: " + rec.KeptHold
}
