package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/state"
)

// handleEvent acts on one parsed event other than a warning (those are
// handled a batch at a time by onWarnings). A nil error means the message
// can be deleted: what it said is in DynamoDB or changed nothing.
func (in *intake) handleEvent(ctx context.Context, e event.Event) error {
	if e.Region != in.opts.Region {
		in.metrics.ignored("other_region")
		in.log.Warn("ignoring an event from another region", eventFields(e, zap.String("region", e.Region))...)
		return nil
	}
	if (e.Kind == event.Rebalance || e.Kind == event.StateChange) && in.expired(e) {
		in.metrics.ignored("expired")
		in.log.Warn("event older than a Spot instance's two minutes; nothing it says can still be acted on", eventFields(e, zap.Time("event_time", e.Time))...)
		return nil
	}
	switch e.Kind {
	case event.Rebalance:
		return in.onRebalance(ctx, e)
	case event.ScheduledChange:
		return in.onScheduledChange(ctx, e)
	case event.StateChange:
		return in.onStateChange(ctx, e)
	case event.CommandStatus:
		in.onCommandStatus(e)
	}
	return nil
}

// expired reports an event older than the two minutes a warned instance
// has: an old or replayed message must not drain nodes or finish rescues.
// The same bound holds for every kind.
func (in *intake) expired(e event.Event) bool {
	return in.now().After(e.Time.Add(Reclaim))
}

// onRebalance drains the node: it is likely to be interrupted, so it should
// take no new jobs; running jobs are left alone until a warning arrives.
func (in *intake) onRebalance(ctx context.Context, e event.Event) error {
	node, err := in.nodes.NodeOf(ctx, e.Instance)
	if errors.Is(err, errNotOurs) {
		in.metrics.ignored("foreign_instance")
		return nil
	}
	if err != nil {
		return err
	}
	log := in.log.With(eventFields(e, zap.String("node", node))...)
	log.Info("rebalance recommendation: draining the node")
	if err := in.steps.drain(ctx, log, []string{node}, "spot rebalance recommendation"); err != nil {
		return err
	}
	if in.opts.Policy.Presync {
		in.presync.node(ctx, log, e.Instance, node)
	}
	return nil
}

// onScheduledChange treats an AWS Health scheduled change (an instance
// retirement, stop or maintenance, usually days ahead) as a rebalance
// recommendation for each instance it names: the node takes no new jobs,
// and its running jobs are pre-synced. The change is recorded, and when it
// is Reclaim away the jobs still running there are rescued as from a
// warning (schedules.go). A change whose time has passed changes nothing.
func (in *intake) onScheduledChange(ctx context.Context, e event.Event) error {
	if !in.now().Before(e.Scheduled) {
		in.metrics.ignored("expired")
		in.log.Warn("scheduled change already past", eventFields(e, zap.Time("scheduled", e.Scheduled))...)
		return nil
	}
	for _, id := range e.Instances {
		node, err := in.nodes.NodeOf(ctx, id)
		if errors.Is(err, errNotOurs) {
			in.metrics.ignored("foreign_instance")
			continue
		}
		if err != nil {
			return err
		}
		one := e
		one.Instance = id
		log := in.log.With(eventFields(one, zap.String("node", node), zap.String("change", e.Code), zap.Time("scheduled", e.Scheduled))...)
		log.Info("AWS Health scheduled change: draining the node")
		// The code is [A-Z0-9_] (checked by the parser): safe in a reason.
		reason := fmt.Sprintf("AWS Health %s at %s", e.Code, e.Scheduled.Format(time.RFC3339))
		if err := in.steps.drain(ctx, log, []string{node}, reason); err != nil {
			return err
		}
		if err := in.schedule(ctx, e, id); err != nil {
			return err
		}
		if in.opts.Policy.Presync && in.now().Before(e.Scheduled.Add(-Reclaim)) {
			in.presync.node(ctx, log, id, node)
		}
	}
	return nil
}

// onStateChange notes on the records of an interrupted instance that it is
// going away: their upload is over, whatever SSM says.
func (in *intake) onStateChange(ctx context.Context, e event.Event) error {
	if !e.Gone() {
		in.metrics.ignored("instance_state")
		return nil
	}
	it, err := in.records.store.GetInterruption(ctx, e.Instance)
	if errors.Is(err, state.ErrNotFound) {
		in.metrics.ignored("no_rescue_in_flight")
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range it.Jobs {
		err := in.records.update(ctx, k, func(r *state.Record) bool {
			return !r.Phase.Terminal() && markNode(r, it.Node, func(n *state.Node) { n.Gone = true })
		})
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return err
		}
	}
	in.log.Info("interrupted instance is going away", eventFields(e, zap.String("node", it.Node), zap.String("state", e.State))...)
	in.enqueue(it.Jobs...)
	return nil
}

// onCommandStatus wakes the records waiting on an agent's command. The event
// only says when to look: the outcome reconcile records comes from the
// manifests in S3.
func (in *intake) onCommandStatus(e event.Event) {
	if e.Document != in.opts.Document {
		in.metrics.ignored("other_document")
		return
	}
	if event.TerminalStatus(e.Status) {
		in.presync.ended(e.Command, e.Instance)
	}
	for _, key := range in.commands.observe(e.Command, e.Instance, e.Status) {
		in.steps.wake(key)
	}
}
