package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Hostile and malformed message bodies, and what Parse makes of each. The
// controller acts on the outcome: a FieldError leaves the message for the
// DLQ, ErrUnsupported deletes it, an event goes on to the checks that need
// the controller's settings (region, expiry, node table), which
// controller/hostile_test.go covers. controller/testdata/HOSTILE.md lists
// both.

const (
	accept      = "accept"
	unsupported = "unsupported"
)

func TestHostileBodies(t *testing.T) {
	w := func(old, new string) []byte { return warning(t, old, new) }
	const inst = `"instance-id": "i-0b662ef9931388ba0"`
	const evTime = `"time": "2026-11-20T05:12:58Z"`
	cases := []struct {
		name string
		body []byte
		want string // accept, unsupported, or the field a FieldError names
		// check, for accepted bodies, says what the event holds.
		check func(e Event) bool
	}{
		// Not JSON, or not an object.
		{"empty body", []byte(""), "body", nil},
		{"truncated JSON", fixture(t, "spot-interruption-warning.json")[:100], "body", nil},
		{"JSON array", []byte(`[{"source":"aws.ec2"}]`), "body", nil},
		{"JSON string", []byte(`"EC2 Spot Instance Interruption Warning"`), "body", nil},
		{"JSON null", []byte(`null`), "source", nil},
		{"empty object", []byte(`{}`), "source", nil},
		{"SNS notification wrapper", []byte(`{"Type":"Notification","MessageId":"x","Message":"{\"source\":\"aws.ec2\"}"}`), "source", nil},
		{"invalid UTF-8 in instance id", w(inst, "\"instance-id\": \"i-0b662ef99313\xff\xfe\""), "detail.instance-id", nil},
		{"body over 256 KiB", []byte(`{"source":"aws.ec2","pad":"` + strings.Repeat("x", MaxBody) + `"}`), "body", nil},
		// Wrong types.
		{"source a number", w(`"source": "aws.ec2"`, `"source": 2`), "body", nil},
		{"time a number", w(evTime, `"time": 1763615578`), "body", nil},
		{"detail a string", w(`"detail": {`, `"detail": "{}", "x": {`), "detail", nil},
		{"detail an array", w(`"detail": {`, `"detail": [], "x": {`), "detail", nil},
		{"instance id a number", w(inst, `"instance-id": 1234567890`), "detail.instance-id", nil},
		{"instance id an object", w(inst, `"instance-id": {"id": "i-0b662ef9931388ba0"}`), "detail.instance-id", nil},
		{"resources not a list", w(`"resources": [`, `"resources": "arn", "x": [`), "body", nil},
		// Missing fields.
		{"no id", w(`"id": "1e5527d7-bb36-4607-3370-4164db56a40e",`, ``), "id", nil},
		{"no time", w(evTime+",", ``), "time", nil},
		{"no detail", w(`"detail": {`, `"x": {`), "detail", nil},
		{"no instance id", w(inst+",", ``), "detail.instance-id", nil},
		{"no action", w(`,
    "instance-action": "terminate"`, ``), "detail.instance-action", nil},
		// Kinds spotrescue does not act on: counted and deleted.
		{"unknown detail-type", w(`"EC2 Spot Instance Interruption Warning"`, `"EC2 Spot Instance Request Fulfillment"`), unsupported, nil},
		{"unknown source", w(`"source": "aws.ec2"`, `"source": "custom.attacker"`), unsupported, nil},
		{"source in capitals", w(`"source": "aws.ec2"`, `"source": "AWS.EC2"`), unsupported, nil},
		{"detail-type with trailing space", w(`"EC2 Spot Instance Interruption Warning"`, `"EC2 Spot Instance Interruption Warning "`), unsupported, nil},
		// Instance ids that would be dangerous in a shell, a path or a key.
		{"instance id with shell", w(inst, `"instance-id": "i-0b662ef9931388ba0; rm -rf /"`), "detail.instance-id", nil},
		{"instance id with command substitution", w(inst, `"instance-id": "i-$(reboot)"`), "detail.instance-id", nil},
		{"instance id with slash", w(inst, `"instance-id": "i-0b662ef9/../../etc"`), "detail.instance-id", nil},
		{"instance id with backslash", w(inst, `"instance-id": "i-0b662ef9\\x"`), "detail.instance-id", nil},
		{"instance id with trailing newline", w(inst, `"instance-id": "i-0b662ef9931388ba0\n"`), "detail.instance-id", nil},
		{"instance id with NUL", w(inst, `"instance-id": "i-0b662ef9931388ba0\u0000"`), "detail.instance-id", nil},
		{"instance id in capitals", w(inst, `"instance-id": "I-0B662EF9931388BA0"`), "detail.instance-id", nil},
		{"instance id with fullwidth digits", w(inst, `"instance-id": "i-０b662ef9931388ba0"`), "detail.instance-id", nil},
		{"instance id of 12 digits", w(inst, `"instance-id": "i-0b662ef99313"`), "detail.instance-id", nil},
		// Event ids that would land in records, logs and terminals.
		{"event id with an escape sequence", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"\u001b]0;owned\u0007"`), "id", nil},
		{"event id with a newline", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"ev\n{\"level\":\"info\"}"`), "id", nil},
		{"event id with a bidi override", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"ev-\u202e1"`), "id", nil},
		{"event id of 129 bytes", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"`+strings.Repeat("e", maxID+1)+`"`), "id", nil},
		{"event id of 128 bytes", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"`+strings.Repeat("e", maxID)+`"`), accept,
			func(e Event) bool { return len(e.ID) == maxID }},
		{"event id in unicode", w(`"1e5527d7-bb36-4607-3370-4164db56a40e"`, `"ünï-✓"`), accept,
			func(e Event) bool { return e.ID == "ünï-✓" }},
		// Times: the parser checks the format only; how old or new an event
		// may be is the controller's decision (see controller/hostile_test.go).
		{"time without zone", w(evTime, `"time": "2026-11-20T05:12:58"`), "time", nil},
		{"time as a date", w(evTime, `"time": "2026-11-20"`), "time", nil},
		{"time of year 1", w(evTime, `"time": "0001-01-01T00:00:00Z"`), accept,
			func(e Event) bool { return e.Time.Year() == 1 }},
		{"time far in the future", w(evTime, `"time": "9999-12-31T23:59:59Z"`), accept,
			func(e Event) bool { return e.Time.Year() == 9999 }},
		{"time with an offset", w(evTime, `"time": "2026-11-20T14:12:58+09:00"`), accept,
			func(e Event) bool { return e.Time.Equal(time.Date(2026, 11, 20, 5, 12, 58, 0, time.UTC)) }},
		// Accepted as they are: the controller decides.
		{"another region", w(`"region": "ap-northeast-1"`, `"region": "us-east-1"`), accept,
			func(e Event) bool { return e.Region == "us-east-1" }},
		{"another account", w(`"account": "123456789012"`, `"account": "999999999999"`), accept,
			func(e Event) bool { return e.Account == "999999999999" }},
		{"no account (a drill)", w(`"account": "123456789012",`, `"spotrescue-drill": true,`), accept,
			func(e Event) bool { return e.Account == "" && e.Drill }},
		{"unknown fields everywhere", w(`"detail": {`, `"zz": {"a": [1, null]}, "detail": {"zz-new": {"x": 1}, `), accept,
			func(e Event) bool { return e.Instance == "i-0b662ef9931388ba0" }},
		{"instance id given twice (last wins)", w(inst, `"instance-id": "i-0123456789abcdef0", `+inst), accept,
			func(e Event) bool { return e.Instance == "i-0b662ef9931388ba0" }},
		{"keys in other case", w(inst, `"Instance-ID": "i-0b662ef9931388ba0"`), accept,
			func(e Event) bool { return e.Instance == "i-0b662ef9931388ba0" }},
		{"resources naming another instance", w(`instance/i-0b662ef9931388ba0`, `instance/i-0123456789abcdef0`), accept,
			func(e Event) bool { return e.Instance == "i-0b662ef9931388ba0" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(tc.body)
			var fe *FieldError
			switch tc.want {
			case accept:
				if err != nil || !naming.ValidInstance(e.Instance) || !tc.check(e) {
					t.Fatalf("got %+v, %v; want it accepted", e, err)
				}
			case unsupported:
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("err = %v, want ErrUnsupported", err)
				}
			default:
				if !errors.As(err, &fe) || fe.Field != tc.want {
					t.Fatalf("err = %v, want a FieldError on %s", err, tc.want)
				}
				if !reflect.DeepEqual(e, Event{}) {
					t.Fatalf("event %+v returned with the error", e)
				}
			}
		})
	}
}

// An AWS Health event names its instances in a list, its time in another
// layout, and comes for every service: each part is checked.
func TestHostileHealthEvents(t *testing.T) {
	base := string(fixture(t, "health-scheduled-change.json"))
	h := func(old, new string) []byte {
		t.Helper()
		if !strings.Contains(base, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return []byte(strings.Replace(base, old, new, 1))
	}
	var many []string
	for i := range maxAffected + 1 {
		many = append(many, fmt.Sprintf(`{"entityValue": "i-%017x"}`, i))
	}
	cases := []struct {
		name string
		body []byte
		want string // unsupported, or the field a FieldError names
	}{
		{"another service", h(`"service": "EC2"`, `"service": "S3"`), unsupported},
		{"an issue, not a scheduled change", h(`"eventTypeCategory": "scheduledChange"`, `"eventTypeCategory": "issue"`), unsupported},
		{"entity with shell", h(`"entityValue": "i-0c0ffee0000000002"`, `"entityValue": "i-0c0ffee0000000002; reboot"`), "detail.affectedEntities[1].entityValue"},
		{"entity a path", h(`"entityValue": "i-0b662ef9931388ba0"`, `"entityValue": "../../i-0b662ef9931388ba0"`), "detail.affectedEntities[0].entityValue"},
		{"entity a number", h(`"entityValue": "i-0c0ffee0000000002"`, `"entityValue": 2`), "detail.affectedEntities.entityValue"},
		{"no entities", h(`"affectedEntities": [`, `"affectedEntities": [], "x": [`), "detail.affectedEntities"},
		{"too many entities", h(`"affectedEntities": [`, `"affectedEntities": [`+strings.Join(many, ",")+`], "x": [`), "detail.affectedEntities"},
		{"start time in RFC 3339", h(`"startTime": "Thu, 03 Dec 2026 09:00:00 GMT"`, `"startTime": "2026-12-03T09:00:00Z"`), "detail.startTime"},
		{"no start time", h(`"startTime": "Thu, 03 Dec 2026 09:00:00 GMT",`, ``), "detail.startTime"},
		{"type code that would reach a drain reason", h(`"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
    "eventTypeCategory"`, `"RETIRE\n\" ; scontrol",
    "eventTypeCategory"`), "detail.eventTypeCode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.body)
			var fe *FieldError
			switch {
			case tc.want == unsupported:
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("err = %v, want unsupported", err)
				}
			case !errors.As(err, &fe) || fe.Field != tc.want:
				t.Errorf("err = %v, want a FieldError on %s", err, tc.want)
			}
		})
	}
	// The same instance twice is acted on once.
	e, err := Parse(h(`"entityValue": "i-0c0ffee0000000002"`, `"entityValue": "i-0b662ef9931388ba0"`))
	if err != nil || !reflect.DeepEqual(e.Instances, []string{"i-0b662ef9931388ba0"}) {
		t.Errorf("duplicate entity: %v, %v", e.Instances, err)
	}
}

// Every kind refuses a bad instance id, not only the warning.
func TestEveryKindChecksTheInstance(t *testing.T) {
	for _, file := range []string{"rebalance-recommendation.json", "instance-state-change-terminated.json", "ssm-command-invocation-status.json"} {
		b := strings.Replace(string(fixture(t, file)), `"i-0b662ef9931388ba0"`, `"../i-0b662ef9931388ba0"`, 1)
		var fe *FieldError
		if _, err := Parse([]byte(b)); !errors.As(err, &fe) || fe.Field != "detail.instance-id" {
			t.Errorf("%s: err = %v, want a FieldError on detail.instance-id", file, err)
		}
	}
	b := strings.Replace(string(fixture(t, "ssm-command-invocation-status.json")), `"SpotRescue-Rescue"`, `"SpotRescue Rescue; id"`, 1)
	var fe *FieldError
	if _, err := Parse([]byte(b)); !errors.As(err, &fe) || fe.Field != "detail.document-name" {
		t.Errorf("document name with shell: err = %v", err)
	}
}
