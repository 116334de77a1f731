package event

import (
	"fmt"
	"regexp"
	"time"
)

// scheduledChange parses "AWS Health Event" of the scheduledChange category
// for EC2: an instance retirement, stop or maintenance AWS has scheduled,
// usually days ahead, for one or more instances. Health events of other
// services or categories are well-formed but not ours (ErrUnsupported).
type scheduledChange struct{}

// healthTime is the layout of a Health event's startTime ("Sat, 05 Jun
// 2016 15:10:09 GMT"), unlike the envelope's RFC 3339.
const healthTime = time.RFC1123

// maxAffected bounds the instances one event may name: Health batches
// them, and each is a node-table lookup and a drain.
const maxAffected = 1000

var eventTypeCodeRe = regexp.MustCompile(`^[A-Z0-9_]{1,100}$`)

func (scheduledChange) parse(env *Envelope, e *Event) error {
	var d struct {
		Service           string `json:"service"`
		EventTypeCode     string `json:"eventTypeCode"`
		EventTypeCategory string `json:"eventTypeCategory"`
		StartTime         string `json:"startTime"`
		AffectedEntities  []struct {
			EntityValue string `json:"entityValue"`
		} `json:"affectedEntities"`
	}
	if err := decodeDetail(env, &d); err != nil {
		return err
	}
	if d.Service != "EC2" || d.EventTypeCategory != "scheduledChange" {
		return fmt.Errorf("%w: AWS Health %q event of service %q", ErrUnsupported, truncate(d.EventTypeCategory, 40), truncate(d.Service, 40))
	}
	if !eventTypeCodeRe.MatchString(d.EventTypeCode) {
		return &FieldError{Field: "detail.eventTypeCode", Msg: fmt.Sprintf("%q is not an AWS Health event type code", truncate(d.EventTypeCode, 40))}
	}
	start, err := time.Parse(healthTime, d.StartTime)
	if err != nil {
		return &FieldError{Field: "detail.startTime", Msg: fmt.Sprintf("%q is not a time like %q", truncate(d.StartTime, 40), healthTime)}
	}
	if len(d.AffectedEntities) == 0 || len(d.AffectedEntities) > maxAffected {
		return &FieldError{Field: "detail.affectedEntities", Msg: fmt.Sprintf("%d instances; want 1 to %d", len(d.AffectedEntities), maxAffected)}
	}
	seen := map[string]bool{}
	for i, a := range d.AffectedEntities {
		if _, err := instance(a.EntityValue); err != nil {
			return &FieldError{Field: fmt.Sprintf("detail.affectedEntities[%d].entityValue", i), Msg: fmt.Sprintf("%q is not an EC2 instance id", truncate(a.EntityValue, 40))}
		}
		if !seen[a.EntityValue] {
			seen[a.EntityValue] = true
			e.Instances = append(e.Instances, a.EntityValue)
		}
	}
	e.Kind, e.Instance, e.Code, e.Scheduled = ScheduledChange, e.Instances[0], d.EventTypeCode, start.UTC()
	return nil
}
