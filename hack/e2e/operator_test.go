//go:build lab

package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/state"
)

// An admin's drill: `spotrescue simulate --node` drives the whole rescue of
// a real job, the records say drill, and `jobs list` and `jobs show` report
// both rescues.
func TestSimulateThenJobsList(t *testing.T) {
	e := setup(t)
	first, firstNode := e.submit("")
	second, secondNode := e.submit("", "--exclude", firstNode)
	e.startController()
	cli := func(args ...string) string {
		t.Helper()
		cmd := e.Command(filepath.Join(e.Bin, "spotrescue"), append(args, "--state-table", e.table, "--queue-url", e.queueURL)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("spotrescue %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("simulate", "--node", firstNode)
	cli("simulate", "--node", secondNode)
	for _, id := range []string{first, second} {
		if r := e.record(id, 0, state.Done, 90*time.Second); !r.Drill || r.Outcome != state.OutcomeComplete {
			t.Errorf("job %s: drill %v, outcome %s", id, r.Drill, r.Outcome)
		}
		if got := e.JobField(t, id, "Restarts"); got != "1" {
			t.Errorf("job %s restarts %s, want 1", id, got)
		}
	}

	var doc struct {
		Runs []struct {
			Job, Phase, Outcome, URI string
			Drill                    bool
		}
	}
	if err := json.Unmarshal([]byte(cli("jobs", "list", "-o", "json")), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range doc.Runs {
		got = append(got, r.Job+" "+r.Phase+" "+r.Outcome)
		if !r.Drill || !strings.HasSuffix(r.URI, "/"+r.Job+"/run-0/") {
			t.Errorf("run of job %s: drill %v, uri %s", r.Job, r.Drill, r.URI)
		}
	}
	want := []string{second + " Done complete", first + " Done complete"} // newest first
	if !slices.Equal(got, want) {
		t.Errorf("jobs list -o json: %v, want %v", got, want)
	}
	table := cli("jobs", "list")
	for _, id := range []string{first, second} {
		if !strings.Contains(table, id+"  ") || !strings.Contains(table, "Done") {
			t.Errorf("jobs list table lacks job %s:\n%s", id, table)
		}
	}
	if show := cli("jobs", "show", first); !strings.Contains(show, "(drill)") || !strings.Contains(show, "complete") {
		t.Errorf("jobs show %s:\n%s", first, show)
	}
}
