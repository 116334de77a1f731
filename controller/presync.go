package controller

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// Pre-syncs copy jobs' scratch to S3 before any warning, without a
// deadline, so that a final rescue moves only what changed since: on a
// Rebalance Recommendation, when the node is at elevated risk, and, with
// rescue.presync_every, for every node on a timer. They are best effort and
// record nothing in DynamoDB: the jobs are not interrupted (yet).

// presync pre-syncs the jobs of one node after a Rebalance Recommendation.
func (c *Controller) presync(ctx context.Context, log *zap.Logger, instance, node string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	jobs, err := c.Slurm.Jobs(ctx)
	if err != nil {
		log.Warn("no pre-sync: cannot list Slurm jobs", zap.Error(err))
		return
	}
	c.startPresyncs(ctx, log, c.presyncRequests(log, jobs, instance, node))
}

// presyncLoop pre-syncs every node every PresyncEvery until ctx ends.
func (c *Controller) presyncLoop(ctx context.Context) {
	t := time.NewTicker(c.Policy.PresyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.presyncAll(ctx)
		}
	}
}

// presyncAll pre-syncs the running jobs of every node of the cluster: one
// Slurm listing, and SendCommands of up to 50 instances. A node whose last
// pre-sync still runs, or whose jobs are being rescued, is left alone.
func (c *Controller) presyncAll(ctx context.Context) {
	// Every call below is bounded: a pass must end before the next tick.
	ctx, cancel := context.WithTimeout(ctx, min(c.Policy.PresyncEvery/2, 2*time.Minute))
	defer cancel()
	log := c.Log.With(zap.String("presync", "timer"))
	jobs, err := c.Slurm.Jobs(ctx)
	if err != nil {
		log.Warn("no pre-sync: cannot list Slurm jobs", zap.Error(err))
		return
	}
	// A held job is being rescued (our hold) or was held by its user:
	// either way not a job to copy now.
	jobs = slices.DeleteFunc(jobs, func(j slurm.Job) bool { return j.Held() })
	rescuing := c.rescuingInstances()
	var reqs []rescue.Request
	for _, node := range nodesOf(jobs) {
		instance, err := c.Nodes.InstanceOf(ctx, node)
		if err != nil {
			continue // not a node of this cluster's node table (static, or foreign)
		}
		if rescuing[instance] || c.presyncRunning(ctx, instance) {
			continue
		}
		reqs = append(reqs, c.presyncRequests(log, jobs, instance, node)...)
	}
	c.startPresyncs(ctx, log, reqs)
}

// presyncRequests is one request per job of node that would be rescued.
func (c *Controller) presyncRequests(log *zap.Logger, jobs []slurm.Job, instance, node string) []rescue.Request {
	units, _ := Decide(c.Policy, jobs, node)
	var reqs []rescue.Request
	far := c.Now().Add(time.Hour)
	for _, u := range units {
		dir, err := rescue.ScratchDir(c.ScratchTemplate, rescue.NewScratchVars(u.Job.ID, u.Job.User, u.Job.ArrayJobID, u.Job.ArrayTaskID, node))
		if err != nil {
			log.Warn("no pre-sync for a job", zap.String("job", u.Job.ID), zap.String("node", node), zap.Error(err))
			continue
		}
		reqs = append(reqs, rescue.Request{Instance: instance, Node: node, Presync: true, Deadline: far, Reclaim: far,
			Job: rescue.PlanJob{JobID: u.Job.ID, Run: u.Job.Restarts, Dir: dir, Prefix: c.Layout.NodePrefix(u.Job.ID, u.Job.Restarts, node), UID: &u.Job.UID}})
	}
	return reqs
}

// startPresyncs sends the agents and notes their commands, so that a final
// rescue can cancel them first.
func (c *Controller) startPresyncs(ctx context.Context, log *zap.Logger, reqs []rescue.Request) {
	if len(reqs) == 0 {
		return
	}
	cmds, err := c.Dispatcher.Dispatch(ctx, reqs)
	if err != nil {
		c.Metrics.awsError("ssm", "SendCommand")
		log.Warn("pre-sync not started on every node", zap.Error(err))
	}
	c.mu.Lock()
	for instance, cmd := range cmds {
		c.presyncs[instance] = cmd
	}
	c.mu.Unlock()
	for instance, cmd := range cmds {
		log.Info("pre-sync started", zap.String("instance", instance), zap.String("command", cmd))
	}
}

// presyncRunning reports whether the last pre-sync sent to instance may
// still run. SSM's status event usually said already (presyncEnded); SSM
// is asked only about a pre-sync no event has ended, and one that cannot be
// asked about counts as running.
func (c *Controller) presyncRunning(ctx context.Context, instance string) bool {
	c.mu.Lock()
	cmd, ok := c.presyncs[instance]
	c.mu.Unlock()
	if !ok {
		return false
	}
	st, err := c.Dispatcher.Status(ctx, cmd, instance)
	if err != nil || !event.TerminalStatus(st) {
		return true
	}
	c.presyncEnded(cmd, instance)
	return false
}

// presyncEnded forgets a pre-sync once its command has finished on instance.
func (c *Controller) presyncEnded(command, instance string) {
	c.mu.Lock()
	if c.presyncs[instance] == command {
		delete(c.presyncs, instance)
	}
	c.mu.Unlock()
}

// finalRescueOf reports whether instance was warned: its final rescue is
// under way (or done), and a pre-sync now would upload beside it.
func (c *Controller) finalRescueOf(ctx context.Context, instance string) bool {
	if c.rescuingInstances()[instance] {
		return true
	}
	_, err := c.Store.GetInterruption(ctx, instance)
	return !errors.Is(err, state.ErrNotFound) // unsure counts as under way
}

// rescuingInstances are the instances of the records being rescued.
func (c *Controller) rescuingInstances() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, r := range c.cache {
		for _, n := range r.Nodes {
			out[n.Instance] = true
		}
	}
	return out
}

// stopPresync cancels a pre-sync still running on instance before its
// final rescue starts, so the two never upload to one prefix at once.
func (c *Controller) stopPresync(ctx context.Context, instance string) {
	c.mu.Lock()
	cmd, ok := c.presyncs[instance]
	delete(c.presyncs, instance)
	c.mu.Unlock()
	if !ok {
		return
	}
	if err := c.Dispatcher.Cancel(ctx, cmd, instance); err != nil {
		c.Log.Warn("cannot cancel the pre-sync; the final rescue supersedes it", zap.String("instance", instance), zap.Error(err))
	}
}

// nodesOf lists, once each and sorted, the nodes of the active jobs.
func nodesOf(jobs []slurm.Job) []string {
	var nodes []string
	for i := range jobs {
		if jobs[i].Active() {
			nodes = append(nodes, jobs[i].Nodes...)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes)
}
