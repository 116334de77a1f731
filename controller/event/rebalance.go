package event

// rebalance parses "EC2 Instance Rebalance Recommendation": the instance is
// at elevated risk of interruption, with no deadline yet.
type rebalance struct{}

func (rebalance) parse(env *Envelope, e *Event) error {
	var d struct {
		InstanceID string `json:"instance-id"`
	}
	if err := decodeDetail(env, &d); err != nil {
		return err
	}
	id, err := instance(d.InstanceID)
	if err != nil {
		return err
	}
	e.Kind, e.Instance = Rebalance, id
	return nil
}
