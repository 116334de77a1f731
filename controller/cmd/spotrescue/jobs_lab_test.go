//go:build lab

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// jobsTable fills a fresh state table with records of a few jobs.
func jobsTable(t *testing.T) string {
	l := lab.Get(t)
	ctx := context.Background()
	name := fmt.Sprintf("jobs-cli-%d", time.Now().UnixNano())
	if err := state.CreateTable(ctx, l.DynamoDB(), name); err != nil {
		t.Fatal(err)
	}
	s := state.New(l.DynamoDB(), name)
	now := time.Now().UTC()
	add := func(job string, run int, user string, outcome state.Outcome, ago time.Duration) {
		r := &state.Record{Key: state.Key{Cluster: "lab", JobID: job, Run: run}, Phase: state.Done, User: user, Outcome: outcome,
			URI: "s3://spotrescue-lab/spotrescue/lab/" + job + "/run-" + fmt.Sprint(run) + "/", Bytes: 3 << 20, Files: 4, Requeue: "requeued",
			Nodes: []state.Node{{Name: "compute-1", Instance: "i-0c0ffee0000000001", Interrupted: true, Complete: outcome == state.OutcomeComplete}},
			Times: state.Times{Detected: now.Add(-ago), Finished: now.Add(-ago + 40*time.Second)}}
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	add("300", 0, "alice", state.OutcomeComplete, 3*time.Hour)
	add("300", 1, "alice", state.OutcomePartial, 2*time.Hour)
	add("301", 0, "bob", state.OutcomeComplete, time.Hour)
	add("302", 0, "bob", state.OutcomeFailed, 10*24*time.Hour)
	return name
}

func TestJobsListAndShow(t *testing.T) {
	table := jobsTable(t)
	out, err := runCLI(t, "jobs", "list", "--state-table", table, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs []struct {
			Job     string
			Run     int
			Outcome string
		}
	}
	json.Unmarshal([]byte(out), &doc)
	var got []string
	for _, r := range doc.Runs {
		got = append(got, fmt.Sprintf("%s/%d", r.Job, r.Run))
	}
	// Newest first; 302 is older than the default 7 days.
	if strings.Join(got, " ") != "301/0 300/1 300/0" {
		t.Errorf("list = %v", got)
	}
	out, _ = runCLI(t, "jobs", "list", "--state-table", table, "--user", "alice", "--outcome", "partial")
	if !strings.Contains(out, "300  1") || strings.Contains(out, "301") {
		t.Errorf("filtered table:\n%s", out)
	}
	out, _ = runCLI(t, "jobs", "list", "--state-table", table, "--since", "720h", "-o", "yaml")
	if !strings.Contains(out, "job: \"302\"") {
		t.Errorf("yaml:\n%s", out)
	}
	out, err = runCLI(t, "jobs", "show", "300", "--state-table", table)
	if err != nil || !strings.Contains(out, "job 300 run 0") || !strings.Contains(out, "job 300 run 1") || !strings.Contains(out, "s3://spotrescue-lab/spotrescue/lab/300/run-1/") || !strings.Contains(out, "3.0 MiB in 4 files") {
		t.Errorf("show: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "jobs", "show", "999", "--state-table", table); err == nil || !strings.Contains(err.Error(), "job 999 has no rescue records") {
		t.Errorf("unknown job: %v", err)
	}
	if _, err := runCLI(t, "jobs", "list", "--state-table", "no-such-table"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing table: %v", err)
	}
}
