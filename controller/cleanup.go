package controller

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue"
)

// The spool directory keeps one plan per dispatched agent and one env file
// per rescued job. Neither is needed for ever: a plan once its agent has
// run, an env file once its job is gone from Slurm. Left alone they pile
// up on the cluster's shared file system; the cleaner removes those older
// than controller.spool_retention, once at start and then every
// cleanEvery.

// cleaner removes the spool's old files.
type cleaner struct {
	layout    rescue.Layout
	retention time.Duration // controller.spool_retention; 0 keeps everything
	dryRun    bool
	slurm     Slurm
	log       *zap.Logger
	metrics   *Metrics
}

// cleanEvery is how often the spool is cleaned.
const cleanEvery = time.Hour

// cleanLoop cleans the spool now and every cleanEvery until ctx ends.
func (cl *cleaner) loop(ctx context.Context) {
	cl.clean(ctx)
	every(ctx, cleanEvery, cl.clean)
}

// every calls f every period (the first time after one) until ctx ends.
func every(ctx context.Context, period time.Duration, f func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// clean removes old plans, and old env files of jobs Slurm no longer
// knows or that have ended: a job that may still run again keeps its file
// however old it is.
func (cl *cleaner) clean(ctx context.Context) {
	if cl.retention <= 0 || cl.dryRun {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	log := cl.log.With(zap.String("spool", cl.layout.Spool))
	plans, err := cl.layout.RemovePlans(cl.retention)
	if err != nil {
		log.Warn("cannot clean the spool's plans", zap.Error(err))
	}
	cl.metrics.spoolRemoved.WithLabelValues("plan").Add(float64(plans))
	old, err := cl.layout.OldEnvFiles(cl.retention)
	if err != nil || len(old) == 0 {
		if err != nil {
			log.Warn("cannot clean the spool's env files", zap.Error(err))
		}
		return
	}
	jobs, err := cl.slurm.Jobs(ctx)
	if err != nil {
		log.Warn("env files not cleaned: cannot list Slurm jobs", zap.Error(err))
		return
	}
	live := map[string]bool{}
	for _, j := range jobs {
		if !j.Finished() {
			live[j.ID] = true
		}
	}
	envs := 0
	for _, id := range old {
		if live[id] {
			continue
		}
		if err := cl.layout.RemoveJobEnv(id); err != nil {
			log.Warn("cannot remove an env file", zap.String("job", id), zap.Error(err))
			continue
		}
		envs++
	}
	cl.metrics.spoolRemoved.WithLabelValues("env").Add(float64(envs))
	if plans+envs > 0 {
		log.Info("spool cleaned", zap.Int("plans", plans), zap.Int("env_files", envs), zap.Duration("older_than", cl.retention))
	}
}
