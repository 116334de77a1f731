package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// warning is one Spot interruption warning being handled: the node it
// names and the records of the jobs it rescues there.
type warning struct {
	i    int // its place in the batch, and in onWarnings' result
	e    event.Event
	node string
	log  *zap.Logger
	recs []*state.Record
}

// onWarnings handles a batch of Spot interruption warnings: one record per
// job on the warned nodes, and the first steps for all of them at once
// (the steps Reconcile takes for one record): one Slurm listing, one hold,
// one drain, and, with no checkpoint grace to wait for, one dispatch; then
// one batch write of the records and one of the interruption items, and
// the records are queued for Reconcile to carry on. A redelivered or
// duplicate warning finds its records there and changes nothing. The
// result has one error per warning; nil means its message can be deleted.
func (in *intake) onWarnings(ctx context.Context, events []event.Event, received time.Time) []error {
	errs := make([]error, len(events))
	ws := in.resolve(ctx, events, errs)
	if len(ws) == 0 {
		return errs
	}
	claimed := make([]string, len(ws))
	for i, w := range ws {
		claimed[i] = w.e.Instance
	}
	defer in.inFlight.release(claimed)
	jobs, err := in.slurm.Jobs(ctx)
	if err != nil {
		in.metrics.slurmError("squeue")
		in.log.Error("cannot list Slurm jobs", zap.Error(err))
		for _, w := range ws {
			errs[w.i] = err // left for redelivery: we could not see the jobs
		}
		return errs
	}
	var recs []*state.Record
	var nodes []string
	for _, w := range ws {
		w.recs = in.newRecords(ctx, w, jobs, received)
		recs, nodes = append(recs, w.recs...), append(nodes, w.node)
	}
	log := in.log.With(zap.Strings("node", nodes))
	if err := in.steps.hold(ctx, log, recs, nodes); err != nil {
		// The records start Detected, and Reconcile retries the step
		// (hold and drain) for them. A node with no job to rescue has no
		// record: its warning is redelivered, and the drain retried then.
		log.Warn("hold or drain failed; reconcile will retry it", zap.Error(err))
		ws = slices.DeleteFunc(ws, func(w *warning) bool {
			if len(w.recs) == 0 {
				errs[w.i] = err
			}
			return len(w.recs) == 0
		})
	} else if in.opts.Policy.Signal == "" {
		in.dispatchNew(ctx, log, ws)
	}
	in.record(ctx, ws, errs)
	return errs
}

// errInFlight leaves a copy of a warning for redelivery while another
// receiver handles the instance (see inFlight).
var errInFlight = errors.New("another receiver is handling a warning for this instance")

// resolve finds each warned instance's node and claims the instance for
// this batch. A warning with nothing to do (expired, a duplicate in the
// batch, not our instance) is left out with its reason counted; one whose
// node cannot be looked up, or whose instance another receiver has
// claimed, gets its error.
func (in *intake) resolve(ctx context.Context, events []event.Event, errs []error) []*warning {
	var ws []*warning
	seen := map[string]bool{}
	for i, e := range events {
		log := in.log.With(eventFields(e)...)
		dup := seen[e.Instance]
		seen[e.Instance] = true
		if in.expired(e) {
			in.metrics.ignored("expired")
			log.Warn("warning arrived after the instance was reclaimed; nothing left to rescue", zap.Time("event_time", e.Time))
			continue
		}
		node, err := in.nodes.NodeOf(ctx, e.Instance)
		switch {
		case errors.Is(err, errNotOurs):
			in.metrics.ignored("foreign_instance")
			log.Info("instance is not a node of this cluster; ignored")
		case err != nil:
			errs[i] = err
		case dup:
			in.metrics.ignored("duplicate")
			log.Info("instance already being rescued; duplicate warning ignored")
		case !in.inFlight.claim(e.Instance):
			errs[i] = errInFlight
		default:
			ws = append(ws, &warning{i: i, e: e, node: node, log: log.With(zap.String("node", node))})
		}
	}
	return ws
}

// newRecords are the first records of the jobs a warning rescues: Detected,
// each with its nodes and their instances.
func (in *intake) newRecords(ctx context.Context, w *warning, jobs []slurm.Job, received time.Time) []*state.Record {
	units, skipped := Decide(in.opts.Policy, jobs, w.node)
	for _, s := range skipped {
		w.log.Info("job on the node is not rescued", zap.String("job", s.Job.Display), zap.String("reason", s.Reason))
	}
	sent := warned(w.e.Time, received)
	recs := make([]*state.Record, 0, len(units))
	for _, u := range units {
		r := jobRecord(in.opts.Cluster, u.Job)
		r.Phase, r.Times.Detected = state.Detected, received
		r.Event, r.EventTime, r.Deadline, r.Drill = w.e.ID, sent, sent.Add(Reclaim-in.opts.Margin), w.e.Drill
		for _, n := range u.Nodes {
			n.Instance, n.Interrupted = w.e.Instance, n.Name == w.node
			if !n.Interrupted {
				var err error
				if n.Instance, err = in.nodes.InstanceOf(ctx, n.Name); err != nil {
					w.log.Warn("no instance for a node of the job; its data cannot be rescued", zap.String("job", u.Job.ID), zap.String("other_node", n.Name), zap.Error(err))
					continue
				}
			}
			r.Nodes = append(r.Nodes, n)
		}
		recs = append(recs, r)
	}
	return recs
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

// dispatchNew sends the agents of the warnings none of whose records exist
// yet, before the records are first written: a mass reclaim then costs one
// write per job to reach Dispatched, not two. Warnings whose records exist
// already (redelivered, duplicate) are left to Reconcile, which dispatches
// from what is recorded.
func (in *intake) dispatchNew(ctx context.Context, log *zap.Logger, ws []*warning) {
	var keys []state.Key
	for _, w := range ws {
		for _, r := range w.recs {
			keys = append(keys, r.Key)
		}
	}
	if len(keys) == 0 {
		return
	}
	exists, err := in.records.store.Exists(ctx, keys)
	if err != nil {
		log.Warn("cannot tell new warnings from redeliveries; dispatching from the records", zap.Error(err))
		return
	}
	// A job on two nodes warned in the same batch has a record in both
	// warnings: the first sends its agents (to all of the job's nodes),
	// the second only marks its node when it is written.
	claimed := map[state.Key]bool{}
	var fresh []*state.Record
	for _, w := range ws {
		if slices.ContainsFunc(w.recs, func(r *state.Record) bool { return exists[r.Key] }) {
			continue
		}
		for _, r := range w.recs {
			if !claimed[r.Key] {
				claimed[r.Key] = true
				fresh = append(fresh, r)
			}
		}
	}
	// A record whose dispatch fails stays Held, and Reconcile retries it.
	in.steps.dispatch(ctx, log, fresh)
}

// record writes the batch's records together (Store.CreateAll), each only
// if it is not there yet, then the warnings' interruption items, and
// queues the records. A warning whose records could not be written gives
// its holds back and gets its error: its message is redelivered.
func (in *intake) record(ctx context.Context, ws []*warning, errs []error) {
	var all []*state.Record
	for _, w := range ws {
		all = append(all, w.recs...)
	}
	created := in.records.store.CreateAll(ctx, all)
	dup := make([]bool, len(ws))
	var wg sync.WaitGroup
	for j, w := range ws {
		results := created[:len(w.recs)]
		created = created[len(w.recs):]
		wg.Go(func() {
			dup[j], errs[w.i] = in.recordWarning(ctx, w, results)
			if errs[w.i] != nil {
				in.unhold(ctx, w)
			}
		})
	}
	wg.Wait()
	in.recordInterruptions(ctx, ws, errs, dup)
}

// recordWarning takes the results of creating the warning's records: a
// record that was already there (a redelivery, a duplicate event, another
// node of a job being rescued) gets the node marked instead. dup says that
// every record was there already, unchanged.
func (in *intake) recordWarning(ctx context.Context, w *warning, created []error) (dup bool, err error) {
	news := 0
	for i, r := range w.recs {
		err := created[i]
		switch {
		case err == nil:
			news++
			in.records.remember(r)
		case errors.Is(err, state.ErrExists):
			err = in.records.update(ctx, r.Key, func(cur *state.Record) bool {
				if markNode(cur, w.node, func(n *state.Node) { n.Interrupted = true }) {
					news++
					return true
				}
				return false
			})
		}
		if err != nil {
			return false, fmt.Errorf("record job %s: %w", r.JobID, err)
		}
	}
	return len(w.recs) > 0 && news == 0, nil
}

// unhold gives back the holds placed for a warning that could not be
// recorded.
func (in *intake) unhold(ctx context.Context, w *warning) {
	for _, r := range w.recs {
		if r.Phase == state.Detected {
			continue // not held
		}
		if err := in.steps.releaseHold(ctx, w.log, r); err != nil {
			w.log.Error("cannot release a hold after a failed warning; the redelivery will retry", zap.String("job", r.JobID), zap.Error(err))
		}
	}
}

// recordInterruptions writes the interruption items of the recorded
// warnings in one batch, then queues their records. The item of a node
// with no job to rescue is what tells a repeat from a first warning: it is
// never overwritten.
func (in *intake) recordInterruptions(ctx context.Context, ws []*warning, errs []error, dup []bool) {
	var items []*state.Interruption
	recorded := make([]*state.Interruption, len(ws))
	for j, w := range ws {
		if errs[w.i] != nil {
			continue
		}
		if len(w.recs) == 0 {
			_, err := in.records.store.GetInterruption(ctx, w.e.Instance)
			switch {
			case err == nil:
				dup[j] = true
				continue
			case !errors.Is(err, state.ErrNotFound):
				errs[w.i] = err
				continue
			}
		}
		it := &state.Interruption{Instance: w.e.Instance, Node: w.node, Event: w.e.ID, Time: w.e.Time}
		for _, r := range w.recs {
			it.Jobs = append(it.Jobs, r.Key)
		}
		items, recorded[j] = append(items, it), it
	}
	// If this fails the messages are redelivered: the records exist, so
	// the second try only writes what is missing.
	var err error
	if len(items) > 0 {
		err = in.records.store.PutInterruptions(ctx, items)
	}
	for j, w := range ws {
		switch {
		case errs[w.i] != nil:
		case dup[j]:
			in.metrics.ignored("duplicate")
			w.log.Info("instance already being rescued; duplicate warning ignored")
			in.enqueue(keys(w.recs)...)
		case err != nil:
			errs[w.i] = err
		default:
			w.log.Info("spot interruption warning", zap.Int("jobs", len(w.recs)), zap.Time("reclaim", w.e.Time.Add(Reclaim)), zap.Bool("drill", w.e.Drill))
			in.enqueue(recorded[j].Jobs...)
		}
	}
}

func keys(recs []*state.Record) []state.Key {
	out := make([]state.Key, len(recs))
	for i, r := range recs {
		out[i] = r.Key
	}
	return out
}
