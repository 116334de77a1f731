// Package event parses the EventBridge envelopes that reach the interruption
// queue into typed events. Each detail-type has its own parser in its own
// file; the registry below routes an envelope to the parser for its source
// and detail-type.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Kind says what happened.
type Kind string

// The kinds spotrescue acts on.
const (
	SpotInterruption Kind = "spot_interruption"
	Rebalance        Kind = "rebalance_recommendation"
	StateChange      Kind = "state_change"
	CommandStatus    Kind = "command_status"
	ScheduledChange  Kind = "scheduled_change" // AWS Health: EC2 retirement, stop or maintenance
)

// Event is one parsed notification.
type Event struct {
	ID       string
	Kind     Kind
	Time     time.Time
	Region   string
	Account  string
	Instance string // EC2 instance the event is about
	Drill    bool   // injected by `spotrescue simulate`, not by EC2

	Action string // SpotInterruption: terminate, stop or hibernate
	State  string // StateChange: pending, running, shutting-down, terminated, stopping, stopped

	Command  string // CommandStatus: SSM command id
	Document string // CommandStatus: SSM document name
	Status   string // CommandStatus: invocation status

	// ScheduledChange: every instance the event names (Instance is the
	// first), the Health event type code, and when the change happens.
	Instances []string
	Code      string
	Scheduled time.Time
}

// Envelope is the EventBridge event as delivered to an SQS target.
type Envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
	// Drill marks an event injected by `spotrescue simulate`. EventBridge
	// never sets it.
	Drill bool `json:"spotrescue-drill,omitempty"`
}

// parser turns one detail-type's detail into an Event.
type parser interface {
	parse(env *Envelope, e *Event) error
}

type route struct{ source, detailType string }

var parsers = map[route]parser{
	{"aws.ec2", "EC2 Spot Instance Interruption Warning"}:            spotWarning{},
	{"aws.ec2", "EC2 Instance Rebalance Recommendation"}:             rebalance{},
	{"aws.ec2", "EC2 Instance State-change Notification"}:            stateChange{},
	{"aws.ssm", "EC2 Command Invocation Status-change Notification"}: commandStatus{},
	{"aws.health", "AWS Health Event"}:                               scheduledChange{},
}

// ErrUnsupported marks a well-formed envelope of a kind spotrescue does not
// act on; the caller counts and deletes it.
var ErrUnsupported = errors.New("unsupported event")

// MaxBody is the largest message accepted; SQS itself caps bodies at 256 KiB.
const MaxBody = 256 << 10

// maxID bounds an event id. EventBridge's are UUIDs; the id is copied into
// every record and log line about the event, and shown by `spotrescue jobs`.
const maxID = 128

// validID: short, and nothing a terminal would act on or hide.
func validID(id string) bool {
	if len(id) > maxID || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// FieldError names the field that made an envelope unusable.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// Parse decodes an SQS message body. Errors are either ErrUnsupported
// (wrapped) or a *FieldError saying which field is wrong.
func Parse(body []byte) (Event, error) {
	if len(body) > MaxBody {
		return Event{}, &FieldError{Field: "body", Msg: fmt.Sprintf("%d bytes exceeds %d", len(body), MaxBody)}
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, &FieldError{Field: "body", Msg: "not an EventBridge JSON envelope: " + err.Error()}
	}
	return ParseEnvelope(&env)
}

// ParseEnvelope validates the common fields and hands the detail to the
// parser for the envelope's kind.
func ParseEnvelope(env *Envelope) (Event, error) {
	// Without these it is not an EventBridge event at all: evidence for
	// the DLQ, not an event of some other kind to delete.
	if env.Source == "" {
		return Event{}, &FieldError{Field: "source", Msg: "missing"}
	}
	if env.DetailType == "" {
		return Event{}, &FieldError{Field: "detail-type", Msg: "missing"}
	}
	p, ok := parsers[route{env.Source, env.DetailType}]
	if !ok {
		return Event{}, fmt.Errorf("%w: source %q detail-type %q", ErrUnsupported, env.Source, env.DetailType)
	}
	e := Event{ID: env.ID, Region: env.Region, Account: env.Account, Drill: env.Drill}
	if env.ID == "" {
		return Event{}, &FieldError{Field: "id", Msg: "missing"}
	}
	if !validID(env.ID) {
		return Event{}, &FieldError{Field: "id", Msg: fmt.Sprintf("%q is not an event id: want at most %d printable characters", truncate(env.ID, 40), maxID)}
	}
	t, err := time.Parse(time.RFC3339, env.Time)
	if err != nil {
		return Event{}, &FieldError{Field: "time", Msg: fmt.Sprintf("%q is not an RFC 3339 time", env.Time)}
	}
	e.Time = t
	if len(env.Detail) == 0 || env.Detail[0] != '{' {
		return Event{}, &FieldError{Field: "detail", Msg: "missing or not an object"}
	}
	if err := p.parse(env, &e); err != nil {
		return Event{}, err
	}
	return e, nil
}

// decodeDetail unmarshals the detail object into v, naming the field on error.
func decodeDetail(env *Envelope, v any) error {
	if err := json.Unmarshal(env.Detail, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &FieldError{Field: "detail." + te.Field, Msg: fmt.Sprintf("expected %s, got %s", te.Type, te.Value)}
		}
		return &FieldError{Field: "detail", Msg: err.Error()}
	}
	return nil
}

// instance checks and returns the instance id from the detail.
func instance(id string) (string, error) {
	if !naming.ValidInstance(id) {
		return "", &FieldError{Field: "detail.instance-id", Msg: fmt.Sprintf("%q is not an EC2 instance id", truncate(id, 40))}
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
