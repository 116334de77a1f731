package node

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/rescue"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// The Prolog of a heterogeneous job's component sees the component's own
// id; the job is known by its leader's, and the component by its offset.
func TestJobFromEnv(t *testing.T) {
	for name, tc := range map[string]struct {
		vars map[string]string
		want Job
	}{
		"a first run": {
			vars: map[string]string{"SLURM_JOB_ID": "41", "SLURM_JOB_UID": "1001", "SLURM_JOB_GID": "1002", "SLURM_JOB_USER": "alice",
				"SLURMD_NODENAME": "c-1", "SLURM_JOB_NODELIST": "c-[1-2]"},
			want: Job{ID: "41", UID: 1001, GID: 1002, User: "alice", Node: "c-1", NodeList: "c-[1-2]"},
		},
		"a requeued run, as the Prolog sees it": {
			vars: map[string]string{"SLURM_JOB_ID": "41", "SLURM_JOB_UID": "1001", "SLURM_JOB_GID": "1002", "SLURM_JOB_USER": "alice",
				"SLURMD_NODENAME": "c-3", "SLURM_NODELIST": "c-3", "SLURM_RESTART_COUNT": "2"},
			want: Job{ID: "41", UID: 1001, GID: 1002, User: "alice", Node: "c-3", NodeList: "c-3", Restarts: 2},
		},
		"the second component of a heterogeneous job": {
			vars: map[string]string{"SLURM_JOB_ID": "52", "SLURM_HET_JOB_ID": "50", "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0",
				"USER": "root", "SLURMD_NODENAME": "g-1", "SLURM_JOB_NODELIST": "g-1"},
			want: Job{ID: "50", Group: 2, User: "root", Node: "g-1", NodeList: "g-1"},
		},
		"the leader of a heterogeneous job": {
			vars: map[string]string{"SLURM_JOB_ID": "50", "SLURM_HET_JOB_ID": "50", "SLURM_JOB_GID": "5"},
			want: Job{ID: "50", GID: 5},
		},
		"a heterogeneous id that is not a number is left alone": {
			vars: map[string]string{"SLURM_JOB_ID": "52", "SLURM_HET_JOB_ID": "x", "SLURM_JOB_GID": "5"},
			want: Job{ID: "52", GID: 5},
		},
		"an array task": {
			vars: map[string]string{"SLURM_JOB_ID": "61", "SLURM_ARRAY_JOB_ID": "60", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_GID": "5"},
			want: Job{ID: "61", ArrayJobID: "60", ArrayTaskID: "1", GID: 5},
		},
		"no group id": {
			vars: map[string]string{"SLURM_JOB_ID": "41"},
			want: Job{ID: "41", GID: -1},
		},
	} {
		if got := JobFromEnv(env(tc.vars)); got.ID != tc.want.ID || got.Group != tc.want.Group || got.UID != tc.want.UID || got.GID != tc.want.GID ||
			got.User != tc.want.User || got.Node != tc.want.Node || got.NodeList != tc.want.NodeList || got.Restarts != tc.want.Restarts ||
			got.ArrayJobID != tc.want.ArrayJobID || got.ArrayTaskID != tc.want.ArrayTaskID {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}

// A requeued job gets its data back node for node: the node at rank r of
// component g gets what rank r of component g saved.
func TestPeerOf(t *testing.T) {
	rescued := [][]string{{"old-1", "old-2"}, {"gpu-old-1"}}
	for _, tc := range []struct {
		node, list string
		group      int
		want       string
	}{
		{"new-1", "new-[1-2]", 0, "old-1"},
		{"new-2", "new-[1-2]", 0, "old-2"},
		{"new-3", "new-[1-3]", 0, ""}, // more nodes now than were rescued
		{"gpu-9", "gpu-9", 1, "gpu-old-1"},
		{"x-1", "x-1", 2, ""},          // a component that saved nothing
		{"new-1", "new-[", 0, "old-1"}, // a list we cannot read: the node alone, rank 0
		{"new-5", "new-[1-2]", 0, ""},  // not in its own list
	} {
		if got := PeerOf(Job{Node: tc.node, NodeList: tc.list, Group: tc.group}, rescued); got != tc.want {
			t.Errorf("PeerOf(%s in %s, group %d) = %q, want %q", tc.node, tc.list, tc.group, got, tc.want)
		}
	}
}

func TestWorse(t *testing.T) {
	for _, tc := range []struct{ a, b, want rescue.Status }{
		{rescue.Complete, rescue.Complete, rescue.Complete},
		{rescue.Complete, rescue.Partial, rescue.Partial},
		{rescue.Partial, rescue.Complete, rescue.Partial},
		{rescue.Partial, rescue.Failed, rescue.Failed},
		{rescue.Complete, rescue.Kept, rescue.Complete},
		{rescue.Partial, rescue.NothingHere, rescue.Partial},
	} {
		if got := Worse(tc.a, tc.b); got != tc.want {
			t.Errorf("Worse(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

// The next run of a rescued job sees where its data was saved, from which
// run, and how completely; a job never rescued sees only its scratch dir.
func TestTaskEnvTellsTheNextRun(t *testing.T) {
	root := t.TempDir()
	s := Settings{Cluster: "lab", Bucket: "b", Prefix: "p", Spool: t.TempDir(), ScratchRoot: root,
		PathTemplate: filepath.Join(root, "{user}", "{job_id}"), RestoreTimeout: time.Second}
	job := Job{ID: "77", User: "alice", Node: "c-1", NodeList: "c-1", Restarts: 1}
	var out bytes.Buffer
	if err := TaskEnv(context.Background(), &out, s, job); err != nil {
		t.Fatal(err)
	}
	if want := "export SPOT_RESCUE_SCRATCH=" + filepath.Join(root, "alice", "77") + "\n"; out.String() != want {
		t.Errorf("never rescued:\n%s\nwant\n%s", out.String(), want)
	}
	if err := s.Layout().WriteJobEnv("77", rescue.JobEnv{URI: s.Layout().RunURI("77", 0), Status: rescue.Partial, Run: 0, Nodes: [][]string{{"c-9"}}}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := TaskEnv(context.Background(), &out, s, job); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"export SPOT_RESCUE_URI=s3://b/p/lab/77/run-0/", "export SPOT_RESCUE_STATUS=partial", "export SPOT_RESCUE_RUN=0"} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("rescued: no %q in\n%s", line, out.String())
		}
	}
	if strings.Contains(out.String(), rescue.VarDir) {
		t.Errorf("restore is off, yet:\n%s", out.String())
	}
}

// A resumed run's output starts with what happened, in the batch script's
// output only; a name from the job's tree cannot end a line and start
// another line of the TaskProlog's protocol (an export the task would get).
func TestTaskPrologTellsTheJobsOutput(t *testing.T) {
	at := time.Date(2026, 12, 7, 6, 28, 11, 0, time.UTC)
	saved := &rescue.JobEnv{URI: "s3://b/p/lab/77/run-1/", Status: rescue.Partial, Run: 1, Nodes: [][]string{{"c-9"}}, Time: at}
	m := &rescue.Restored{Dir: "/scratch/alice/77", Status: rescue.Partial, Files: 1200, Bytes: 3 << 20, Skipped: 8,
		Missing: []string{"out/a.bin", "evil\nexport LD_PRELOAD=/tmp/x.so", "c", "d", "e"}}
	var out bytes.Buffer
	tell(&out, Job{ID: "77"}, saved, m, rescue.Partial)
	want := []string{
		"print spotrescue: job 77 resumes from run 1, rescued from c-9, warned at 2026-12-07T06:28:11Z (SPOT_RESCUE_URI=s3://b/p/lab/77/run-1/)",
		"print spotrescue: restored 1200 files (3.0 MiB) into /scratch/alice/77: partial",
		`print spotrescue: partial: 8 entries were not saved: "out/a.bin", "evil\nexport LD_PRELOAD=/tmp/x.so", "c", "d", "e" and 3 more (all listed in the manifest under SPOT_RESCUE_URI)`,
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("told\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}

	out.Reset()
	tell(&out, Job{ID: "77"}, &rescue.JobEnv{URI: saved.URI, Status: rescue.Failed, Run: 1, Nodes: [][]string{{"c-1", "c-2", "c-3", "c-4", "c-5"}}}, nil, rescue.Failed)
	for _, w := range []string{"rescued from c-1, c-2, c-3 and 2 more nodes (", "failed: nothing of run 1 was saved"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("failed rescue: no %q in\n%s", w, out.String())
		}
	}

	// Only the batch script's TaskProlog tells; srun's tasks do not repeat it.
	root := t.TempDir()
	s := Settings{Cluster: "lab", Bucket: "b", Prefix: "p", Spool: t.TempDir(), ScratchRoot: root,
		PathTemplate: filepath.Join(root, "{user}", "{job_id}"), RestoreTimeout: time.Second}
	if err := s.Layout().WriteJobEnv("77", rescue.JobEnv{URI: s.Layout().RunURI("77", 1), Status: rescue.Complete, Run: 1, Nodes: [][]string{{"c-9"}}, Time: at}); err != nil {
		t.Fatal(err)
	}
	for step, tells := range map[string]bool{"": true, "batch": true, "0": false, "3": false} {
		out.Reset()
		if err := TaskEnv(context.Background(), &out, s, Job{ID: "77", User: "alice", Node: "c-1", NodeList: "c-1", Restarts: 2, Step: step}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), "print spotrescue: job 77 resumes from run 1"); got != tells {
			t.Errorf("step %q: told %v, want %v:\n%s", step, got, tells, out.String())
		}
	}
}
