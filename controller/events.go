package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// Reclaim is how long after its warning EC2 takes a Spot instance back.
const Reclaim = 120 * time.Second

// handleEvent acts on one parsed event. A nil error means the message can
// be deleted: what it said is in DynamoDB or changed nothing.
func (c *Controller) handleEvent(ctx context.Context, e event.Event, jobs []slurm.Job, received time.Time) error {
	if e.Region != c.Region {
		c.Metrics.ignored("other_region")
		c.Log.Warn("ignoring an event from another region", eventFields(e, zap.String("region", e.Region))...)
		return nil
	}
	switch e.Kind {
	case event.SpotInterruption:
		return c.onWarning(ctx, e, jobs, received)
	case event.Rebalance:
		return c.onRebalance(ctx, e)
	case event.StateChange:
		return c.onStateChange(ctx, e)
	case event.CommandStatus:
		c.onCommandStatus(e)
	}
	return nil
}

// onWarning turns a Spot interruption warning into one Detected record per
// job on the instance's node.
func (c *Controller) onWarning(ctx context.Context, e event.Event, jobs []slurm.Job, received time.Time) error {
	log := c.Log.With(eventFields(e)...)
	if in, err := c.Store.GetInterruption(ctx, e.Instance); err == nil {
		c.Metrics.ignored("duplicate")
		log.Info("instance already being rescued; duplicate warning ignored", zap.String("first_event", in.Event))
		c.enqueue(in.Jobs...)
		return nil
	} else if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if c.Now().After(e.Time.Add(Reclaim)) {
		c.Metrics.ignored("expired")
		log.Warn("warning arrived after the instance was reclaimed; nothing left to rescue", zap.Time("event_time", e.Time))
		return nil
	}
	node, err := c.Nodes.NodeOf(ctx, e.Instance)
	if errors.Is(err, errNotOurs) {
		c.Metrics.ignored("foreign_instance")
		log.Info("instance is not a node of this cluster; ignored")
		return nil
	}
	if err != nil {
		return err
	}
	log = log.With(zap.String("node", node))
	var keys []state.Key
	drainNow := true
	units, skipped := Decide(c.Policy, jobs, node)
	for _, s := range skipped {
		log.Info("job on the node is not rescued", zap.String("job", s.Job.Display), zap.String("reason", s.Reason))
	}
	for _, u := range units {
		k, created, err := c.detect(ctx, e, node, u, received)
		if err != nil {
			return fmt.Errorf("record job %s: %w", u.Job.ID, err)
		}
		keys = append(keys, k)
		// A new record is held, then drained, by reconcile; a node added to
		// a record past that step must be drained here.
		drainNow = drainNow && !created
	}
	if drainNow {
		if err := c.drain(ctx, log, []string{node}, "spot interruption "+e.Instance); err != nil {
			return err
		}
	}
	if err := c.Store.PutInterruption(ctx, &state.Interruption{Instance: e.Instance, Node: node, Event: e.ID, Time: e.Time, Jobs: keys}); err != nil {
		return err
	}
	log.Info("spot interruption warning", zap.Int("jobs", len(keys)), zap.Time("reclaim", e.Time.Add(Reclaim)), zap.Bool("drill", e.Drill))
	c.enqueue(keys...)
	return nil
}

// Unit is what one record rescues: a job, or every component of a
// heterogeneous job under its leader, whose id Slurm's hold, requeue and
// release act on for the whole job and which the job's tasks see as
// SLURM_JOB_ID.
type Unit struct {
	Job   *slurm.Job // the job, or the leader component
	Nodes []state.Node
}

// Skip is a job on the node that is not rescued, and why.
type Skip struct {
	Job    *slurm.Job
	Reason string
}

// Decide splits the jobs allocated node into what a warning for node
// rescues and what it leaves alone. `spotrescue inspect` shows the same.
func Decide(p Policy, jobs []slurm.Job, node string) (units []Unit, skipped []Skip) {
	components := map[string][]*slurm.Job{}
	for i := range jobs {
		if j := &jobs[i]; j.HetJobID != "" {
			components[j.HetJobID] = append(components[j.HetJobID], j)
		}
	}
	seen := map[string]bool{}
	for i := range jobs {
		j := &jobs[i]
		if !j.OnNode(node) || !j.Active() {
			continue // ended or not started: nothing of it is on the node
		}
		if why := p.skipReason(j); why != "" {
			skipped = append(skipped, Skip{Job: j, Reason: why})
			continue
		}
		parts := []*slurm.Job{j}
		if j.HetJobID != "" {
			if seen[j.HetJobID] {
				continue
			}
			seen[j.HetJobID] = true
			parts = components[j.HetJobID]
			slices.SortFunc(parts, func(a, b *slurm.Job) int { return a.HetJobOffset - b.HetJobOffset })
			if parts[0].ID != j.HetJobID {
				skipped = append(skipped, Skip{Job: j, Reason: "heterogeneous job whose leader Slurm did not list"})
				continue
			}
		}
		u := Unit{Job: parts[0]}
		for _, part := range parts {
			for _, n := range part.Nodes {
				u.Nodes = append(u.Nodes, state.Node{Name: n, Group: part.HetJobOffset})
			}
		}
		units = append(units, u)
	}
	return units, skipped
}

// detect creates the Detected record of one job run, or marks the node as
// interrupted on the record another warning already created; created
// says which.
func (c *Controller) detect(ctx context.Context, e event.Event, node string, u Unit, received time.Time) (k state.Key, created bool, err error) {
	j := u.Job
	k = state.Key{Cluster: c.Cluster, JobID: j.ID, Run: j.Restarts}
	rec := &state.Record{
		Key: k, Phase: state.Detected,
		User: j.User, UID: j.UID, Name: j.Name, Display: j.Display, ArrayJobID: j.ArrayJobID, ArrayTaskID: j.ArrayTaskID,
		Event: e.ID, EventTime: e.Time, Deadline: e.Time.Add(Reclaim - c.Margin), Drill: e.Drill,
		UserHeld: j.HeldByUser(),
		Times:    state.Times{Detected: received},
	}
	for _, n := range u.Nodes {
		n.Instance, n.Interrupted = e.Instance, n.Name == node
		if !n.Interrupted {
			if n.Instance, err = c.Nodes.InstanceOf(ctx, n.Name); err != nil {
				c.Log.Warn("no instance for a node of the job; its data cannot be rescued", zap.String("job", j.ID), zap.String("node", n.Name), zap.Error(err))
				continue
			}
		}
		rec.Nodes = append(rec.Nodes, n)
	}
	err = c.Store.Create(ctx, rec)
	if errors.Is(err, state.ErrExists) {
		return k, false, c.update(ctx, k, func(r *state.Record) bool { return markNode(r, node, func(n *state.Node) { n.Interrupted = true }) })
	}
	return k, err == nil, err
}

// markNode applies f to the record's node named node; false if it has none
// or f changed nothing.
func markNode(r *state.Record, node string, f func(*state.Node)) bool {
	for i := range r.Nodes {
		if r.Nodes[i].Name == node {
			before := r.Nodes[i]
			f(&r.Nodes[i])
			return r.Nodes[i] != before
		}
	}
	return false
}

// update re-reads and rewrites a record until the write does not conflict.
func (c *Controller) update(ctx context.Context, k state.Key, change func(*state.Record) bool) error {
	for attempt := 0; attempt < 5; attempt++ {
		r, err := c.Store.Get(ctx, k)
		if err != nil {
			return err
		}
		if !change(r) {
			return nil
		}
		if err = c.Store.Update(ctx, r); !errors.Is(err, state.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("update %s: %w after 5 attempts", k, state.ErrConflict)
}

// onRebalance drains the node: it is likely to be interrupted, so it should
// take no new jobs; running jobs are left alone until a warning arrives.
func (c *Controller) onRebalance(ctx context.Context, e event.Event) error {
	node, err := c.Nodes.NodeOf(ctx, e.Instance)
	if errors.Is(err, errNotOurs) {
		c.Metrics.ignored("foreign_instance")
		return nil
	}
	if err != nil {
		return err
	}
	log := c.Log.With(eventFields(e, zap.String("node", node))...)
	log.Info("rebalance recommendation: draining the node")
	return c.drain(ctx, log, []string{node}, "spot rebalance recommendation")
}

// onStateChange notes on the records of an interrupted instance that it is
// going away: their upload is over, whatever SSM says.
func (c *Controller) onStateChange(ctx context.Context, e event.Event) error {
	if !e.Gone() {
		c.Metrics.ignored("instance_state")
		return nil
	}
	in, err := c.Store.GetInterruption(ctx, e.Instance)
	if errors.Is(err, state.ErrNotFound) {
		c.Metrics.ignored("no_rescue_in_flight")
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range in.Jobs {
		err := c.update(ctx, k, func(r *state.Record) bool {
			return !r.Phase.Terminal() && markNode(r, in.Node, func(n *state.Node) { n.Gone = true })
		})
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return err
		}
	}
	c.Log.Info("interrupted instance is going away", eventFields(e, zap.String("node", in.Node), zap.String("state", e.State))...)
	c.enqueue(in.Jobs...)
	return nil
}

// onCommandStatus wakes the records waiting on an agent's command. The event
// only says when to look: the outcome reconcile records comes from the
// manifests in S3.
func (c *Controller) onCommandStatus(e event.Event) {
	if e.Document != c.Document {
		c.Metrics.ignored("other_document")
		return
	}
	for _, key := range c.observe(e.Command, e.Instance, e.Status) {
		c.queue.Add(key)
	}
}
