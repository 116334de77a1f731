package event

import "fmt"

// stateChange parses "EC2 Instance State-change Notification". Only the
// states that end an instance's life matter to a rescue in flight.
type stateChange struct{}

var instanceStates = map[string]bool{
	"pending": true, "running": true, "shutting-down": true, "terminated": true, "stopping": true, "stopped": true,
}

func (stateChange) parse(env *Envelope, e *Event) error {
	var d struct {
		InstanceID string `json:"instance-id"`
		State      string `json:"state"`
	}
	if err := decodeDetail(env, &d); err != nil {
		return err
	}
	id, err := instance(d.InstanceID)
	if err != nil {
		return err
	}
	if !instanceStates[d.State] {
		return &FieldError{Field: "detail.state", Msg: fmt.Sprintf("%q is not an EC2 instance state", truncate(d.State, 40))}
	}
	e.Kind, e.Instance, e.State = StateChange, id, d.State
	return nil
}

// Gone reports whether the instance (and its instance store) is going away.
func (e Event) Gone() bool {
	return e.Kind == StateChange && (e.State == "shutting-down" || e.State == "terminated" || e.State == "stopping" || e.State == "stopped")
}
