package rescue

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestScratchDirRefusesPathTricks(t *testing.T) {
	tmpl := "/scratch/{user}/{job_id}"
	got, err := ScratchDir(tmpl, NewScratchVars("42", "alice", "", "", "n1"))
	if err != nil || got != "/scratch/alice/42" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, v := range []ScratchVars{
		NewScratchVars("42", "../root", "", "", "n1"),
		NewScratchVars("42/../../etc", "alice", "", "", "n1"),
		NewScratchVars("42", "a b", "", "", "n1"),
		NewScratchVars("", "alice", "", "", "n1"),
	} {
		if got, err := ScratchDir(tmpl, v); err == nil {
			t.Errorf("%+v expanded to %q", v, got)
		}
	}
	got, err = ScratchDir("/s/{array_job_id}_{array_task_id}/{job_id}", NewScratchVars("7", "u", "", "", "n"))
	if err != nil || got != "/s/none_none/7" {
		t.Fatalf("plain job in an array template: %q, %v", got, err)
	}
}

func TestJobEnvRoundTrip(t *testing.T) {
	l := Layout{Spool: t.TempDir()}
	in := JobEnv{URI: "s3://b/p/c/42/run-1/", Status: "partial", Run: 1, Nodes: [][]string{{"q-dy-c5-1", "q-dy-c5-2"}, {"q-dy-r6-1"}}}
	if err := l.WriteJobEnv("42", in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(l.EnvPath("42"))
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("env file mode %v, %v; want read-only to all, written by root", fi.Mode(), err)
	}
	out, err := l.ReadJobEnv("42")
	if err != nil || out.URI != in.URI || out.Status != in.Status || out.Run != 1 || fmt.Sprint(out.Nodes) != "[[q-dy-c5-1 q-dy-c5-2] [q-dy-r6-1]]" {
		t.Fatalf("read back %+v, %v", out, err)
	}
	if _, err := l.ReadJobEnv("43"); err != ErrNoEnv {
		t.Fatalf("missing env: %v", err)
	}
	for _, bad := range []JobEnv{
		{URI: "s3://b/x\nexport LD_PRELOAD=/evil", Status: "complete"},
		{URI: "s3://b/p/", Status: "complete; id"},
		{URI: "s3://b/p/", Status: "skipped"},
		{URI: "/etc/passwd", Status: "complete"},
		{URI: "s3://b/p/", Status: "complete", Run: -1},
		{URI: "s3://b/p/", Status: "complete", Nodes: [][]string{{"../x"}}},
	} {
		if err := l.WriteJobEnv("44", bad); err == nil {
			t.Errorf("%+v was written", bad)
		}
	}
}

func TestResolveDeadlines(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plan := t0.Add(105 * time.Second) // event + 120 s - 15 s
	d := ResolveDeadlines(plan, 15*time.Second, time.Time{})
	if !d.Soft.Equal(plan) || !d.Hard.Equal(t0.Add(115*time.Second)) {
		t.Errorf("no IMDS: %+v", d)
	}
	// IMDS says the instance goes 30 s earlier than the plan thought.
	d = ResolveDeadlines(plan, 15*time.Second, t0.Add(90*time.Second))
	if !d.Soft.Equal(t0.Add(75*time.Second)) || !d.Hard.Equal(t0.Add(85*time.Second)) {
		t.Errorf("early IMDS: %+v", d)
	}
	// A later IMDS time never extends the plan's deadline.
	d = ResolveDeadlines(plan, 15*time.Second, t0.Add(200*time.Second))
	if !d.Soft.Equal(plan) {
		t.Errorf("late IMDS: %+v", d)
	}
}
