package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Invocation and plugin statuses (CommandInvocationStatus and
// CommandPluginStatus in the service model).
const (
	statusPending    = "Pending"
	statusInProgress = "InProgress"
	statusSuccess    = "Success"
	statusFailed     = "Failed"
	statusTimedOut   = "TimedOut"
	statusCancelled  = "Cancelled"
	statusCancelling = "Cancelling" // commands only
)

// StatusDetails values that differ from the status itself.
const (
	detailsExecutionTimedOut = "ExecutionTimedOut"
	// detailsUndeliverable is what ssmlocal reports for an instance that
	// was terminated under a command. SSM documents no dedicated outcome
	// for an instance dying mid-execution: there the agent simply stops
	// reporting and the invocation ends through the delivery/execution
	// timeouts, while commands for an instance that is already gone end
	// Failed/Undeliverable. We end such invocations at once as
	// Failed/Undeliverable, so controllers see a terminal, non-success
	// state without waiting out an hour-long timeout.
	detailsUndeliverable = "Undeliverable"
)

var (
	errCancelled  = errors.New("cancelled by CancelCommand")
	errTerminated = errors.New("instance terminated")
)

// invocation is one command on one instance. All fields but the immutable
// ones (cmd, inst, ctx, cancel) are guarded by server.mu.
type invocation struct {
	cmd     *command
	inst    *instance
	ctx     context.Context
	cancel  context.CancelCauseFunc
	status  string
	details string
	plugins []*pluginRun
}

// pluginRun is the result of one document step.
type pluginRun struct {
	step    renderedStep
	status  string
	details string
	code    int
	start   time.Time
	end     time.Time
	stdout  string
	stderr  string
}

func newInvocation(parent context.Context, cmd *command, inst *instance, steps []renderedStep) *invocation {
	ctx, cancel := context.WithCancelCause(parent)
	inv := &invocation{cmd: cmd, inst: inst, ctx: ctx, cancel: cancel, status: statusPending, details: statusPending}
	for _, st := range steps {
		inv.plugins = append(inv.plugins, &pluginRun{step: st, status: statusPending, details: statusPending, code: -1})
	}
	return inv
}

func isTerminal(status string) bool {
	switch status {
	case statusSuccess, statusFailed, statusTimedOut, statusCancelled:
		return true
	}
	return false
}

// stopOutcome maps the cause an invocation was stopped with to its status.
func stopOutcome(cause error) (status, details string) {
	if errors.Is(cause, errTerminated) {
		return statusFailed, detailsUndeliverable
	}
	return statusCancelled, statusCancelled
}

// run drives one invocation through its steps, one after another as the
// agent does. Steps after a failed one still run (SSM's default without
// onFailure, which ssmlocal does not model); a stop ends the sequence.
func (s *server) run(inv *invocation) {
	defer s.wg.Done()
	defer inv.cancel(nil)
	for i, p := range inv.plugins {
		if !s.startPlugin(inv, p) {
			break
		}
		res := s.execStep(inv, p.step)
		s.recordPlugin(inv, p, res, i == len(inv.plugins)-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !isTerminal(inv.status) {
		s.settle(inv)
	}
}

// startPlugin marks p (and the invocation, on its first step) InProgress
// unless the invocation was stopped meanwhile.
func (s *server) startPlugin(inv *invocation, p *pluginRun) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inv.ctx.Err() != nil {
		return false
	}
	if inv.status == statusPending {
		s.setStatus(inv, statusInProgress, statusInProgress)
	}
	p.status, p.details, p.start = statusInProgress, statusInProgress, time.Now()
	return true
}

// recordPlugin stores a step's result. After the last step, or once the
// invocation was stopped, it settles the invocation in the same critical
// section, so no reader sees a finished step under a running invocation.
func (s *server) recordPlugin(inv *invocation, p *pluginRun, res execResult, last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.end, p.stdout, p.stderr, p.code = time.Now(), res.stdout, res.stderr, res.exitCode
	switch {
	case res.stopCause != nil:
		p.status, p.details = stopOutcome(res.stopCause)
	case res.timedOut:
		p.status, p.details = statusTimedOut, detailsExecutionTimedOut
	case res.err != nil:
		p.status, p.details = statusFailed, statusFailed
		p.stderr += fmt.Sprintf("ssmlocal: %v\n", res.err)
	case res.exitCode == 0:
		p.status, p.details = statusSuccess, statusSuccess
	default:
		p.status, p.details = statusFailed, statusFailed
	}
	if last || inv.ctx.Err() != nil {
		s.settle(inv)
	}
}

// execStep runs one step in a scratch directory that plays the agent's
// orchestration directory.
func (s *server) execStep(inv *invocation, st renderedStep) execResult {
	scratch, err := os.MkdirTemp("", "ssmlocal-"+inv.cmd.id+"-")
	if err != nil {
		return execResult{exitCode: -1, err: fmt.Errorf("create scratch dir: %w", err)}
	}
	defer func() {
		if err := os.RemoveAll(scratch); err != nil {
			s.log.Warn("remove scratch dir", zap.String("dir", scratch), zap.Error(err))
		}
	}()
	return execute(inv.ctx, execSpec{
		script:  st.script,
		scratch: scratch,
		dir:     workingDir(inv.inst, st, scratch),
		env:     s.environment(inv.inst),
		timeout: st.timeout,
		limit:   s.cfg.outputLimit,
	})
}

// workingDir picks the step's workingDirectory, else the instance's
// workdir, else the scratch directory (the agent's default).
func workingDir(inst *instance, st renderedStep, scratch string) string {
	base := inst.Workdir
	if base == "" {
		base = scratch
	}
	if st.workdir == "" {
		return base
	}
	if filepath.IsAbs(st.workdir) {
		return st.workdir
	}
	return filepath.Join(base, st.workdir)
}

// environment is a minimal base (PATH, HOME and LANG are ours, so lab
// binaries on our PATH are found), the instance's env, which may override
// the base, and the two variables the SSM agent sets for every command.
func (s *server) environment(inst *instance) []string {
	env := map[string]string{
		"PATH": getenvOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
		"HOME": getenvOr("HOME", "/root"),
		"LANG": getenvOr("LANG", "C.UTF-8"),
	}
	maps.Copy(env, inst.Env)
	env["AWS_SSM_INSTANCE_ID"] = inst.ID
	env["AWS_SSM_REGION_NAME"] = s.cfg.region
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

func getenvOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// settle ends steps that never ran the way the invocation was stopped and
// derives the invocation's final status. Callers hold s.mu.
func (s *server) settle(inv *invocation) {
	cause := context.Cause(inv.ctx)
	for _, p := range inv.plugins {
		if !isTerminal(p.status) {
			p.status, p.details = stopOutcome(cause)
		}
	}
	status, details := pluginsOutcome(inv.plugins)
	s.setStatus(inv, status, details)
}

// pluginsOutcome folds step results: a stop wins, then failure, then
// timeout.
func pluginsOutcome(plugins []*pluginRun) (status, details string) {
	status, details = statusSuccess, statusSuccess
	rank := func(p *pluginRun) int {
		switch {
		case p.status == statusCancelled || p.details == detailsUndeliverable:
			return 3
		case p.status == statusFailed:
			return 2
		case p.status == statusTimedOut:
			return 1
		}
		return 0
	}
	best := 0
	for _, p := range plugins {
		if r := rank(p); r > best {
			best, status, details = r, p.status, p.details
		}
	}
	return status, details
}

// setStatus records a status change, logs it and publishes its event.
// Callers hold s.mu, which keeps each invocation's events in order.
func (s *server) setStatus(inv *invocation, status, details string) {
	inv.status, inv.details = status, details
	s.log.Info("invocation status changed",
		zap.String("command", inv.cmd.id),
		zap.String("instance", inv.inst.ID),
		zap.String("node", inv.inst.Node),
		zap.String("status", status),
		zap.String("details", details))
	if s.events != nil {
		s.events.enqueue(statusEvent{
			commandID:    inv.cmd.id,
			documentName: inv.cmd.documentName,
			instanceID:   inv.inst.ID,
			requested:    inv.cmd.requested,
			status:       status,
		})
	}
}
