package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spotrescue/spotrescue/rescue"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// Reclaim is how long after its warning EC2 takes a Spot instance back.
const Reclaim = 120 * time.Second

// handleEvent acts on one parsed event other than a warning (those are
// handled a batch at a time by onWarnings). A nil error means the message
// can be deleted: what it said is in DynamoDB or changed nothing.
func (c *Controller) handleEvent(ctx context.Context, e event.Event) error {
	if e.Region != c.Region {
		c.Metrics.ignored("other_region")
		c.Log.Warn("ignoring an event from another region", eventFields(e, zap.String("region", e.Region))...)
		return nil
	}
	if (e.Kind == event.Rebalance || e.Kind == event.StateChange) && c.expired(e) {
		c.Metrics.ignored("expired")
		c.Log.Warn("event older than a Spot instance's two minutes; nothing it says can still be acted on", eventFields(e, zap.Time("event_time", e.Time))...)
		return nil
	}
	switch e.Kind {
	case event.Rebalance:
		return c.onRebalance(ctx, e)
	case event.StateChange:
		return c.onStateChange(ctx, e)
	case event.CommandStatus:
		c.onCommandStatus(e)
	}
	return nil
}

// expired reports an event older than the two minutes a warned instance
// has: an old or replayed message must not drain nodes or finish rescues.
// The same bound holds for every kind.
func (c *Controller) expired(e event.Event) bool {
	return c.Now().After(e.Time.Add(Reclaim))
}

// warning is one interruption warning on its way through onWarnings.
type warning struct {
	e     event.Event
	log   *zap.Logger
	node  string
	units []Unit
	done  bool // nothing (more) to do: ignored, or failed
	err   error
	recs  []*state.Record
	in    *state.Interruption
	dup   bool // every record was already there, unchanged
}

// onWarnings handles a batch of Spot interruption warnings: it holds the
// jobs on the warned nodes, drains the nodes, dispatches the agents, and
// records one record per job (Dispatched, or Held for reconcile to
// dispatch) and one interruption item per instance. All the warnings of a
// batch share one Slurm listing, one hold, one drain, SendCommands of up to
// 50 instances and one batch write of their interruption items. A redelivered or duplicate warning finds its
// records there and changes nothing. The result has one error per
// warning; nil means its message can be deleted.
func (c *Controller) onWarnings(ctx context.Context, events []event.Event, received time.Time) []error {
	ws := make([]*warning, len(events))
	seen := map[string]bool{}
	for i, e := range events {
		ws[i] = c.resolve(ctx, e)
		// The same instance twice in one batch: the second is a duplicate.
		if w := ws[i]; !w.done && seen[e.Instance] {
			c.Metrics.ignored("duplicate")
			w.log.Info("instance already being rescued; duplicate warning ignored")
			w.done = true
		}
		seen[e.Instance] = true
	}
	jobs, err := c.jobsFor(ctx, ws)
	if err != nil {
		return errs(ws, err) // left for redelivery: we could not see the jobs
	}
	var units []Unit
	var nodes []string
	for _, w := range ws {
		if w.done {
			continue
		}
		var skipped []Skip
		w.units, skipped = Decide(c.Policy, jobs, w.node)
		for _, s := range skipped {
			w.log.Info("job on the node is not rescued", zap.String("job", s.Job.Display), zap.String("reason", s.Reason))
		}
		units = append(units, w.units...)
		nodes = append(nodes, w.node)
	}
	if len(nodes) == 0 {
		return errs(ws, nil)
	}
	// Hold, then drain: the jobs must not restart anywhere before their
	// data is safe, and the nodes must take nothing new. Both are
	// idempotent, so a redelivered message repeats them harmlessly.
	log := c.Log.With(zap.Strings("node", nodes))
	held := c.holdAll(ctx, log, units)
	if err := c.drain(ctx, log, nodes, "spot interruption"); err != nil {
		c.unhold(ctx, log, units, held)
		return errs(ws, err)
	}
	if held {
		c.signal(ctx, log, units)
	}
	for _, w := range ws {
		if !w.done {
			w.recs = c.newRecords(ctx, w, received, held)
		}
	}
	// With nothing to wait for (no checkpoint grace) the agents are sent
	// now, before the records are written: a mass reclaim then costs one
	// write per job to reach Dispatched, not two. Warnings whose records
	// exist already (redelivered, duplicate) go the careful way.
	if held && c.Policy.Signal == "" {
		c.dispatchNew(ctx, ws)
	}
	c.recordWarnings(ctx, ws, held)
	c.finishWarnings(ctx, ws)
	return errs(ws, nil)
}

// dispatchNew sends the agents of the warnings none of whose records
// exist yet, all at once (the dispatcher batches them), and moves those
// records to Dispatched before they are first written.
func (c *Controller) dispatchNew(ctx context.Context, ws []*warning) {
	var keys []state.Key
	for _, w := range ws {
		for _, r := range w.recs {
			keys = append(keys, r.Key)
		}
	}
	if len(keys) == 0 {
		return
	}
	exists, err := c.Store.Exists(ctx, keys)
	if err != nil {
		c.Log.Warn("cannot tell new warnings from redeliveries; dispatching from the records", zap.Error(err))
		return
	}
	// A job on two nodes warned in the same batch has a record in both
	// warnings: the first sends its agents (to all of the job's nodes),
	// the second only marks its node when it is written.
	claimed := map[state.Key]bool{}
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.done || slices.ContainsFunc(w.recs, func(r *state.Record) bool { return exists[r.Key] }) {
			continue
		}
		var recs []*state.Record
		for _, r := range w.recs {
			if !claimed[r.Key] {
				claimed[r.Key] = true
				recs = append(recs, r)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.dispatchWarning(ctx, w, recs)
		}()
	}
	wg.Wait()
}

// dispatchWarning sends the agents of one warning's fresh records in one
// request to the dispatcher, so the jobs of a node share one plan and one
// command. A record whose dispatch fails stays Held and reconcile retries.
func (c *Controller) dispatchWarning(ctx context.Context, w *warning, fresh []*state.Record) {
	now := c.Now()
	var reqs []rescue.Request
	var recs []*state.Record
	for _, r := range fresh {
		if now.After(r.Deadline) {
			continue // too late to start: reconcile records the failure
		}
		rq, err := c.requests(r)
		if err != nil {
			c.logFor(r).Warn("cannot plan the rescue; reconcile will retry", zap.Error(err))
			continue
		}
		reqs, recs = append(reqs, rq...), append(recs, r)
	}
	if len(reqs) == 0 {
		return
	}
	for _, r := range reqs {
		c.stopPresync(ctx, r.Instance)
	}
	cmds, err := c.Dispatcher.Dispatch(ctx, reqs)
	if err != nil {
		c.Metrics.awsError("ssm", "SendCommand")
		w.log.Warn("dispatch failed for some nodes; reconcile will retry them", zap.Error(err))
	}
	for _, r := range recs {
		if c.assign(r, cmds) == 0 {
			continue
		}
		r.URI = c.Layout.RunURI(r.JobID, r.Run)
		r.Phase, r.Times.Dispatched = state.Dispatched, c.Now().UTC()
		c.Metrics.dispatchLatency.Observe(r.Times.Dispatched.Sub(r.Times.Detected).Seconds())
	}
}

// finishWarnings writes the interruption items of the recorded warnings in
// one batch, then queues their records.
func (c *Controller) finishWarnings(ctx context.Context, ws []*warning) {
	var ins []*state.Interruption
	for _, w := range ws {
		if w.done || w.err != nil {
			continue
		}
		if len(w.recs) == 0 {
			// No job on the node (any more): the interruption item is what
			// tells a repeat from a first warning; never overwrite it.
			_, err := c.Store.GetInterruption(ctx, w.e.Instance)
			switch {
			case err == nil:
				w.dup = true
				continue
			case !errors.Is(err, state.ErrNotFound):
				w.err = err
				continue
			}
		}
		ins = append(ins, w.in)
	}
	// If this fails the messages are redelivered: the records exist, so
	// the second try only writes what is missing.
	var err error
	if len(ins) > 0 {
		err = c.Store.PutInterruptions(ctx, ins)
	}
	for _, w := range ws {
		if w.done || w.err != nil {
			continue
		}
		if err != nil && !w.dup {
			w.err = err
			continue
		}
		if w.dup {
			c.Metrics.ignored("duplicate")
			w.log.Info("instance already being rescued; duplicate warning ignored")
		} else {
			w.log.Info("spot interruption warning", zap.Int("jobs", len(w.in.Jobs)), zap.Time("reclaim", w.e.Time.Add(Reclaim)), zap.Bool("drill", w.e.Drill))
		}
		c.enqueue(w.in.Jobs...)
	}
}

// resolve finds the warned instance's node, or marks the warning done
// (with the reason counted) when there is nothing to do.
func (c *Controller) resolve(ctx context.Context, e event.Event) *warning {
	w := &warning{e: e, log: c.Log.With(eventFields(e)...)}
	if c.expired(e) {
		c.Metrics.ignored("expired")
		w.log.Warn("warning arrived after the instance was reclaimed; nothing left to rescue", zap.Time("event_time", e.Time))
		w.done = true
		return w
	}
	node, err := c.Nodes.NodeOf(ctx, e.Instance)
	switch {
	case errors.Is(err, errNotOurs):
		c.Metrics.ignored("foreign_instance")
		w.log.Info("instance is not a node of this cluster; ignored")
		w.done = true
	case err != nil:
		w.err, w.done = err, true
	default:
		w.node, w.log = node, w.log.With(zap.String("node", node))
	}
	return w
}

// jobsFor lists Slurm's jobs once for the batch, if any warning needs them.
func (c *Controller) jobsFor(ctx context.Context, ws []*warning) ([]slurm.Job, error) {
	for _, w := range ws {
		if !w.done {
			jobs, err := c.Slurm.Jobs(ctx)
			if err != nil {
				c.Metrics.slurmError("squeue")
				c.Log.Error("cannot list Slurm jobs", zap.Error(err))
			}
			return jobs, err
		}
	}
	return nil, nil
}

// errs is each warning's error, or err for those still pending.
func errs(ws []*warning, err error) []error {
	out := make([]error, len(ws))
	for i, w := range ws {
		out[i] = w.err
		if !w.done && w.err == nil {
			out[i] = err
		}
	}
	return out
}

// newRecords builds the warning's first records: Held when the hold went
// through, Detected (to be held by reconcile) when it did not.
func (c *Controller) newRecords(ctx context.Context, w *warning, received time.Time, held bool) []*state.Record {
	w.in = &state.Interruption{Instance: w.e.Instance, Node: w.node, Event: w.e.ID, Time: w.e.Time}
	recs := make([]*state.Record, 0, len(w.units))
	for _, u := range w.units {
		r := c.newRecord(ctx, w.e, w.node, u, received, held)
		recs = append(recs, r)
		w.in.Jobs = append(w.in.Jobs, r.Key)
	}
	return recs
}

// recordWarnings writes the batch's new records together (Store.CreateAll),
// each only if it is not there yet. A warning whose records could
// not be written gives its holds back; its message is redelivered.
func (c *Controller) recordWarnings(ctx context.Context, ws []*warning, held bool) {
	var recs []*state.Record
	for _, w := range ws {
		if !w.done {
			recs = append(recs, w.recs...)
		}
	}
	created := c.Store.CreateAll(ctx, recs)
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.done {
			continue
		}
		results := created[:len(w.recs)]
		created = created[len(w.recs):]
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.err = c.recordWarning(ctx, w, results)
			if w.err != nil {
				c.unhold(ctx, w.log, w.units, held)
			}
		}()
	}
	wg.Wait()
}

// recordWarning takes the results of creating the warning's records: a
// record that was already there (a redelivery, a duplicate event, another
// node of a job being rescued) gets the node marked instead.
func (c *Controller) recordWarning(ctx context.Context, w *warning, created []error) error {
	news := 0
	for i, r := range w.recs {
		err := created[i]
		switch {
		case err == nil:
			news++
			c.remember(r)
		case errors.Is(err, state.ErrExists):
			err = c.update(ctx, r.Key, func(cur *state.Record) bool {
				if markNode(cur, w.node, func(n *state.Node) { n.Interrupted = true }) {
					news++
					return true
				}
				return false
			})
		}
		if err != nil {
			return fmt.Errorf("record job %s: %w", r.JobID, err)
		}
	}
	w.dup = len(w.recs) > 0 && news == 0
	return nil
}

// holdAll holds the jobs of units in one Slurm command. If it fails their
// records start as Detected and reconcile retries the hold.
func (c *Controller) holdAll(ctx context.Context, log *zap.Logger, units []Unit) bool {
	if len(units) == 0 {
		return true
	}
	ids := make([]string, len(units))
	for i, u := range units {
		ids[i] = u.Job.ID
	}
	err := c.act(log, fmt.Sprintf("hold jobs %v", ids), func() error { return c.Slurm.Hold(ctx, ids...) })
	if err != nil {
		c.Metrics.slurmError("scontrol hold")
		log.Warn("hold failed; reconcile will retry it", zap.Error(err))
		return false
	}
	return true
}

// unhold gives back the holds holdAll placed when the warning could not be
// recorded.
func (c *Controller) unhold(ctx context.Context, log *zap.Logger, units []Unit, held bool) {
	if !held {
		return
	}
	for _, u := range units {
		r := &state.Record{Key: state.Key{JobID: u.Job.ID}, UserHeld: u.Job.HeldByUser(), KeptHold: keptHold(u.Job)}
		if err := c.releaseHold(ctx, log, r); err != nil {
			log.Error("cannot release a hold after a failed warning; the redelivery will retry", zap.String("job", u.Job.ID), zap.Error(err))
		}
	}
}

// signal sends the checkpoint signal to the held jobs, so they can write a
// checkpoint during the grace period before the upload starts.
func (c *Controller) signal(ctx context.Context, log *zap.Logger, units []Unit) {
	if c.Policy.Signal == "" {
		return
	}
	for _, u := range units {
		err := c.act(log, "signal job "+u.Job.ID+" to checkpoint", func() error { return c.Slurm.Signal(ctx, u.Job.ID, c.Policy.Signal) })
		if err != nil {
			c.Metrics.slurmError("scancel --signal")
			log.Warn("checkpoint signal failed; rescuing what is there", zap.String("job", u.Job.ID), zap.Error(err))
		}
	}
}

// warned is when the warning was sent, as far as the deadline is
// concerned: never later than we received it. A skewed or forged future
// time must not stretch the deadline past the real reclaim.
func warned(sent, received time.Time) time.Time {
	if received.Before(sent) {
		return received
	}
	return sent
}

// newRecord is the first record of one job run: Held when the hold above
// went through, Detected (to be held by reconcile) when it did not.
func (c *Controller) newRecord(ctx context.Context, e event.Event, node string, u Unit, received time.Time, held bool) *state.Record {
	j := u.Job
	rec := &state.Record{
		Key: state.Key{Cluster: c.Cluster, JobID: j.ID, Run: j.Restarts}, Phase: state.Detected,
		User: j.User, UID: j.UID, Name: j.Name, Display: j.Display, ArrayJobID: j.ArrayJobID, ArrayTaskID: j.ArrayTaskID,
		Event: e.ID, EventTime: warned(e.Time, received), Deadline: warned(e.Time, received).Add(Reclaim - c.Margin), Drill: e.Drill,
		UserHeld: j.HeldByUser(), KeptHold: keptHold(j),
		Times: state.Times{Detected: received},
	}
	if held {
		rec.Phase, rec.Times.Held = state.Held, c.Now().UTC()
	}
	for _, n := range u.Nodes {
		n.Instance, n.Interrupted = e.Instance, n.Name == node
		if !n.Interrupted {
			var err error
			if n.Instance, err = c.Nodes.InstanceOf(ctx, n.Name); err != nil {
				c.Log.Warn("no instance for a node of the job; its data cannot be rescued", zap.String("job", j.ID), zap.String("node", n.Name), zap.Error(err))
				continue
			}
		}
		rec.Nodes = append(rec.Nodes, n)
	}
	return rec
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
		err = c.Store.Update(ctx, r)
		if err == nil {
			c.remember(r)
			return nil
		}
		c.forget(k)
		if !errors.Is(err, state.ErrConflict) {
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
	if err := c.drain(ctx, log, []string{node}, "spot rebalance recommendation"); err != nil {
		return err
	}
	if c.Policy.Presync && !c.finalRescueOf(ctx, e.Instance) {
		c.presync(ctx, log, e.Instance, node)
	} else if c.Policy.Presync {
		log.Info("no pre-sync: the instance's final rescue is under way")
	}
	return nil
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
	if event.TerminalStatus(e.Status) {
		c.presyncEnded(e.Command, e.Instance)
	}
	for _, key := range c.observe(e.Command, e.Instance, e.Status) {
		c.queue.Add(key)
	}
}
