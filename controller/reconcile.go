package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// pollEvery is how often SSM is asked about an invocation when no status
// event has settled it; events are the fast path.
const pollEvery = 5 * time.Second

// Reconcile moves the record named by key as far toward Done as it can go
// now. It returns how long to wait before looking again when it has to wait
// (for a grace period or an upload), and an error when a step failed and
// should be retried with backoff.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	k, err := state.ParseKey(key)
	if err != nil {
		c.Log.Error("dropping malformed work item", zap.String("key", key), zap.Error(err))
		return 0, nil
	}
	rec, err := c.record(ctx, k)
	if errors.Is(err, state.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for !rec.Phase.Terminal() {
		if wait := c.yield(rec); wait > 0 {
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
			if bound := rec.Deadline.Add(c.giveUpAfter()).Sub(c.Now()); bound > 0 && bound < 30*time.Second {
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

func (c *Controller) step(ctx context.Context, rec *state.Record) (time.Duration, error) {
	switch rec.Phase {
	case state.Detected:
		return 0, c.hold(ctx, rec)
	case state.Held:
		return c.dispatch(ctx, rec)
	case state.Dispatched:
		return c.track(ctx, rec)
	case state.Rescued, state.Partial, state.Failed:
		return 0, c.requeue(ctx, rec)
	case state.Requeued:
		return 0, c.release(ctx, rec)
	}
	return 0, fmt.Errorf("unknown phase %q", rec.Phase)
}

// advance records that rec reached phase. A conflicting write fails the
// step; the retry starts from a fresh read, and every step is idempotent.
func (c *Controller) advance(ctx context.Context, rec *state.Record, phase state.Phase) error {
	now := c.Now().UTC()
	rec.Phase, rec.Attempts = phase, 0
	switch phase {
	case state.Held:
		rec.Times.Held = now
	case state.Dispatched:
		rec.Times.Dispatched = now
	case state.Rescued, state.Partial, state.Failed:
		rec.Times.Finished = now
	case state.Requeued:
		rec.Times.Requeued = now
	case state.Done:
		rec.Times.Done = now
	}
	if err := c.Store.Update(ctx, rec); err != nil {
		c.forget(rec.Key)
		return err
	}
	c.remember(rec)
	c.logFor(rec).Info("rescue phase", zap.String("phase", string(phase)))
	return nil
}

// giveUpAfter is Options.GiveUpAfter with its default.
func (c *Controller) giveUpAfter() time.Duration {
	if c.GiveUpAfter > 0 {
		return c.GiveUpAfter
	}
	return 10 * time.Minute
}

// overdue reports a record that should have reached a terminal phase by now.
func (c *Controller) overdue(rec *state.Record) bool {
	return !rec.Phase.Terminal() && c.Now().After(rec.Deadline.Add(c.giveUpAfter()))
}

// overdueRecords counts the cached records past their bound: normally none
// for longer than one retry, as the next failure abandons them.
func (c *Controller) overdueRecords() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.cache {
		if c.overdue(r) {
			n++
		}
	}
	return n
}

// abandon closes a record whose step keeps failing past its bound (a
// manifest S3 keeps refusing, a requeue Slurm keeps failing): the job must
// not stay held forever. Its outcome is what the record knows (failed when
// nothing was collected), our hold on the job is lifted if we can, and the
// record says why; it is Done, not requeued by us.
func (c *Controller) abandon(ctx context.Context, k state.Key, phase state.Phase, cause error) error {
	log := c.Log.With(zap.String("job", k.JobID), zap.Int("run", k.Run))
	why := fmt.Sprintf("not requeued: gave up %s after the deadline, in %s: %v", c.giveUpAfter(), phase, cause)
	err := c.update(ctx, k, func(r *state.Record) bool {
		if r.Phase.Terminal() {
			return false
		}
		if r.Outcome == "" {
			r.Outcome = state.OutcomeFailed
		}
		if rerr := c.releaseHold(ctx, log, r); rerr != nil {
			why += fmt.Sprintf("; the hold could not be lifted either (%v): release the job by hand", rerr)
		}
		r.Requeue, r.Phase = why, state.Done
		r.Times.Done = c.Now().UTC()
		r.AddError(fmt.Errorf("%s: %w", phase, cause))
		return true
	})
	if err != nil {
		return fmt.Errorf("abandon %s: %w", k, err)
	}
	c.Metrics.requeues.WithLabelValues("abandoned").Inc()
	log.Error("rescue abandoned: its job is released and not requeued", zap.String("phase", string(phase)), zap.Error(cause))
	return nil
}

// recordError notes a failed step on a fresh copy of the record: the
// in-memory one may hold half-applied changes of the failed step.
func (c *Controller) recordError(ctx context.Context, k state.Key, phase state.Phase, err error) {
	c.Metrics.stepErrors.WithLabelValues(string(phase)).Inc()
	uerr := c.update(ctx, k, func(r *state.Record) bool {
		if r.Phase.Terminal() {
			return false
		}
		r.AddError(fmt.Errorf("%s: %w", phase, err))
		return true
	})
	if uerr != nil {
		c.Log.Warn("cannot record the error", zap.String("key", k.String()), zap.Error(uerr))
	}
}

// logFor carries the fields every line about a rescue has.
func (c *Controller) logFor(rec *state.Record) *zap.Logger {
	var nodes, instances []string
	for _, n := range rec.Nodes {
		if n.Interrupted {
			nodes, instances = append(nodes, n.Name), append(instances, n.Instance)
		}
	}
	return c.Log.With(zap.String("job", rec.JobID), zap.Int("run", rec.Run), zap.Strings("node", nodes),
		zap.Strings("instance", instances), zap.String("event", rec.Event))
}

// gone says why a job no longer needs (or can have) a rescue or a requeue;
// "" if it does. when says at which point it was found gone.
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

// hold keeps the job from restarting anywhere before its data is safe, and
// drains the interrupted nodes so nothing new lands on them.
func (c *Controller) hold(ctx context.Context, rec *state.Record) error {
	log := c.logFor(rec)
	job, err := c.Slurm.Job(ctx, rec.JobID)
	if why := gone(rec, job, err); why != "" {
		// A hold of ours that was not recorded (a crash, a failed write)
		// must not outlive the record.
		if err == nil && !job.Finished() && job.Reason == "JobHeldAdmin" {
			if rerr := c.releaseHold(ctx, log, rec); rerr != nil {
				return rerr
			}
		}
		rec.Outcome, rec.Requeue = state.OutcomeSkipped, why
		c.Metrics.rescues.WithLabelValues(string(state.OutcomeSkipped)).Inc()
		return c.advance(ctx, rec, state.Done)
	}
	if err != nil {
		return err
	}
	if err := c.act(log, "hold the job", func() error { return c.Slurm.Hold(ctx, rec.JobID) }); err != nil {
		c.Metrics.slurmError("scontrol hold")
		return fmt.Errorf("hold job %s: %w", rec.JobID, err)
	}
	var nodes []string
	for _, n := range rec.Nodes {
		if n.Interrupted {
			nodes = append(nodes, n.Name)
		}
	}
	if err := c.drain(ctx, log, nodes, "spot interruption"); err != nil {
		return err
	}
	c.signal(ctx, log, []Unit{{Job: job}})
	return c.advance(ctx, rec, state.Held)
}

// drain sets nodes DRAIN (never DOWN: ParallelCluster terminates DOWN nodes
// and Slurm kills their jobs).
func (c *Controller) drain(ctx context.Context, log *zap.Logger, nodes []string, reason string) error {
	if len(nodes) == 0 {
		return nil
	}
	err := c.act(log, "drain "+fmt.Sprint(nodes), func() error { return c.Slurm.Drain(ctx, nodes, reason) })
	if err != nil {
		c.Metrics.slurmError("scontrol update nodename")
		return fmt.Errorf("drain %v: %w", nodes, err)
	}
	return nil
}

// act runs a change, or only logs it in dry-run mode.
func (c *Controller) act(log *zap.Logger, what string, f func() error) error {
	if c.DryRun {
		log.Info("dry run: would " + what)
		return nil
	}
	return f()
}

// dispatch writes the per-node plans and starts the agent on every node of
// the job that has not got it yet.
func (c *Controller) dispatch(ctx context.Context, rec *state.Record) (time.Duration, error) {
	now := c.Now()
	if c.Policy.Signal != "" {
		// The grace period ends early enough to leave the upload its share.
		end := rec.Times.Held.Add(c.Policy.Grace)
		if latest := rec.Deadline.Add(-(Reclaim - c.Margin) / 2); end.After(latest) {
			end = latest
		}
		if wait := end.Sub(now); wait > 0 {
			return wait, nil
		}
	}
	rec.URI = c.Layout.RunURI(rec.JobID, rec.Run)
	if now.After(rec.Deadline) {
		rec.Outcome = state.OutcomeFailed
		rec.AddError(errors.New("the deadline passed before the upload could start"))
		return 0, c.finish(ctx, rec)
	}
	if _, err := c.sendAgents(ctx, rec); err != nil {
		return 0, err
	}
	c.Metrics.dispatchLatency.Observe(c.Now().Sub(rec.Times.Detected).Seconds())
	return 0, c.commitDispatch(ctx, rec, true)
}

// commitDispatch records the SSM commands just sent. A SendCommand cannot
// be taken back, so a conflicting write (another warning marking a node of
// the same job, say) is merged into a fresh read instead of failing the
// step, which would dispatch the agents a second time.
// first is the move to Dispatched; later calls record agents sent to
// nodes whose first dispatch failed.
func (c *Controller) commitDispatch(ctx context.Context, rec *state.Record, first bool) error {
	sent := append([]state.Node(nil), rec.Nodes...)
	for attempt := 0; ; attempt++ {
		var err error
		if first {
			err = c.advance(ctx, rec, state.Dispatched)
		} else {
			err = c.save(ctx, rec)
		}
		if !errors.Is(err, state.ErrConflict) || attempt == 4 {
			return err
		}
		fresh, gerr := c.Store.Get(ctx, rec.Key)
		if gerr != nil {
			return gerr
		}
		for _, n := range sent {
			markNode(fresh, n.Name, func(f *state.Node) {
				if f.Command == "" {
					f.Command, f.Status = n.Command, n.Status
				}
			})
		}
		fresh.URI = rec.URI
		*rec = *fresh
	}
}

// save writes rec as it is, keeping the cache in step.
func (c *Controller) save(ctx context.Context, rec *state.Record) error {
	if err := c.Store.Update(ctx, rec); err != nil {
		c.forget(rec.Key)
		return err
	}
	c.remember(rec)
	return nil
}

// requests are the dispatch requests of rec's nodes that have no agent yet.
func (c *Controller) requests(rec *state.Record) ([]rescue.Request, error) {
	var reqs []rescue.Request
	for _, n := range rec.Nodes {
		if n.Command != "" {
			continue
		}
		dir, err := c.scratchDir(rec, n.Name)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, rescue.Request{
			Instance: n.Instance, Node: n.Name,
			Job:      rescue.PlanJob{JobID: rec.JobID, Run: rec.Run, Dir: dir, Prefix: c.Layout.NodePrefix(rec.JobID, rec.Run, n.Name), UID: &rec.UID},
			Deadline: rec.Deadline, Reclaim: rec.EventTime.Add(Reclaim),
		})
	}
	return reqs, nil
}

// assign notes the commands sent to rec's nodes and says how many it got.
func (c *Controller) assign(rec *state.Record, cmds map[string]string) int {
	sent := 0
	for i := range rec.Nodes {
		n := &rec.Nodes[i]
		if cmd, ok := cmds[n.Instance]; ok && n.Command == "" {
			n.Command, n.Status = cmd, "Pending"
			c.watchCommand(cmd, rec.Key)
			sent++
		}
	}
	return sent
}

// sendAgents dispatches to the nodes of rec that have no command yet and
// says how many got one. It fails only if no node at all got one.
func (c *Controller) sendAgents(ctx context.Context, rec *state.Record) (int, error) {
	reqs, err := c.requests(rec)
	if err != nil || len(reqs) == 0 {
		return 0, err
	}
	for _, r := range reqs {
		c.stopPresync(ctx, r.Instance)
	}
	cmds, err := c.Dispatcher.Dispatch(ctx, reqs)
	sent := c.assign(rec, cmds)
	if err != nil {
		c.Metrics.awsError("ssm", "SendCommand")
		if sent == 0 {
			return 0, fmt.Errorf("dispatch: %w", err)
		}
		c.logFor(rec).Warn("some nodes could not be dispatched", zap.Error(err))
	}
	return sent, nil
}

// track waits for every node's agent to finish, or its instance to go, then
// reads the outcome from the manifests.
func (c *Controller) track(ctx context.Context, rec *state.Record) (time.Duration, error) {
	now := c.Now()
	reclaimed := now.After(rec.EventTime.Add(Reclaim + 10*time.Second))
	if !reclaimed && now.Before(rec.Deadline) {
		// Nodes whose dispatch failed before. What is sent is recorded at
		// once: an unrecorded agent would be sent again on the next pass.
		sent, err := c.sendAgents(ctx, rec)
		if err != nil {
			c.logFor(rec).Warn("dispatch retry failed", zap.Error(err))
		}
		if sent > 0 {
			if err := c.commitDispatch(ctx, rec, false); err != nil {
				return 0, err
			}
		}
	}
	waiting := false
	for i := range rec.Nodes {
		n := &rec.Nodes[i]
		if n.Command == "" || event.TerminalStatus(n.Status) {
			continue
		}
		c.watchCommand(n.Command, rec.Key)
		n.Status = c.status(ctx, rec, n)
		if !event.TerminalStatus(n.Status) && !n.Gone && !reclaimed {
			waiting = true
		}
	}
	if waiting {
		return min(pollEvery, rec.EventTime.Add(Reclaim+11*time.Second).Sub(now)), nil
	}
	if err := c.collect(ctx, rec); err != nil {
		return 0, err
	}
	for _, n := range rec.Nodes {
		c.forgetCommand(n.Command, rec.Key)
	}
	return 0, c.finish(ctx, rec)
}

// status is the invocation's status from an event, or from SSM when no
// event has settled it.
func (c *Controller) status(ctx context.Context, rec *state.Record, n *state.Node) string {
	if st := c.observedStatus(n.Command, n.Instance); event.TerminalStatus(st) {
		return st
	}
	// An agent needs seconds at least; asking SSM sooner, or more often,
	// only adds load in the middle of a mass reclaim.
	if !c.pollDue(n.Command, n.Instance, rec.Times.Dispatched) {
		return n.Status
	}
	st, err := c.Dispatcher.Status(ctx, n.Command, n.Instance)
	if err != nil {
		c.Metrics.awsError("ssm", "GetCommandInvocation")
		c.logFor(rec).Warn("cannot read the agent's status", zap.String("command", n.Command), zap.Error(err))
		return n.Status
	}
	if event.TerminalStatus(st) {
		// One agent rescues every job of its node: the other records
		// waiting on it learn the outcome without asking SSM again.
		for _, k := range c.observe(n.Command, n.Instance, st) {
			if k != rec.Key.String() {
				c.queue.Add(k)
			}
		}
	}
	return st
}

// collect reads each node's manifest: what S3 holds is the outcome,
// whatever SSM reported.
func (c *Controller) collect(ctx context.Context, rec *state.Record) error {
	rec.Bytes, rec.Files = 0, 0
	saved, complete := 0, 0
	for i := range rec.Nodes {
		n := &rec.Nodes[i]
		m, err := c.Manifests.Manifest(ctx, c.Layout.NodePrefix(rec.JobID, rec.Run, n.Name))
		if err == nil && (m.JobID != rec.JobID || m.Run != rec.Run || m.Node != n.Name) {
			err = fmt.Errorf("the manifest is of job %q run %d node %q: %w", m.JobID, m.Run, m.Node, rescue.ErrBadManifest)
		}
		switch {
		case errors.Is(err, rescue.ErrNoManifest):
			continue
		case errors.Is(err, rescue.ErrBadManifest):
			// Reading it again will not help: this node saved nothing
			// anyone can restore. (A compute node's user can write there.)
			n.Problem = err.Error()
			c.logFor(rec).Warn("a node's manifest is unusable; counting nothing saved there", zap.String("node", n.Name), zap.Error(err))
			continue
		case err != nil:
			c.Metrics.awsError("s3", "GetObject")
			return fmt.Errorf("read manifest of node %s: %w", n.Name, err)
		}
		n.Complete, n.Bytes, n.Files = m.Complete, m.Bytes, int64(m.RegularFiles())
		rec.Bytes += m.Bytes
		rec.Files += n.Files
		saved++
		if m.Complete {
			complete++
			c.Metrics.deadlineSlack.Observe(rec.Deadline.Sub(m.Finished).Seconds())
		}
	}
	switch {
	case complete == len(rec.Nodes) && saved > 0:
		rec.Outcome = state.OutcomeComplete
	case saved > 0:
		rec.Outcome = state.OutcomePartial
	default:
		rec.Outcome = state.OutcomeFailed
	}
	return nil
}

// finish records the upload's outcome as the phase.
func (c *Controller) finish(ctx context.Context, rec *state.Record) error {
	phase := map[state.Outcome]state.Phase{state.OutcomeComplete: state.Rescued, state.OutcomePartial: state.Partial}[rec.Outcome]
	if phase == "" {
		phase = state.Failed
	}
	if err := c.advance(ctx, rec, phase); err != nil {
		return err
	}
	c.Metrics.rescues.WithLabelValues(string(rec.Outcome)).Inc()
	c.Metrics.rescueDuration.Observe(rec.Times.Finished.Sub(rec.Times.Detected).Seconds())
	c.Metrics.rescuedBytes.Add(float64(rec.Bytes))
	c.logFor(rec).Info("rescue outcome", zap.String("outcome", string(rec.Outcome)), zap.Int64("bytes", rec.Bytes), zap.Int64("files", rec.Files), zap.String("uri", rec.URI))
	return nil
}

// scratchDir is the job's scratch directory on node, from the template.
func (c *Controller) scratchDir(rec *state.Record, node string) (string, error) {
	return rescue.ScratchDir(c.ScratchTemplate, rescue.NewScratchVars(rec.JobID, rec.User, rec.ArrayJobID, rec.ArrayTaskID, node))
}
