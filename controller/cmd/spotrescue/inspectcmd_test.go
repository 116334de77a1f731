package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/controller/config"
)

// replayBin builds hack/slurmreplay once and installs it as Slurm's
// commands in a bin dir.
func replayBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "scontrol"), "../../../hack/slurmreplay")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build slurmreplay: %v\n%s", err, out)
	}
	for _, name := range config.SlurmCommands {
		if name != "scontrol" {
			os.Symlink("scontrol", filepath.Join(dir, name))
		}
	}
	return dir
}

// fixtures copies one Slurm generation's recorded outputs and adds node
// records for the nodes asked about, cloned from the recorded node (only
// the name differs): the tests are about jobs, not node states.
func fixtures(t *testing.T, version, recordedNode string, nodes ...string) string {
	t.Helper()
	src := filepath.Join("..", "..", "slurm", "testdata", version)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	ext := ".json"
	if version == "22.05" {
		ext = ".txt"
	}
	rec, err := os.ReadFile(filepath.Join(src, "scontrol_show_node_"+recordedNode+ext))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		os.WriteFile(filepath.Join(dst, "scontrol_show_node_"+n+ext), []byte(strings.ReplaceAll(string(rec), recordedNode, n)), 0o644)
	}
	return dst
}

type inspected struct {
	Rescue []struct {
		Display string
		Nodes   []struct{ Node, Scratch string }
	}
	Skip []struct{ Job, Reason string }
}

func inspectJSON(t *testing.T, bin, dir, node string) inspected {
	t.Helper()
	t.Setenv("SLURMREPLAY_DIR", dir)
	t.Setenv(config.EnvConfigPath, "")
	out, err := runCLI(t, "inspect", "node", node, "-o", "json", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
	if err != nil {
		t.Fatalf("inspect %s: %v\n%s", node, err, out)
	}
	var in inspected
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("inspect output %q: %v", out, err)
	}
	return in
}

func (in inspected) summary() string {
	var parts []string
	for _, r := range in.Rescue {
		var nodes []string
		for _, n := range r.Nodes {
			nodes = append(nodes, n.Node)
		}
		parts = append(parts, fmt.Sprintf("rescue %s on %s", r.Display, strings.Join(nodes, ",")))
	}
	for _, s := range in.Skip {
		parts = append(parts, fmt.Sprintf("skip %s (%s)", s.Job, s.Reason))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// Every JSON generation (23.02, 23.11, 24.05 record the same cluster) and
// the text form give the same decisions.
func TestInspectEveryGeneration(t *testing.T) {
	bin := replayBin(t)
	modern := map[string]string{
		"queue1-dy-c5xlarge-1":  "rescue 125 on queue1-dy-c5xlarge-1",
		"queue1-dy-c5xlarge-2":  "rescue 126 on queue1-dy-c5xlarge-2,queue1-dy-c5xlarge-3",
		"queue1-dy-c5xlarge-4":  "rescue 123_4 on queue1-dy-c5xlarge-4; rescue 123_5 on queue1-dy-c5xlarge-4",
		"queue1-dy-c5xlarge-6":  "rescue 130+0 on queue1-dy-c5xlarge-5,queue1-dy-c5xlarge-6",
		"queue1-dy-c5xlarge-7":  "rescue 133 on queue1-dy-c5xlarge-7",
		"queue1-dy-c5xlarge-8":  "rescue 134 on queue1-dy-c5xlarge-8",
		"queue1-dy-c5xlarge-10": "",
		"queue2-st-m5-09":       "skip 140 (interactive job (not submitted with sbatch))",
	}
	for _, version := range []string{"23.02", "23.11", "24.05"} {
		var nodes []string
		for n := range modern {
			nodes = append(nodes, n)
		}
		dir := fixtures(t, version, "queue1-dy-c5xlarge-1", nodes...)
		for node, want := range modern {
			if got := inspectJSON(t, bin, dir, node).summary(); got != want {
				t.Errorf("%s %s:\n got %q\nwant %q", version, node, got, want)
			}
		}
	}
	// 22.05, captured from the lab's real Slurm.
	dir := fixtures(t, "22.05", "compute-1", "compute-2", "compute-3")
	for node, want := range map[string]string{
		"compute-1": "rescue 2 on compute-1; rescue 3 on compute-1,compute-2",
		"compute-4": "rescue 10 on compute-4; rescue 5+0 on compute-3,compute-4",
	} {
		if got := inspectJSON(t, bin, dir, node).summary(); got != want {
			t.Errorf("22.05 %s:\n got %q\nwant %q", node, got, want)
		}
	}
}

func TestInspectShowsScratchAndPrefix(t *testing.T) {
	bin := replayBin(t)
	dir := fixtures(t, "24.05", "queue1-dy-c5xlarge-1")
	in := inspectJSON(t, bin, dir, "queue1-dy-c5xlarge-1")
	if len(in.Rescue) != 1 || in.Rescue[0].Nodes[0].Scratch != "/scratch/125" {
		t.Fatalf("%+v", in)
	}
	t.Setenv("SLURMREPLAY_DIR", dir)
	out, err := runCLI(t, "inspect", "node", "queue1-dy-c5xlarge-1", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
	if err != nil || !strings.Contains(out, "s3://b-1/spotrescue/hpc/125/run-0/queue1-dy-c5xlarge-1/") {
		t.Fatalf("table: %v\n%s", err, out)
	}
}

// Per job, inspect says whether it would be requeued after its rescue, and
// why not (once a --no-requeue job was listed under RESCUE with nothing
// saying it would stay down), in the table and in JSON: the rule is the
// controller's own (controller.Requeueable).
func TestInspectSaysWhetherJobsAreRequeued(t *testing.T) {
	bin := replayBin(t)
	type want struct {
		requeue bool
		note    string
	}
	check := func(version, recorded, node string, jobs map[string]want) {
		t.Helper()
		dir := fixtures(t, version, recorded, node)
		t.Setenv("SLURMREPLAY_DIR", dir)
		t.Setenv(config.EnvConfigPath, "")
		out, err := runCLI(t, "inspect", "node", node, "-o", "json", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
		if err != nil {
			t.Fatalf("%s %s: %v", version, node, err)
		}
		var in struct {
			Rescue []struct {
				Display string
				Requeue bool
				Note    string `json:"requeue_note"`
			}
		}
		json.Unmarshal([]byte(out), &in)
		for _, r := range in.Rescue {
			w, ok := jobs[r.Display]
			if !ok {
				continue
			}
			delete(jobs, r.Display)
			if r.Requeue != w.requeue || !strings.Contains(r.Note, w.note) {
				t.Errorf("%s %s job %s: requeue %v %q, want %v %q", version, node, r.Display, r.Requeue, r.Note, w.requeue, w.note)
			}
		}
		for job := range jobs {
			t.Errorf("%s %s: job %s not listed to rescue", version, node, job)
		}
		table, _ := runCLI(t, "inspect", "node", node, "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
		if !strings.Contains(table, "REQUEUE") {
			t.Errorf("%s %s: the table has no REQUEUE column:\n%s", version, node, table)
		}
	}
	for _, v := range []string{"23.11", "24.05"} {
		check(v, "queue1-dy-c5xlarge-1", "queue1-dy-c5xlarge-9", map[string]want{"135": {false, "--no-requeue"}})
		check(v, "queue1-dy-c5xlarge-1", "queue1-dy-c5xlarge-11", map[string]want{"139": {true, "left held"}})
		check(v, "queue1-dy-c5xlarge-1", "queue1-dy-c5xlarge-1", map[string]want{"125": {true, ""}})
	}
	check("22.05", "compute-1", "compute-3", map[string]want{"9": {false, "--no-requeue"}})
	dir := fixtures(t, "23.11", "queue1-dy-c5xlarge-1", "queue1-dy-c5xlarge-9")
	t.Setenv("SLURMREPLAY_DIR", dir)
	table, err := runCLI(t, "inspect", "node", "queue1-dy-c5xlarge-9", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
	if err != nil || !strings.Contains(table, "no: the job was submitted with --no-requeue") {
		t.Errorf("table: %v\n%s", err, table)
	}
}
