package controller

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue/naming"
	"github.com/spotrescue/spotrescue/state"
)

// A Spot pool that reclaims one node often reclaims its neighbours minutes
// later, and a requeued job that lands there again is interrupted again.
// ParallelCluster names a node after its queue and compute resource (one
// instance type and purchase option): <queue>-st-<cr>-<n> for static
// nodes, <queue>-dy-<cr>-<n> for dynamic ones. So after a Spot
// interruption the requeued job is kept off the interrupted compute
// resource's nodes for Policy.AvoidFor, when other nodes of its partitions
// can run it.
//
// The job's excluded nodes (ExcNodeList) do it. Of Slurm's means it is the
// one that is per job and exact: node weights are cluster-wide and only an
// order, so a job would still land on the reclaimed resource when it is
// the idle one and every other job would be steered too; a feature
// constraint would have to be merged into the user's own expression, and
// "!feature" is not in every Slurm version. Slurm lets the list change
// while the job is pending, which it is right after the requeue; the
// user's own exclusions are kept in it and given back at the lift.
var pcNode = regexp.MustCompile(`^([a-z][a-z0-9-]*)-(?:st|dy)-([a-z][a-z0-9-]*)-[0-9]+$`)

// computeResource returns "<queue>/<compute resource>" of a ParallelCluster
// node name, or "" for another name.
func computeResource(node string) string {
	m := pcNode.FindStringSubmatch(node)
	if m == nil {
		return ""
	}
	return m[1] + "/" + m[2]
}

// steer excludes the interrupted compute resources' nodes from the
// requeued job (Slurm's ExcNodeList) until AvoidFor from now, when enough
// other nodes of its partitions are in service to run it, and schedules
// the lift. What it did, or why not, goes on the record; a job moved to the
// fallback partition is not steered (its new partition is the steering).
func (s *steps) steer(ctx context.Context, log *zap.Logger, rec *state.Record) error {
	avoid := s.opts.Policy.AvoidFor
	if avoid <= 0 || rec.Fallback != "" || rec.Steer != nil {
		return nil // off, moved to the fallback partition, or decided already
	}
	crs := map[string]bool{}
	for _, n := range interrupted(rec) {
		if cr := computeResource(n); cr != "" {
			crs[cr] = true
		}
	}
	if len(crs) == 0 {
		return nil
	}
	// Read after the requeue: the job is pending again (PENDING, with
	// COMPLETING while the old run's processes end), which is when Slurm
	// takes a change of its excluded nodes.
	job, err := s.slurm.Job(ctx, rec.JobID)
	if err != nil {
		s.metrics.slurmError("scontrol show job")
		return fmt.Errorf("read job %s to steer it: %w", rec.JobID, err)
	}
	plan, err := s.steering(ctx, job, crs)
	if err != nil {
		return err
	}
	if plan.Skipped != "" {
		rec.Steer = plan
		s.metrics.steers.WithLabelValues("skipped").Inc()
		log.Info("requeued job not steered", zap.String("reason", plan.Skipped))
		return nil
	}
	plan.Until = s.now().Add(avoid).UTC()
	err = s.act.do(log, "exclude nodes "+plan.Avoided+" from the job", func() error { return s.slurm.SetExcludedNodes(ctx, rec.JobID, plan.Set) })
	if errors.Is(err, slurm.ErrNotPending) {
		rec.Steer = &state.Steer{Skipped: "the job had started again before its excluded nodes could be set"}
		s.metrics.steers.WithLabelValues("skipped").Inc()
		return nil
	}
	if err != nil {
		s.metrics.slurmError("scontrol update excnodelist")
		return fmt.Errorf("steer job %s: %w", rec.JobID, err)
	}
	if !s.opts.DryRun {
		lift := state.Schedule{Due: plan.Until, Lift: &state.Lift{Key: rec.Key, Set: plan.Set, Kept: plan.Kept}}
		if err := s.records.store.PutSchedule(ctx, rec.Cluster, lift); err != nil {
			return fmt.Errorf("schedule the lift of job %s's exclusion: %w", rec.JobID, err)
		}
		wakeSchedules(s.scheduled)
	}
	rec.Steer = plan
	s.metrics.steers.WithLabelValues("steered").Inc()
	log.Info("requeued job kept off the reclaimed compute resource", zap.String("avoided", plan.Avoided), zap.Time("until", plan.Until))
	return nil
}

// steering works out the exclusion for job: the nodes of the compute
// resources crs in its partitions, or why there is none to make.
func (s *steps) steering(ctx context.Context, job *slurm.Job, crs map[string]bool) (*state.Steer, error) {
	if job.HetJobID != "" {
		return &state.Steer{Skipped: "a heterogeneous job's components are placed together; not steered"}, nil
	}
	excluded, err := naming.ExpandHostlist(job.ExcNodes)
	if err != nil {
		return nil, fmt.Errorf("job %s's excluded nodes: %w", job.ID, err)
	}
	required, err := naming.ExpandHostlist(job.ReqNodes)
	if err != nil {
		return nil, fmt.Errorf("job %s's required nodes: %w", job.ID, err)
	}
	nodes, err := s.slurm.Nodes(ctx)
	if err != nil {
		s.metrics.slurmError("scontrol show node")
		return nil, fmt.Errorf("list nodes to steer job %s: %w", job.ID, err)
	}
	partitions := strings.Split(job.Partition, ",")
	var avoided []string
	others := 0
	for _, n := range nodes {
		if !slices.ContainsFunc(n.Partitions, func(p string) bool { return slices.Contains(partitions, p) }) {
			continue
		}
		switch {
		case crs[computeResource(n.Name)]:
			if slices.Contains(required, n.Name) {
				return &state.Steer{Skipped: "the job asks for node " + n.Name + " of the reclaimed compute resource"}, nil
			}
			avoided = append(avoided, n.Name)
		case inService(&n) && !slices.Contains(excluded, n.Name):
			others++
		}
	}
	// What the job excluded besides these nodes is its user's (a retried
	// step finds its own exclusion already set), given back at the lift.
	var kept []string
	for _, n := range excluded {
		if !slices.Contains(avoided, n) {
			kept = append(kept, n)
		}
	}
	if need := max(job.NodeCount, 1); others < need {
		return &state.Steer{Skipped: fmt.Sprintf("no other compute resource of partition %s has the %d node(s) in service the job needs", job.Partition, need)}, nil
	}
	return &state.Steer{
		Avoided: naming.CompressHostlist(avoided),
		Set:     naming.CompressHostlist(append(append([]string(nil), kept...), avoided...)),
		Kept:    naming.CompressHostlist(kept),
	}, nil
}

// inService reports whether Slurm may start a job on n: not down, drained
// or failing. A powered-down cloud node is in service; it boots on demand.
func inService(n *slurm.Node) bool {
	return n.State != "DOWN" && n.State != "ERROR" && n.State != "FUTURE" && !n.Drained() &&
		!slices.ContainsFunc(n.Flags, func(f string) bool { return f == "NOT_RESPONDING" || f == "FAIL" || f == "POWERING_DOWN" })
}

// lift gives a steered job back its user's own exclusions once the steering
// time is over. Slurm takes the change only while the job is pending: a
// job that has started keeps the exclusion for the rest of that run (it
// matters again only if the job is requeued, and then this job's next
// rescue sets it anew). An exclusion someone changed meanwhile is left as
// it is. The outcome goes on the steered run's record.
func (s *steps) lift(ctx context.Context, l *state.Lift) error {
	log := s.log.With(zap.String("job", l.JobID), zap.Int("run", l.Run))
	job, err := s.slurm.Job(ctx, l.JobID)
	var outcome string
	switch {
	case errors.Is(err, slurm.ErrNoJob) || err == nil && job.Finished():
		outcome = "not needed: the job ended"
	case err != nil:
		s.metrics.slurmError("scontrol show job")
		return err
	case !sameHosts(job.ExcNodes, l.Set):
		outcome = "left alone: the job's excluded nodes were changed meanwhile to " + quoteOrNone(job.ExcNodes)
	case job.State != "PENDING":
		outcome = fmt.Sprintf("not needed: the job had started (%s on %s)", job.State, strings.Join(job.Nodes, ","))
	default:
		err := s.act.do(log, "give the job back its excluded nodes "+quoteOrNone(l.Kept), func() error { return s.slurm.SetExcludedNodes(ctx, l.JobID, l.Kept) })
		switch {
		case errors.Is(err, slurm.ErrNotPending):
			outcome = "not needed: the job had started"
		case err != nil:
			s.metrics.slurmError("scontrol update excnodelist")
			return fmt.Errorf("lift the exclusion of job %s: %w", l.JobID, err)
		default:
			outcome = "lifted"
			s.metrics.steers.WithLabelValues("lifted").Inc()
		}
	}
	log.Info("steering over", zap.String("outcome", outcome))
	outcome = s.now().UTC().Format("2006-01-02T15:04:05Z") + " " + outcome
	return s.records.update(ctx, l.Key, func(r *state.Record) bool {
		if r.Steer == nil || r.Steer.Lifted != "" {
			return false
		}
		r.Steer.Lifted = outcome
		return true
	})
}

// sameHosts compares two hostlists by the names they hold: slurmctld may
// print back a list in another form than it was given.
func sameHosts(a, b string) bool {
	x, err1 := naming.ExpandHostlist(a)
	y, err2 := naming.ExpandHostlist(b)
	return err1 == nil && err2 == nil && slices.Equal(slices.Sorted(slices.Values(x)), slices.Sorted(slices.Values(y)))
}

func quoteOrNone(hosts string) string {
	if hosts == "" {
		return "(none)"
	}
	return hosts
}
