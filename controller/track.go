package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// track waits for every node's agent to finish, or its instance to go, then
// reads the outcome from the manifests and records it as the phase. It
// returns how long to wait before looking again while agents run.
func (s *steps) track(ctx context.Context, rec *state.Record) (time.Duration, error) {
	now := s.now()
	log := logFor(s.log, rec)
	reclaimed := now.After(rec.EventTime.Add(Reclaim + 10*time.Second))
	if !reclaimed && now.Before(rec.Deadline) && !sent(rec) {
		// Nodes whose dispatch failed before. What is sent is recorded at
		// once: an unrecorded agent would be sent again on the next pass.
		before := commandCount(rec)
		if err := s.dispatch(ctx, log, []*state.Record{rec}); err != nil {
			log.Warn("dispatch retry failed", zap.Error(err))
		}
		if commandCount(rec) > before {
			if err := s.records.saveDispatched(ctx, rec, false); err != nil {
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
		s.commands.watch(n.Command, rec.Key.String())
		n.Status = s.status(ctx, rec, n)
		if !event.TerminalStatus(n.Status) && !n.Gone && !reclaimed {
			waiting = true
		}
	}
	if waiting {
		return min(pollEvery, rec.EventTime.Add(Reclaim+11*time.Second).Sub(now)), nil
	}
	if err := s.collect(ctx, rec); err != nil {
		return 0, err
	}
	for _, n := range rec.Nodes {
		s.commands.forget(n.Command, rec.Key.String())
	}
	return 0, s.finish(ctx, rec)
}

func commandCount(rec *state.Record) int {
	n := 0
	for _, node := range rec.Nodes {
		if node.Command != "" {
			n++
		}
	}
	return n
}

// status is the invocation's status from an event, or from SSM when no
// event has settled it.
func (s *steps) status(ctx context.Context, rec *state.Record, n *state.Node) string {
	if st := s.commands.observed(n.Command, n.Instance); event.TerminalStatus(st) {
		return st
	}
	// An agent needs seconds at least; asking SSM sooner, or more often,
	// only adds load in the middle of a mass reclaim.
	if !s.commands.pollDue(n.Command, n.Instance, rec.Times.Dispatched) {
		return n.Status
	}
	st, err := s.dispatcher.Status(ctx, n.Command, n.Instance)
	if err != nil {
		s.metrics.awsError("ssm", "GetCommandInvocation")
		logFor(s.log, rec).Warn("cannot read the agent's status", zap.String("command", n.Command), zap.Error(err))
		return n.Status
	}
	if event.TerminalStatus(st) {
		// One agent rescues every job of its node: the other records
		// waiting on it learn the outcome without asking SSM again.
		for _, k := range s.commands.observe(n.Command, n.Instance, st) {
			if k != rec.Key.String() {
				s.wake(k)
			}
		}
	}
	return st
}

// collect reads each node's manifest: what S3 holds is the outcome,
// whatever SSM reported.
func (s *steps) collect(ctx context.Context, rec *state.Record) error {
	rec.Bytes, rec.Files, rec.Requests = 0, 0, 0
	saved, complete := 0, 0
	for i := range rec.Nodes {
		n := &rec.Nodes[i]
		m, err := s.manifests.Manifest(ctx, s.plans.layout.NodePrefix(rec.JobID, rec.Run, n.Name))
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
			logFor(s.log, rec).Warn("a node's manifest is unusable; counting nothing saved there", zap.String("node", n.Name), zap.Error(err))
			continue
		case err != nil:
			s.metrics.awsError("s3", "GetObject")
			return fmt.Errorf("read manifest of node %s: %w", n.Name, err)
		}
		n.Complete, n.Bytes, n.Files = m.Complete, m.Bytes, int64(m.RegularFiles())
		rec.Bytes += m.Bytes
		rec.Files += n.Files
		rec.Requests += m.Requests
		saved++
		if m.Complete {
			complete++
			s.metrics.deadlineSlack.Observe(rec.Deadline.Sub(m.Finished).Seconds())
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
func (s *steps) finish(ctx context.Context, rec *state.Record) error {
	phase := map[state.Outcome]state.Phase{state.OutcomeComplete: state.Rescued, state.OutcomePartial: state.Partial}[rec.Outcome]
	if phase == "" {
		phase = state.Failed
	}
	if err := s.records.advance(ctx, rec, phase); err != nil {
		return err
	}
	s.metrics.rescues.WithLabelValues(string(rec.Outcome)).Inc()
	s.metrics.rescueDuration.Observe(rec.Times.Finished.Sub(rec.Times.Detected).Seconds())
	s.metrics.rescuedBytes.Add(float64(rec.Bytes))
	logFor(s.log, rec).Info("rescue outcome", zap.String("outcome", string(rec.Outcome)), zap.Int64("bytes", rec.Bytes), zap.Int64("files", rec.Files), zap.String("uri", rec.URI))
	return nil
}
