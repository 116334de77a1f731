package event

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

var updateCorpus = flag.Bool("update-corpus", false, "write the fixtures missing from testdata/fuzz as seeds")

// TestFuzzCorpusHoldsTheFixtures: the seeds of FuzzParse, committed in
// testdata/fuzz/FuzzParse, start from every fixture, next to hostile bodies.
func TestFuzzCorpusHoldsTheFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if len(files) < 4 {
		t.Fatalf("%d fixtures", len(files))
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		entry := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		seed := filepath.Join("testdata", "fuzz", "FuzzParse", filepath.Base(name))
		if have, err := os.ReadFile(seed); err == nil && string(have) == entry {
			continue
		}
		if !*updateCorpus {
			t.Errorf("%s is not the seed of %s: go test ./controller/event -run TestFuzzCorpus -update-corpus", seed, name)
			continue
		}
		if err := os.WriteFile(seed, []byte(entry), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParse: whatever the queue delivers, Parse either returns an event the
// controller can act on safely or says why not, and never panics.
//   - An accepted event names a valid instance id (the only field that
//     reaches Slurm, DynamoDB keys and plan file names), a known kind with
//     its kind's fields, and a short printable id.
//   - A refused message is ErrUnsupported (counted and deleted) or a
//     *FieldError naming the field (left for the DLQ), and no event.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Parse(body)
		if err != nil {
			var fe *FieldError
			switch {
			case errors.Is(err, ErrUnsupported):
			case errors.As(err, &fe):
				if fe.Field == "" || fe.Msg == "" {
					t.Fatalf("field error without field or message: %#v", fe)
				}
			default:
				t.Fatalf("error %v is neither ErrUnsupported nor a FieldError", err)
			}
			if !reflect.DeepEqual(e, Event{}) {
				t.Fatalf("event %+v returned with error %v", e, err)
			}
			return
		}
		if !naming.ValidInstance(e.Instance) {
			t.Fatalf("accepted instance id %q", e.Instance)
		}
		if !validID(e.ID) || e.ID == "" {
			t.Fatalf("accepted event id %q", e.ID)
		}
		switch e.Kind {
		case SpotInterruption:
			if e.Action != "terminate" && e.Action != "stop" && e.Action != "hibernate" {
				t.Fatalf("action %q", e.Action)
			}
		case Rebalance:
		case StateChange:
			if !instanceStates[e.State] {
				t.Fatalf("state %q", e.State)
			}
		case CommandStatus:
			if !commandRe.MatchString(e.Command) || !documentRe.MatchString(e.Document) {
				t.Fatalf("command %q document %q", e.Command, e.Document)
			}
			if _, ok := invocationStatuses[e.Status]; !ok {
				t.Fatalf("status %q", e.Status)
			}
		case ScheduledChange:
			if len(e.Instances) == 0 || len(e.Instances) > maxAffected || e.Instances[0] != e.Instance || !eventTypeCodeRe.MatchString(e.Code) || e.Scheduled.IsZero() {
				t.Fatalf("scheduled change %+v", e)
			}
			for _, id := range e.Instances {
				if !naming.ValidInstance(id) {
					t.Fatalf("accepted affected instance id %q", id)
				}
			}
		default:
			t.Fatalf("kind %q", e.Kind)
		}
		// The same body parses the same way again.
		if again, err := Parse(body); err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("second parse: %+v, %v", again, err)
		}
	})
}
