package event

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFixtures(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	cases := []struct {
		file string
		want Event
	}{
		{"spot-interruption-warning.json", Event{ID: "1e5527d7-bb36-4607-3370-4164db56a40e", Kind: SpotInterruption, Time: at("2026-11-20T05:12:58Z"), Region: "ap-northeast-1", Account: "123456789012", Instance: "i-0b662ef9931388ba0", Action: "terminate"}},
		{"rebalance-recommendation.json", Event{ID: "9d6a2c1e-0f3b-4a57-8d5e-2b1c7e4f6a90", Kind: Rebalance, Time: at("2026-11-20T05:02:11Z"), Region: "ap-northeast-1", Account: "123456789012", Instance: "i-0b662ef9931388ba0"}},
		{"instance-state-change-terminated.json", Event{ID: "7bf73129-1428-4cd3-a780-95db273d1602", Kind: StateChange, Time: at("2026-11-20T05:15:02Z"), Region: "ap-northeast-1", Account: "123456789012", Instance: "i-0b662ef9931388ba0", State: "terminated"}},
		{"health-scheduled-change.json", Event{ID: "a7c21f4e-58d2-4c1b-9a3e-0e6f2b7d9c41", Kind: ScheduledChange, Time: at("2026-11-20T05:12:58Z"), Region: "ap-northeast-1", Account: "123456789012", Instance: "i-0b662ef9931388ba0",
			Instances: []string{"i-0b662ef9931388ba0", "i-0c0ffee0000000002"}, Code: "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", Scheduled: at("2026-12-03T09:00:00Z")}},
		{"ssm-command-invocation-status.json", Event{ID: "4780e1b8-f56b-4de5-95f2-95db1b2d1e0b", Kind: CommandStatus, Time: at("2026-11-20T05:13:40Z"), Region: "ap-northeast-1", Account: "123456789012", Instance: "i-0b662ef9931388ba0", Command: "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b", Document: "SpotRescue-Rescue", Status: "Success"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Parse(fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// warning is the spot warning fixture with one substitution applied.
func warning(t *testing.T, old, new string) []byte {
	b := string(fixture(t, "spot-interruption-warning.json"))
	if !strings.Contains(b, old) {
		t.Fatalf("fixture has no %q", old)
	}
	return []byte(strings.Replace(b, old, new, 1))
}

func TestBadInputNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		body  []byte
		field string
	}{
		{"not json", []byte("hello"), "body"},
		{"not an envelope", []byte(`{"malformed": 1}`), "source"},
		{"no detail-type", []byte(`{"source": "aws.ec2", "id": "x"}`), "detail-type"},
		{"huge", []byte(`{"x":"` + strings.Repeat("a", MaxBody) + `"}`), "body"},
		{"missing id", warning(t, `"id": "1e5527d7-bb36-4607-3370-4164db56a40e",`, ""), "id"},
		{"bad time", warning(t, `2026-11-20T05:12:58Z`, `yesterday`), "time"},
		{"detail not object", warning(t, `"detail": {`, `"detail": "x", "d": {`), "detail"},
		{"instance with shell", warning(t, `"instance-id": "i-0b662ef9931388ba0"`, `"instance-id": "i-0b662ef9; rm -rf /"`), "detail.instance-id"},
		{"instance with path", warning(t, `"instance-id": "i-0b662ef9931388ba0"`, `"instance-id": "../../etc"`), "detail.instance-id"},
		{"instance wrong type", warning(t, `"instance-id": "i-0b662ef9931388ba0"`, `"instance-id": 42`), "detail.instance-id"},
		{"unknown action", warning(t, `"instance-action": "terminate"`, `"instance-action": "explode"`), "detail.instance-action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.body)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

func TestUnsupportedKinds(t *testing.T) {
	for _, body := range [][]byte{
		warning(t, `"EC2 Spot Instance Interruption Warning"`, `"EC2 Spot Instance Request Fulfillment"`),
		warning(t, `"source": "aws.ec2"`, `"source": "custom.app"`),
	} {
		if _, err := Parse(body); !errors.Is(err, ErrUnsupported) {
			t.Errorf("err = %v, want ErrUnsupported", err)
		}
	}
}

func TestOldInstanceIDsAndDrills(t *testing.T) {
	e, err := Parse(warning(t, `"region": "ap-northeast-1",`, `"region": "ap-northeast-1", "spotrescue-drill": true,`))
	if err != nil || !e.Drill {
		t.Fatalf("drill: %+v, %v", e, err)
	}
	e, err = Parse(warning(t, `"instance-id": "i-0b662ef9931388ba0"`, `"instance-id": "i-abcd1234"`))
	if err != nil || e.Instance != "i-abcd1234" {
		t.Fatalf("8-digit id: %+v, %v", e, err)
	}
}

func TestGoneAndTerminalStatus(t *testing.T) {
	for state, gone := range map[string]bool{"terminated": true, "shutting-down": true, "stopped": true, "running": false, "pending": false} {
		if got := (Event{Kind: StateChange, State: state}).Gone(); got != gone {
			t.Errorf("Gone(%s) = %v", state, got)
		}
	}
	if !TerminalStatus("Success") || TerminalStatus("InProgress") || TerminalStatus("bogus") {
		t.Error("TerminalStatus")
	}
}
