package controller

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/state"
)

// dispatch starts the agent on every node of recs that has none yet: one
// request to the dispatcher for all of them, which writes one plan per
// instance and sends one SendCommand per 50 instances. A record that got
// an agent on at least one node moves to Dispatched (in memory: the caller
// writes it); one past its deadline is not sent. The error says which
// nodes got no agent: they keep no command, and a later pass retries them.
func (s *steps) dispatch(ctx context.Context, log *zap.Logger, recs []*state.Record) error {
	var reqs []agents.Request
	var errs []error
	now := s.now()
	for _, r := range recs {
		if now.After(r.Deadline) {
			continue // too late to start: Reconcile records the failure
		}
		rq, err := s.requests(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("plan the rescue of job %s: %w", r.JobID, err))
			continue
		}
		reqs = append(reqs, rq...)
	}
	if len(reqs) == 0 {
		return errors.Join(errs...)
	}
	for _, r := range reqs {
		s.presync.stop(ctx, r.Instance)
	}
	cmds, err := s.dispatcher.Dispatch(ctx, reqs)
	if err != nil {
		s.metrics.awsError("ssm", "SendCommand")
		errs = append(errs, fmt.Errorf("dispatch: %w", err))
	}
	for _, r := range recs {
		if s.assign(r, cmds) == 0 || r.Phase == state.Dispatched {
			continue
		}
		r.URI = s.plans.layout.RunURI(r.JobID, r.Run)
		enter(r, state.Dispatched, s.now())
		s.metrics.dispatchLatency.Observe(r.Times.Dispatched.Sub(r.Times.Detected).Seconds())
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("some nodes could not be dispatched; they are retried", zap.Error(err))
		return err
	}
	return nil
}

// requests are the dispatch requests of rec's nodes that have no agent yet.
func (s *steps) requests(rec *state.Record) ([]agents.Request, error) {
	var reqs []agents.Request
	for _, n := range rec.Nodes {
		if n.Command != "" {
			continue
		}
		rq, err := s.plans.request(rec, n.Name, n.Instance, rec.Deadline, rec.EventTime.Add(Reclaim), false)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, rq)
	}
	return reqs, nil
}

// assign notes the commands sent to rec's nodes, watches them, and says
// how many nodes got one.
func (s *steps) assign(rec *state.Record, cmds map[string]string) int {
	sent := 0
	for i := range rec.Nodes {
		n := &rec.Nodes[i]
		if cmd, ok := cmds[n.Instance]; ok && n.Command == "" {
			n.Command, n.Status = cmd, "Pending"
			s.commands.watch(cmd, rec.Key.String())
			sent++
		}
	}
	return sent
}

// sent reports whether every node of rec has its agent.
func sent(rec *state.Record) bool {
	for _, n := range rec.Nodes {
		if n.Command == "" {
			return false
		}
	}
	return true
}
