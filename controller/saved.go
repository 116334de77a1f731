package controller

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// A rescue saves compute only if a later run starts from its data. The
// node that restores the data leaves word of it in S3 (rescue.Resumed);
// savings watches the finished rescues whose jobs were requeued and, once
// Slurm shows a later run started, looks for that word. Then the record
// gets the compute its data stood for: the interrupted run's time from its
// start to the upload's start, times its CPUs (and GPUs), all from Slurm
// and the record, never from what a compute node wrote.
const (
	savedEvery  = 15 * time.Second   // how often the watched rescues are looked at
	savedWithin = 7 * 24 * time.Hour // a rescue no run resumed from within this long is closed uncounted
	savedGone   = 30 * time.Minute   // and one whose job left Slurm this long ago without word
	savedSeed   = savedWithin + 24*time.Hour
)

// savings counts the compute saved by rescues (see above). It is the
// leader's: watch is called as records finish, loop runs while leading.
type savings struct {
	records   *records // and its store, fenced while leading
	slurm     Slurm
	manifests Manifests
	layout    rescue.Layout
	cluster   string
	log       *zap.Logger
	metrics   *Metrics
	now       func() time.Time

	mu       sync.Mutex
	watching map[state.Key]*state.Record
}

// watch starts watching rec if a later run could start from its data.
func (sv *savings) watch(rec *state.Record) {
	if !rec.AwaitsResume() {
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.watching == nil {
		sv.watching = map[state.Key]*state.Record{}
	}
	sv.watching[rec.Key] = rec.Clone()
}

// loop reads the rescues a previous leader left watching, then looks at
// the watched ones every savedEvery until ctx ends.
func (sv *savings) loop(ctx context.Context) {
	sv.seed(ctx)
	every(ctx, savedEvery, sv.pass)
}

// seed watches the rescues a previous leader left awaiting a resume.
func (sv *savings) seed(ctx context.Context) {
	recs, err := sv.records.store.AwaitingResume(ctx, sv.cluster, sv.now().Add(-savedSeed))
	if err != nil {
		sv.log.Warn("cannot list the rescues awaiting a resume; watching only new ones", zap.Error(err))
	}
	for _, r := range recs {
		sv.watch(r)
	}
}

// pass accounts every watched rescue whose job has started again.
func (sv *savings) pass(ctx context.Context) {
	sv.mu.Lock()
	recs := make([]*state.Record, 0, len(sv.watching))
	for _, r := range sv.watching {
		recs = append(recs, r)
	}
	sv.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	jobs, err := sv.slurm.Jobs(ctx)
	if err != nil {
		sv.log.Warn("cannot list jobs to see which rescued runs resumed; trying again", zap.Error(err))
		return
	}
	byID := make(map[string]*slurm.Job, len(jobs))
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	for _, rec := range recs {
		saved, err := sv.account(ctx, rec, byID[rec.JobID])
		if err != nil {
			logFor(sv.log, rec).Warn("cannot account the compute the rescue saved; trying again", zap.Error(err))
			continue
		}
		if saved == nil {
			continue
		}
		if err := sv.record(ctx, rec, saved); err != nil {
			logFor(sv.log, rec).Warn("cannot record the compute the rescue saved; trying again", zap.Error(err))
			continue
		}
		sv.mu.Lock()
		delete(sv.watching, rec.Key)
		sv.mu.Unlock()
	}
}

// account returns what rec saved once it is known, nil while it is not.
// job is nil when slurmctld no longer lists the job.
func (sv *savings) account(ctx context.Context, rec *state.Record, job *slurm.Job) (*state.Saved, error) {
	age := sv.now().Sub(rec.Times.Done)
	if job != nil && !startedAfter(job, rec) {
		if age > savedWithin {
			return &state.Saved{NotCounted: "no later run started within " + savedWithin.String()}, nil
		}
		return nil, nil
	}
	word, err := sv.resumed(ctx, rec)
	switch {
	case err != nil:
		return nil, err
	case word == nil && (job == nil && age > savedGone || age > savedWithin):
		return &state.Saved{NotCounted: "no later run reported starting from the rescued data"}, nil
	case word == nil:
		return nil, nil // the restore is under way, or the job left Slurm just now
	}
	return compute(rec, word), nil
}

// startedAfter reports whether a later run of job than rec's has started.
func startedAfter(job *slurm.Job, rec *state.Record) bool {
	return job.Restarts > rec.Run && job.State != "PENDING" && !job.StartTime.Before(rec.Times.Requeued.Truncate(time.Second))
}

// resumed returns the first later run's word of starting from rec's data
// on any of its nodes.
func (sv *savings) resumed(ctx context.Context, rec *state.Record) (*rescue.Resumed, error) {
	var first *rescue.Resumed
	for _, n := range rec.Nodes {
		if n.Files == 0 && n.Bytes == 0 {
			continue // nothing saved there: nothing to restore
		}
		w, err := sv.manifests.Resumed(ctx, sv.layout.NodePrefix(rec.JobID, rec.Run, n.Name), rec.JobID, rec.Run)
		if err != nil {
			sv.metrics.awsError("s3", "ListObjectsV2")
			return nil, err
		}
		if w != nil && (first == nil || w.Run < first.Run) {
			first = w
		}
	}
	return first, nil
}

// compute is the compute rec's data stood for, as of word's resume.
func compute(rec *state.Record, word *rescue.Resumed) *state.Saved {
	s := &state.Saved{Run: word.Run, Node: word.Node, Resumed: word.Time.UTC()}
	held := rec.Times.Dispatched.Sub(rec.Started)
	switch {
	case rec.Started.IsZero() || rec.Times.Dispatched.IsZero() || held < 0:
		s.NotCounted = "Slurm did not report when the interrupted run started"
	case rec.CPUs <= 0:
		s.NotCounted = "Slurm did not report the interrupted run's CPUs"
	default:
		s.Seconds = int64(held.Seconds())
		s.CPUSeconds = s.Seconds * int64(rec.CPUs)
		s.GPUSeconds = s.Seconds * int64(rec.GPUs)
	}
	return s
}

// record writes saved on rec's record and counts it, once.
func (sv *savings) record(ctx context.Context, rec *state.Record, saved *state.Saved) error {
	wrote := false
	err := sv.records.update(ctx, rec.Key, func(r *state.Record) bool {
		if r.Saved != nil {
			return false // another leader counted it
		}
		r.Saved, wrote = saved, true
		return true
	})
	if err != nil || !wrote {
		return err
	}
	sv.metrics.savedCPU.Add(float64(saved.CPUSeconds))
	sv.metrics.savedGPU.Add(float64(saved.GPUSeconds))
	log := logFor(sv.log, rec)
	if saved.NotCounted != "" {
		log.Info("rescue closed without compute counted", zap.String("reason", saved.NotCounted))
		return nil
	}
	log.Info("a later run resumed from the rescued data", zap.Int("resumed_run", saved.Run), zap.String("resumed_on", saved.Node),
		zap.Int64("run_seconds", saved.Seconds), zap.Int64("cpu_seconds", saved.CPUSeconds), zap.Int64("gpu_seconds", saved.GPUSeconds))
	return nil
}
