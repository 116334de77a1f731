package event

import (
	"fmt"
	"regexp"
)

// commandStatus parses "EC2 Command Invocation Status-change Notification":
// progress of the SSM command that runs the agent on one instance.
type commandStatus struct{}

var (
	commandRe  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	documentRe = regexp.MustCompile(`^[a-zA-Z0-9_.:/-]{3,128}$`)
)

// Invocation statuses SSM reports; the terminal ones end a rescue's upload.
var invocationStatuses = map[string]bool{
	"Pending": false, "InProgress": false, "Delayed": false,
	"Success": true, "Cancelled": true, "TimedOut": true, "Failed": true, "Cancelling": false,
	"Undeliverable": true, "Terminated": true, "DeliveryTimedOut": true, "ExecutionTimedOut": true,
}

// TerminalStatus reports whether an SSM invocation status is final.
func TerminalStatus(s string) bool { return invocationStatuses[s] }

func (commandStatus) parse(env *Envelope, e *Event) error {
	var d struct {
		CommandID    string `json:"command-id"`
		DocumentName string `json:"document-name"`
		InstanceID   string `json:"instance-id"`
		Status       string `json:"status"`
	}
	if err := decodeDetail(env, &d); err != nil {
		return err
	}
	if !commandRe.MatchString(d.CommandID) {
		return &FieldError{Field: "detail.command-id", Msg: fmt.Sprintf("%q is not an SSM command id", truncate(d.CommandID, 40))}
	}
	if !documentRe.MatchString(d.DocumentName) {
		return &FieldError{Field: "detail.document-name", Msg: fmt.Sprintf("%q is not an SSM document name", truncate(d.DocumentName, 40))}
	}
	id, err := instance(d.InstanceID)
	if err != nil {
		return err
	}
	if _, ok := invocationStatuses[d.Status]; !ok {
		return &FieldError{Field: "detail.status", Msg: fmt.Sprintf("%q is not an SSM invocation status", truncate(d.Status, 40))}
	}
	e.Kind, e.Instance, e.Command, e.Document, e.Status = CommandStatus, id, d.CommandID, d.DocumentName, d.Status
	return nil
}
