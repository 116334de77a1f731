package main

import (
	"bytes"
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

// fixtures copies one Slurm generation's recorded outputs (testdata/<dir>,
// or one format of a recording, "24.11/v0.0.41") and adds node records
// for the nodes asked about, cloned from the recorded node (only the name
// differs): the tests are about jobs, not node states. A recording's
// listing of every node (scontrol_show_nodes.*) answers for each of its
// nodes instead. slurmreplay answers a file it lacks as scontrol does an
// unknown job, an answer the adapter does not look past: for text/, the
// JSON files are present but do not parse, as on a Slurm whose JSON is
// unusable, so that the adapter reads the text.
func fixtures(t *testing.T, version, recordedNode string, nodes ...string) string {
	t.Helper()
	src := filepath.Join("..", "..", "slurm", "testdata", version)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	ext := ".json"
	if version == "22.05" || filepath.Base(version) == "text" {
		ext = ".txt"
	}
	for name, rec := range splitNodes(t, filepath.Join(src, "scontrol_show_nodes"+ext)) {
		file := filepath.Join(dst, "scontrol_show_node_"+name+ext)
		if _, err := os.Stat(file); err != nil {
			os.WriteFile(file, rec, 0o644)
		}
	}
	if filepath.Base(version) == "text" {
		unusable := []byte("slurm_print: not the JSON of any data_parser\n")
		os.WriteFile(filepath.Join(dst, "squeue.json"), unusable, 0o644)
		txt, _ := filepath.Glob(filepath.Join(dst, "scontrol_show_*.txt"))
		for _, f := range txt {
			os.WriteFile(strings.TrimSuffix(f, ".txt")+".json", unusable, 0o644)
		}
	}
	if recordedNode == "" {
		return dst
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

// splitNodes splits a recorded listing of every node (scontrol --json
// show node, or its text) into what scontrol prints for each; none when
// there is no listing.
func splitNodes(t *testing.T, listing string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(listing)
	if err != nil {
		return nil
	}
	out := map[string][]byte{}
	if strings.HasSuffix(listing, ".txt") {
		var name string
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "NodeName="); ok {
				name, _, _ = strings.Cut(rest, " ")
			}
			if name != "" {
				out[name] = append(out[name], line...)
			}
		}
		return out
	}
	var doc map[string]json.RawMessage
	var nodes []json.RawMessage
	if json.Unmarshal(data, &doc) != nil || json.Unmarshal(doc["nodes"], &nodes) != nil {
		t.Fatalf("%s does not decode", listing)
	}
	for _, n := range nodes {
		var node struct{ Name string }
		json.Unmarshal(n, &node)
		doc["nodes"], _ = json.Marshal([]json.RawMessage{n})
		out[node.Name], _ = json.Marshal(doc)
	}
	return out
}

// scenarioJobs reads a recording's scenario.json (hack/slurmrecord): the
// job id of each role, which changes with each recording.
func scenarioJobs(t *testing.T, recording string) map[string]string {
	t.Helper()
	var sc struct{ Jobs map[string]string }
	data, err := os.ReadFile(filepath.Join("..", "..", "slurm", "testdata", recording, "scenario.json"))
	if err == nil {
		err = json.Unmarshal(data, &sc)
	}
	if err != nil || len(sc.Jobs) == 0 {
		t.Fatalf("scenario of %s: %v", recording, err)
	}
	return sc.Jobs
}

// editSqueue changes one job of the squeue.json in dir, in the shape of
// its format: how a case the recorded cluster does not have is made.
func editSqueue(t *testing.T, dir, id string, edit func(job map[string]any)) {
	t.Helper()
	file := filepath.Join(dir, "squeue.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	jobs, _ := doc["jobs"].([]any)
	n := 0
	for _, x := range jobs {
		if job, ok := x.(map[string]any); ok && fmt.Sprint(job["job_id"]) == id {
			edit(job)
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%s: %d jobs %s", file, n, id)
	}
	if data, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, data, 0o644)
}

// heldByAdmin makes a job held by an administrator: its reason, its
// priority (an object from v0.0.40 on), its hold flag.
func heldByAdmin(job map[string]any) {
	job["state_reason"], job["hold"] = "JobHeldAdmin", true
	if p, ok := job["priority"].(map[string]any); ok {
		p["set"], p["number"] = true, 0
	} else {
		job["priority"] = 0
	}
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

// summaryOf is what summary prints for these parts.
func summaryOf(parts ...string) string {
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// Every generation gives the decisions its cluster calls for: 23.02's
// written fixture (v0.0.39), 24.11's recording in each JSON format it
// prints (v0.0.40 and v0.0.41 are 23.11's and 24.05's) and in text, and
// 22.05's capture.
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
	var nodes []string
	for n := range modern {
		nodes = append(nodes, n)
	}
	dir := fixtures(t, "23.02", "queue1-dy-c5xlarge-1", nodes...)
	for node, want := range modern {
		if got := inspectJSON(t, bin, dir, node).summary(); got != want {
			t.Errorf("23.02 %s:\n got %q\nwant %q", node, got, want)
		}
	}
	// 24.11, recorded: the lab's jobs, by role. The completed job and the
	// jobs other lab tests left behind, all ended, are not rescued.
	ids := scenarioJobs(t, "24.11")
	rescue := func(job string, nodes ...string) string { return "rescue " + job + " on " + strings.Join(nodes, ",") }
	twonode := rescue(ids["twonode"], "compute-3", "compute-4")
	het := rescue(ids["het"]+"+0", "pc-dy-c5-1", "pc-dy-m5-1")
	recorded := map[string]string{
		"compute-1":  summaryOf(rescue(ids["plain"], "compute-1"), rescue(ids["spaces"], "compute-1"), rescue(ids["requeued"], "compute-1")),
		"compute-2":  summaryOf(rescue(ids["array"]+"_1", "compute-2"), rescue(ids["array"]+"_2", "compute-2")),
		"compute-3":  twonode,
		"compute-4":  twonode,
		"pc-dy-c5-1": het,
		"pc-dy-m5-1": het,
	}
	for _, format := range []string{"v0.0.40", "v0.0.41", "v0.0.42", "text"} {
		dir := fixtures(t, filepath.Join("24.11", format), "")
		for node, want := range recorded {
			if got := inspectJSON(t, bin, dir, node).summary(); got != want {
				t.Errorf("24.11/%s %s:\n got %q\nwant %q", format, node, got, want)
			}
		}
	}
	// 22.05, captured from the lab's real Slurm.
	dir = fixtures(t, "22.05", "compute-1", "compute-2", "compute-3")
	for node, want := range map[string]string{
		"compute-1": "rescue 2 on compute-1; rescue 3 on compute-1,compute-2",
		"compute-4": "rescue 10 on compute-4; rescue 5+0 on compute-3,compute-4",
	} {
		if got := inspectJSON(t, bin, dir, node).summary(); got != want {
			t.Errorf("22.05 %s:\n got %q\nwant %q", node, got, want)
		}
	}
}

// On 24.11's recording in 24.05's format (v0.0.41): compute-3 runs one
// job, the two-node one.
func TestInspectShowsScratchAndPrefix(t *testing.T) {
	bin := replayBin(t)
	job := scenarioJobs(t, "24.11")["twonode"]
	dir := fixtures(t, filepath.Join("24.11", "v0.0.41"), "")
	in := inspectJSON(t, bin, dir, "compute-3")
	if len(in.Rescue) != 1 || in.Rescue[0].Nodes[0].Scratch != "/scratch/"+job {
		t.Fatalf("%+v", in)
	}
	t.Setenv("SLURMREPLAY_DIR", dir)
	out, err := runCLI(t, "inspect", "node", "compute-3", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
	if err != nil || !strings.Contains(out, "s3://b-1/spotrescue/hpc/"+job+"/run-0/compute-3/") {
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
	check := func(label, dir, node string, jobs map[string]want) {
		t.Helper()
		t.Setenv("SLURMREPLAY_DIR", dir)
		t.Setenv(config.EnvConfigPath, "")
		out, err := runCLI(t, "inspect", "node", node, "-o", "json", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
		if err != nil {
			t.Fatalf("%s %s: %v", label, node, err)
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
				t.Errorf("%s %s job %s: requeue %v %q, want %v %q", label, node, r.Display, r.Requeue, r.Note, w.requeue, w.note)
			}
		}
		for job := range jobs {
			t.Errorf("%s %s: job %s not listed to rescue", label, node, job)
		}
		table, _ := runCLI(t, "inspect", "node", node, "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
		if !strings.Contains(table, "REQUEUE") {
			t.Errorf("%s %s: the table has no REQUEUE column:\n%s", label, node, table)
		}
	}
	// The written 23.02 cluster has a --no-requeue job (135) and one held
	// by an administrator while it runs (139).
	dir := fixtures(t, "23.02", "queue1-dy-c5xlarge-1", "queue1-dy-c5xlarge-9", "queue1-dy-c5xlarge-11")
	check("23.02", dir, "queue1-dy-c5xlarge-9", map[string]want{"135": {false, "--no-requeue"}})
	check("23.02", dir, "queue1-dy-c5xlarge-11", map[string]want{"139": {true, "left held"}})
	check("23.02", dir, "queue1-dy-c5xlarge-1", map[string]want{"125": {true, ""}})
	// The recorded 24.11 cluster has neither: of the three jobs on
	// compute-1, the listing is edited to make one --no-requeue and another
	// held by an administrator, in each JSON format.
	ids := scenarioJobs(t, "24.11")
	edited := map[string]string{}
	for _, format := range []string{"v0.0.40", "v0.0.41", "v0.0.42"} {
		dir := fixtures(t, filepath.Join("24.11", format), "")
		editSqueue(t, dir, ids["plain"], func(job map[string]any) { job["requeue"] = false })
		editSqueue(t, dir, ids["spaces"], heldByAdmin)
		check("24.11/"+format, dir, "compute-1", map[string]want{
			ids["plain"]: {false, "--no-requeue"}, ids["spaces"]: {true, "left held"}, ids["requeued"]: {true, ""},
		})
		edited[format] = dir
	}
	check("22.05", fixtures(t, "22.05", "compute-1", "compute-3"), "compute-3", map[string]want{"9": {false, "--no-requeue"}})
	t.Setenv("SLURMREPLAY_DIR", edited["v0.0.40"])
	table, err := runCLI(t, "inspect", "node", "compute-1", "--cluster", "hpc", "--bucket", "b-1", "--slurm-bin-dir", bin)
	if err != nil || !strings.Contains(table, "no: the job was submitted with --no-requeue") {
		t.Errorf("table: %v\n%s", err, table)
	}
}
