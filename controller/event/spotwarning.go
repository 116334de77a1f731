package event

import "fmt"

// spotWarning parses "EC2 Spot Instance Interruption Warning": EC2 reclaims
// the instance about two minutes after the event's time.
type spotWarning struct{}

func (spotWarning) parse(env *Envelope, e *Event) error {
	var d struct {
		InstanceID     string `json:"instance-id"`
		InstanceAction string `json:"instance-action"`
	}
	if err := decodeDetail(env, &d); err != nil {
		return err
	}
	id, err := instance(d.InstanceID)
	if err != nil {
		return err
	}
	switch d.InstanceAction {
	case "terminate", "stop", "hibernate":
	default:
		return &FieldError{Field: "detail.instance-action", Msg: fmt.Sprintf("%q is not terminate, stop or hibernate", truncate(d.InstanceAction, 40))}
	}
	e.Kind, e.Instance, e.Action = SpotInterruption, id, d.InstanceAction
	return nil
}
