package main

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

const (
	defaultDocumentVersion = "$DEFAULT"
	// defaultDeliveryTimeout is SendCommand's TimeoutSeconds default. It
	// only sets ExpiresAfter: delivery to a lab node is immediate.
	defaultDeliveryTimeout = 3600
	// pluginOutputLimit is how much of the combined output CommandPlugin
	// Output carries in ListCommandInvocations (SSM: first 2,500 chars).
	pluginOutputLimit = 2500
	// pluginErrorSeparator is how the agent joins stdout and stderr in a
	// plugin's Output.
	pluginErrorSeparator = "\n----------ERROR-------\n"
	maxResultsLimit      = 50
)

// command is one SendCommand. Immutable after creation except
// cancelRequested, which server.mu guards.
type command struct {
	id              string
	documentName    string
	documentVersion string
	comment         string
	params          map[string][]string // as sent, like SSM echoes them
	instanceIDs     []string
	requested       time.Time
	timeoutSeconds  int32
	maxConcurrency  string
	maxErrors       string
	invocations     []*invocation // in InstanceIds order
	cancelRequested bool
}

// aggregate derives the command status and counts from its invocations.
// MaxErrors is echoed but not applied: any error fails the command, as
// with SSM's default MaxErrors of 0.
func (c *command) aggregate() (status string, completed, errs int) {
	counts := map[string]int{}
	for _, inv := range c.invocations {
		counts[inv.status]++
		if isTerminal(inv.status) {
			completed++
		}
		if (inv.status == statusFailed && inv.details != detailsUndeliverable) || inv.status == statusTimedOut {
			errs++
		}
	}
	switch {
	case completed < len(c.invocations) && c.cancelRequested:
		return statusCancelling, completed, errs
	case counts[statusPending] == len(c.invocations):
		return statusPending, completed, errs
	case completed < len(c.invocations):
		return statusInProgress, completed, errs
	}
	for _, s := range []string{statusFailed, statusTimedOut, statusCancelled} {
		if counts[s] > 0 {
			return s, completed, errs
		}
	}
	return statusSuccess, completed, errs
}

// json snapshots the command; callers hold server.mu.
func (c *command) json(region string) commandJSON {
	status, completed, errs := c.aggregate()
	details := status
	if status == statusTimedOut {
		details = detailsExecutionTimedOut
	}
	return commandJSON{
		CommandID:         c.id,
		DocumentName:      c.documentName,
		DocumentVersion:   c.documentVersion,
		Comment:           c.comment,
		ExpiresAfter:      epochTime(c.requested.Add(time.Duration(c.timeoutSeconds) * time.Second)),
		Parameters:        c.params,
		InstanceIDs:       c.instanceIDs,
		Targets:           []json.RawMessage{},
		RequestedDateTime: epochTime(c.requested),
		Status:            status,
		StatusDetails:     details,
		OutputS3Region:    region,
		MaxConcurrency:    c.maxConcurrency,
		MaxErrors:         c.maxErrors,
		TargetCount:       len(c.invocations),
		CompletedCount:    completed,
		ErrorCount:        errs,
		TimeoutSeconds:    c.timeoutSeconds,
	}
}

// json snapshots the invocation; callers hold server.mu.
func (inv *invocation) json(details bool) commandInvocationJSON {
	out := commandInvocationJSON{
		CommandID:         inv.cmd.id,
		InstanceID:        inv.inst.ID,
		Comment:           inv.cmd.comment,
		DocumentName:      inv.cmd.documentName,
		DocumentVersion:   inv.cmd.documentVersion,
		RequestedDateTime: epochTime(inv.cmd.requested),
		Status:            inv.status,
		StatusDetails:     inv.details,
		CommandPlugins:    []commandPluginJSON{},
	}
	if details {
		for _, p := range inv.plugins {
			out.CommandPlugins = append(out.CommandPlugins, p.json())
		}
	}
	return out
}

func (p *pluginRun) json() commandPluginJSON {
	return commandPluginJSON{
		Name:                   p.step.name,
		Status:                 p.status,
		StatusDetails:          p.details,
		ResponseCode:           p.code,
		ResponseStartDateTime:  epochTime(p.start),
		ResponseFinishDateTime: epochTime(p.end),
		Output:                 p.output(),
	}
}

// output is the agent's combined stdout/stderr summary; like the agent it
// is only reported once the step has ended.
func (p *pluginRun) output() string {
	if !isTerminal(p.status) {
		return ""
	}
	out := p.stdout
	if p.stderr != "" {
		out += pluginErrorSeparator + p.stderr
	}
	return truncateChars(out, pluginOutputLimit)
}

// invocationOutput is GetCommandInvocation's view of one step.
func invocationOutput(inv *invocation, p *pluginRun) getCommandInvocationOutput {
	out := getCommandInvocationOutput{
		CommandID:              inv.cmd.id,
		InstanceID:             inv.inst.ID,
		Comment:                inv.cmd.comment,
		DocumentName:           inv.cmd.documentName,
		DocumentVersion:        inv.cmd.documentVersion,
		PluginName:             p.step.name,
		ResponseCode:           p.code,
		ExecutionStartDateTime: stringTime(p.start),
		ExecutionEndDateTime:   stringTime(p.end),
		Status:                 p.status,
		StatusDetails:          p.details,
	}
	if !p.start.IsZero() && !p.end.IsZero() {
		out.ExecutionElapsedTime = isoDuration(p.end.Sub(p.start))
	}
	// SSM leaves the content empty until the step has ended.
	if isTerminal(p.status) {
		out.StandardOutputContent, out.StandardErrorContent = p.stdout, p.stderr
	}
	return out
}

// page returns up to max items starting at the one whose key the token
// names, and the token for the rest. Tokens name an item rather than an
// offset so that newer commands, which list first, do not shift pages.
func page[T any](items []T, key func(T) string, token string, maxResults *int32) ([]T, string, error) {
	limit := maxResultsLimit
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > maxResultsLimit {
			return nil, "", errorf(codeValidation, "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and %d", *maxResults, maxResultsLimit)
		}
		limit = int(*maxResults)
	}
	start := 0
	if token != "" {
		start = indexOfToken(items, key, token)
		if start < 0 {
			return nil, "", errorf(codeInvalidNextToken, "the NextToken is not valid")
		}
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(key(items[end])))
	}
	return items[start:end], next, nil
}

func indexOfToken[T any](items []T, key func(T) string, token string) int {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return -1
	}
	for i, it := range items {
		if key(it) == string(raw) {
			return i
		}
	}
	return -1
}
