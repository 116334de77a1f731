package main

import (
	"slices"
	"time"

	"go.uber.org/zap"
)

const (
	maxInstanceIDs    = 50
	maxCommentLength  = 100
	minTimeoutSeconds = 30
	maxTimeoutSeconds = 2592000
)

func (s *server) sendCommand(in *sendCommandInput) (*sendCommandOutput, error) {
	if err := validateSendCommand(in); err != nil {
		return nil, err
	}
	doc, ok := s.cfg.documents[documentName(in.DocumentName)]
	if !ok {
		return nil, errorf(codeInvalidDocument, "document %q does not exist", in.DocumentName)
	}
	steps, err := doc.render(in.Parameters)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errorf(codeInternalServerError, "%v", errShutdown)
	}
	insts, err := s.targets(in.InstanceIds)
	if err != nil {
		return nil, err
	}
	cmd := s.newCommand(in, doc.name, insts, steps)
	out := &sendCommandOutput{Command: cmd.json(s.cfg.region)}
	s.log.Info("command sent",
		zap.String("command", cmd.id),
		zap.String("document", cmd.documentName),
		zap.Strings("instances", cmd.instanceIDs))
	for _, inv := range cmd.invocations {
		s.wg.Add(1)
		go s.run(inv)
	}
	return out, nil
}

// validateSendCommand applies the service model's constraints, with
// messages in the shape SSM's validation layer uses.
func validateSendCommand(in *sendCommandInput) error {
	switch {
	case len(in.Targets) > 0:
		return errorf(codeValidation, "Targets are not supported by ssmlocal; send InstanceIds instead")
	case in.DocumentName == "":
		return errorf(codeValidation, "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null")
	case len(in.InstanceIds) == 0:
		return errorf(codeValidation, "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case len(in.InstanceIds) > maxInstanceIDs:
		return errorf(codeValidation, "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to %d", maxInstanceIDs)
	case len(in.Comment) > maxCommentLength:
		return errorf(codeValidation, "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to %d", maxCommentLength)
	case in.TimeoutSeconds != nil && (*in.TimeoutSeconds < minTimeoutSeconds || *in.TimeoutSeconds > maxTimeoutSeconds):
		return errorf(codeValidation, "1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between %d and %d", *in.TimeoutSeconds, minTimeoutSeconds, maxTimeoutSeconds)
	}
	for i, id := range in.InstanceIds {
		if slices.Contains(in.InstanceIds[:i], id) {
			return errorf(codeDuplicateInstanceID, "instance %s is listed more than once", id)
		}
	}
	return nil
}

// targets resolves instance ids; callers hold s.mu.
func (s *server) targets(ids []string) ([]*instance, error) {
	insts := make([]*instance, 0, len(ids))
	for _, id := range ids {
		inst, ok := s.cfg.instances[id]
		if !ok {
			return nil, errorf(codeInvalidInstanceID, "instance %s is not in the ssmlocal instance mapping", id)
		}
		if inst.terminated {
			return nil, errorf(codeInvalidInstanceID, "Instances [[%s]] not in a valid state for account %s", id, s.cfg.account)
		}
		insts = append(insts, inst)
	}
	return insts, nil
}

// newCommand registers a command and its pending invocations; callers
// hold s.mu.
func (s *server) newCommand(in *sendCommandInput, docName string, insts []*instance, steps []renderedStep) *command {
	cmd := &command{
		id:              newUUID(),
		documentName:    docName,
		documentVersion: orDefault(in.DocumentVersion, defaultDocumentVersion),
		comment:         in.Comment,
		params:          in.Parameters,
		instanceIDs:     in.InstanceIds,
		requested:       time.Now(),
		timeoutSeconds:  defaultDeliveryTimeout,
		maxConcurrency:  orDefault(in.MaxConcurrency, "50"),
		maxErrors:       orDefault(in.MaxErrors, "0"),
	}
	if cmd.params == nil {
		cmd.params = map[string][]string{}
	}
	if in.TimeoutSeconds != nil {
		cmd.timeoutSeconds = *in.TimeoutSeconds
	}
	for _, inst := range insts {
		cmd.invocations = append(cmd.invocations, newInvocation(s.ctx, cmd, inst, steps))
	}
	s.commands = append(s.commands, cmd)
	s.byID[cmd.id] = cmd
	return cmd
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *server) getCommandInvocation(in *getCommandInvocationInput) (*getCommandInvocationOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.findInvocation(in.CommandID, in.InstanceID)
	if inv == nil {
		return nil, errorf(codeInvocationDoesNotExist, "no invocation of command %q on instance %q", in.CommandID, in.InstanceID)
	}
	p, err := inv.plugin(in.PluginName)
	if err != nil {
		return nil, err
	}
	out := invocationOutput(inv, p)
	return &out, nil
}

// findInvocation returns nil if there is no such invocation; callers hold
// s.mu.
func (s *server) findInvocation(commandID, instanceID string) *invocation {
	cmd, ok := s.byID[commandID]
	if !ok {
		return nil
	}
	for _, inv := range cmd.invocations {
		if inv.inst.ID == instanceID {
			return inv
		}
	}
	return nil
}

// plugin picks the step GetCommandInvocation reports: the named one, or
// the only one.
func (inv *invocation) plugin(name string) (*pluginRun, error) {
	if name == "" {
		if len(inv.plugins) != 1 {
			return nil, errorf(codeInvalidPluginName, "document %q has %d steps; specify PluginName", inv.cmd.documentName, len(inv.plugins))
		}
		return inv.plugins[0], nil
	}
	for _, p := range inv.plugins {
		if p.step.name == name {
			return p, nil
		}
	}
	return nil, errorf(codeInvalidPluginName, "document %q has no step named %q", inv.cmd.documentName, name)
}

func (s *server) listCommandInvocations(in *listCommandInvocationsInput) (*listCommandInvocationsOutput, error) {
	if len(in.Filters) > 0 {
		return nil, errorf(codeValidation, "Filters are not supported by ssmlocal")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*invocation
	for _, cmd := range s.newestFirst() {
		if in.CommandID != "" && cmd.id != in.CommandID {
			continue
		}
		for _, inv := range cmd.invocations {
			if in.InstanceID == "" || inv.inst.ID == in.InstanceID {
				all = append(all, inv)
			}
		}
	}
	key := func(inv *invocation) string { return inv.cmd.id + "/" + inv.inst.ID }
	items, next, err := page(all, key, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := &listCommandInvocationsOutput{CommandInvocations: []commandInvocationJSON{}, NextToken: next}
	for _, inv := range items {
		out.CommandInvocations = append(out.CommandInvocations, inv.json(in.Details))
	}
	return out, nil
}

func (s *server) listCommands(in *listCommandsInput) (*listCommandsOutput, error) {
	if len(in.Filters) > 0 {
		return nil, errorf(codeValidation, "Filters are not supported by ssmlocal")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[in.CommandID]; in.CommandID != "" && !ok {
		return nil, errorf(codeInvalidCommandID, "command %q does not exist", in.CommandID)
	}
	var all []*command
	for _, cmd := range s.newestFirst() {
		if (in.CommandID == "" || cmd.id == in.CommandID) && (in.InstanceID == "" || slices.Contains(cmd.instanceIDs, in.InstanceID)) {
			all = append(all, cmd)
		}
	}
	items, next, err := page(all, func(c *command) string { return c.id }, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := &listCommandsOutput{Commands: []commandJSON{}, NextToken: next}
	for _, cmd := range items {
		out.Commands = append(out.Commands, cmd.json(s.cfg.region))
	}
	return out, nil
}

// newestFirst lists commands the way SSM does; callers hold s.mu.
func (s *server) newestFirst() []*command {
	list := slices.Clone(s.commands)
	slices.Reverse(list)
	return list
}

// cancelCommand stops the targeted invocations; their runners record the
// Cancelled outcome. Like SSM, it returns before they have stopped.
func (s *server) cancelCommand(in *cancelCommandInput) (*cancelCommandOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, ok := s.byID[in.CommandID]
	if !ok {
		return nil, errorf(codeInvalidCommandID, "command %q does not exist", in.CommandID)
	}
	for _, id := range in.InstanceIds {
		if !slices.Contains(cmd.instanceIDs, id) {
			return nil, errorf(codeInvalidInstanceID, "instance %s is not a target of command %s", id, cmd.id)
		}
	}
	for _, inv := range cmd.invocations {
		if isTerminal(inv.status) || (len(in.InstanceIds) > 0 && !slices.Contains(in.InstanceIds, inv.inst.ID)) {
			continue
		}
		cmd.cancelRequested = true
		inv.cancel(errCancelled)
		s.log.Info("cancelling invocation", zap.String("command", cmd.id), zap.String("instance", inv.inst.ID), zap.String("node", inv.inst.Node))
	}
	return &cancelCommandOutput{}, nil
}

// terminate marks an instance terminated and stops its unfinished
// invocations. It reports how many it stopped and whether the instance is
// in the mapping.
func (s *server) terminate(id string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.cfg.instances[id]
	if !ok {
		return 0, false
	}
	inst.terminated = true
	stopped := 0
	for _, cmd := range s.commands {
		for _, inv := range cmd.invocations {
			if inv.inst == inst && !isTerminal(inv.status) {
				inv.cancel(errTerminated)
				stopped++
			}
		}
	}
	s.log.Info("instance terminated", zap.String("instance", id), zap.String("node", inst.Node), zap.Int("stopped", stopped))
	return stopped, true
}

// start undoes terminate: in the lab a node's next instance reuses its id.
func (s *server) start(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.cfg.instances[id]
	if ok {
		inst.terminated = false
		s.log.Info("instance started", zap.String("instance", id), zap.String("node", inst.Node))
	}
	return ok
}
