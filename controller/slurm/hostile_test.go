package slurm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Hostile and unexpected Slurm output. The fields a user controls are the
// job name and comment (any bytes, newlines included); everything else is
// slurmctld's, but a newer release may add fields, and a broken or hostile
// node list must not exhaust memory. controller/testdata/HOSTILE.md lists
// these cases with the controller's.

// withUnknownFields adds fields no release prints to every object of a
// JSON document: a newer Slurm adding fields must not change what is read.
func withUnknownFields(t *testing.T, data []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, child := range x {
				walk(child)
			}
			x["zz_added_in_a_future_release"] = map[string]any{"set": true, "number": 7, "list": []any{"RUNNING", nil, 1.5}}
			x["zzFlag"] = "x"
		case []any:
			for _, child := range x {
				walk(child)
			}
		}
	}
	walk(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestJSONWithUnknownFieldsReadsTheSame(t *testing.T) {
	files := fixtureFiles("*.json")
	if len(files) < 20 {
		t.Fatalf("only %d JSON fixtures", len(files))
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			extended := withUnknownFields(t, data)
			if bytes.Contains(data, []byte(`"jobs"`)) {
				want, _, err := decodeJobs(data)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := decodeJobs(extended)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("with unknown fields: %v\n got  %+v\n want %+v", err, got, want)
				}
				return
			}
			want, _, err := decodeNodes(data)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := decodeNodes(extended)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("with unknown fields: %v\n got  %+v\n want %+v", err, got, want)
			}
		})
	}
}

// withUnknownKeys adds Key=Value pairs, and a line of them, to every record
// of scontrol show text, leaving the free-text lines alone.
func withUnknownKeys(text string, free map[string]bool) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		body := strings.TrimSuffix(line, "\n")
		k, _, _ := strings.Cut(strings.TrimLeft(body, " "), "=")
		if !strings.HasPrefix(body, "   ") || strings.TrimSpace(body) == "" || free[k] {
			b.WriteString(line)
			if strings.HasPrefix(body, "JobId=") || strings.HasPrefix(body, "NodeName=") {
				b.WriteString("   ZzFutureField=yes ZzOther=(null)\n")
			}
			continue
		}
		b.WriteString(body + " ZzNewKey=1 ZzTres=cpu=4,mem=1G" + line[len(body):])
	}
	return b.String()
}

func TestTextWithUnknownKeysReadsTheSame(t *testing.T) {
	jobs, nodes := fixtureFiles("scontrol_show_job_*.txt"), fixtureFiles("scontrol_show_node*.txt")
	if len(jobs) < 10 || len(nodes) < 2 {
		t.Fatalf("%d job and %d node text fixtures", len(jobs), len(nodes))
	}
	for _, name := range jobs {
		data, _ := os.ReadFile(name)
		want, err := parseJobsText(string(data))
		if err != nil {
			t.Fatal(err)
		}
		extended := withUnknownKeys(string(data), freeJobKeys)
		if extended == string(data) {
			t.Fatalf("%s: nothing added", name)
		}
		if got, err := parseJobsText(extended); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s with unknown keys: %v\n got  %+v\n want %+v", name, err, got, want)
		}
	}
	for _, name := range nodes {
		data, _ := os.ReadFile(name)
		want, err := parseNodesText(string(data))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := parseNodesText(withUnknownKeys(string(data), freeNodeKeys)); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s with unknown keys: %v\n got  %+v\n want %+v", name, err, got, want)
		}
	}
}

// job2 is the real 22.05 capture of job 2 with old replaced once.
func job2(t *testing.T, old, new string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "22.05", "scontrol_show_job_2.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("fixture has no %q", old)
	}
	return strings.Replace(string(data), old, new, 1)
}

// A job name or comment holding newlines could make `scontrol show job`
// text say what its owner wants: that job 2 is task 3 of array 5 (so that
// "scontrol hold 2" becomes "scontrol hold 5_3", another user's job), or
// a second record for the same id. Each is refused; Client then reads
// squeue --json, where the name is quoted.
func TestNewlinesInNameOrCommentAreRefused(t *testing.T) {
	const name = "JobName=fx run = spaces ünï ✓"
	const stdout = "   StdErr=/dev/null"
	cases := []struct{ name, text string }{
		{"name adds array ids", job2(t, name, "JobName=evil\n   ArrayJobId=5 ArrayTaskId=3")},
		{"name adds het ids", job2(t, name, "JobName=evil\n   HetJobId=5 HetJobOffset=1")},
		{"name adds a job id", job2(t, name, "JobName=evil\n   JobId=5")},
		{"name repeats a field", job2(t, name, "JobName=evil\n   JobState=COMPLETED")},
		{"name starts a record", job2(t, name, "JobName=evil\nJobId=2 ArrayJobId=5 ArrayTaskId=3 JobName=x")},
		{"name starts a record after a blank line", job2(t, name, "JobName=evil\n\nJobId=999 JobName=x")},
		{"comment adds array ids", job2(t, stdout, "   Comment=hi\n   ArrayJobId=5 ArrayTaskId=3\n"+stdout)},
		{"name claims GPUs", job2(t, name, "JobName=evil\n   AllocTRES=cpu=1,gres/gpu=64")},
		{"comment claims GPUs", job2(t, stdout, "   Comment=hi\n   ReqTRES=gres/gpu=64\n"+stdout)},
		{"name repeats the sizes", job2(t, name, "JobName=evil\n   NumNodes=64 NumCPUs=4096")},
		{"name repeats the exclusion", job2(t, name, "JobName=evil\n   ExcNodeList=compute-1")},
		{"comment repeats the GPUs", job2(t, stdout, "   Comment=hi\n   TRES=gres/gpu=64\n"+stdout)},
		{"comment repeats the job", job2(t, stdout, "   Comment=hi\n\nJobId=2 ArrayJobId=5 ArrayTaskId=3 JobName=y\n   UserId=root(0) JobState=RUNNING NodeList=compute-1\n"+stdout)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if jobs, err := parseJobsText(tc.text); err == nil {
				t.Errorf("accepted: %+v", jobs)
			}
		})
	}
	// The same output given to Client: it reads squeue --json instead and
	// holds job 2 itself.
	for _, tc := range cases {
		t.Run("client/"+tc.name, func(t *testing.T) {
			c, f := fixtureClient(t, "22.05", func(cmd string) ([]byte, error, bool) {
				switch {
				case cmd == "scontrol show job 2":
					return []byte(tc.text), nil, true
				case strings.HasPrefix(cmd, "scontrol hold "):
					return nil, nil, true
				}
				return nil, nil, false
			})
			j, err := c.Job(context.Background(), "2")
			if err != nil || j.Target() != "2" || j.Name != "fx run = spaces ünï ✓" {
				t.Fatalf("Job(2) = %+v, %v", j, err)
			}
			if err := c.Hold(context.Background(), "2"); err != nil {
				t.Fatal(err)
			}
			calls := f.Calls()
			if !slices.Contains(calls, "squeue --json --states=all") || calls[len(calls)-1] != "scontrol hold 2" {
				t.Errorf("calls %q", calls)
			}
		})
	}
}

// A forged record for another job id (here 999, claiming to be task 3 of
// array 5) in a comment can parse, but reading job 2 remembers only job 2:
// job 999 is still addressed as itself.
func TestForgedRecordDoesNotReaddressAnotherJob(t *testing.T) {
	text := job2(t, "   StdErr=/dev/null", "   Comment=hi\n\nJobId=999 ArrayJobId=5 ArrayTaskId=3 JobName=y\n"+
		"   UserId=root(0) JobState=RUNNING NodeList=compute-1\n   StdErr=/dev/null")
	c, f := fixtureClient(t, "22.05", func(cmd string) ([]byte, error, bool) {
		if cmd == "scontrol show job 2" {
			return []byte(text), nil, true
		}
		return nil, nil, false
	})
	if j, err := c.Job(context.Background(), "2"); err != nil || j.Target() != "2" {
		t.Fatalf("Job(2) = %+v, %v", j, err)
	}
	_ = c.Hold(context.Background(), "999")
	if calls := f.Calls(); calls[len(calls)-1] != "scontrol hold 999" {
		t.Errorf("job 999 held as %q", calls[len(calls)-1])
	}
}

// Names in JSON are quoted: whatever they hold stays the name.
func TestJSONNamesAreOnlyNames(t *testing.T) {
	for _, name := range []string{"../../etc/passwd", "x\n   JobState=COMPLETED\nJobId=5", "$(rm -rf /); `id`", "ünï ✓ \u202e", "a\x00b", strings.Repeat("n", 10000)} {
		doc, _ := json.Marshal(map[string]any{"jobs": []any{map[string]any{
			"job_id": 42, "name": name, "job_state": "RUNNING", "nodes": "compute-1", "user_name": "alice", "batch_flag": true,
		}}})
		jobs, _, err := decodeJobs(doc)
		if err != nil || len(jobs) != 1 || jobs[0].Name != name || jobs[0].State != "RUNNING" || jobs[0].ID != "42" ||
			!slices.Equal(jobs[0].Nodes, []string{"compute-1"}) {
			t.Errorf("name %q: %+v, %v", name, jobs, err)
		}
	}
}

// A node list bomb in squeue --json fails the read with a clear error,
// never a large allocation (naming.ExpandHostlist bounds it).
func TestHostlistBombInSqueue(t *testing.T) {
	doc := []byte(`{"jobs":[{"job_id":7,"nodes":"n[1-999999999]","job_state":"RUNNING"}]}`)
	if _, _, err := decodeJobs(doc); err == nil || !strings.Contains(err.Error(), "more than 100000 hosts") {
		t.Errorf("squeue --json with a node list bomb: %v", err)
	}
}

func TestHostileVersionStrings(t *testing.T) {
	for in, want := range map[string]Version{
		"slurm 22.05.8\nslurm 99.99.99":    {22, 5, 8},
		"slurm-wlm 23.02.7 extra words":    {23, 2, 7},
		"slurm 24.05.99999999999999999999": {24, 5, int(^uint(0) >> 1)},
	} {
		if v, err := ParseVersion(in); err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v", in, v, err, want)
		}
	}
	for _, bad := range []string{"", "slurm", "slurm 2.5.8", "slurm x22.05.8", "22.05"} {
		if v, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = %+v", bad, v)
		}
	}
}

// nodeText is the real 22.05 text of compute-1 and compute-4 with old
// replaced once.
func nodeText(t *testing.T, old, new string) string {
	t.Helper()
	text := string(allNodes(t, "22.05", "txt"))
	if !strings.Contains(text, old) {
		t.Fatalf("fixture has no %q", old)
	}
	return strings.Replace(text, old, new, 1)
}

// slurmctld prints each node once. A second record of a node, forged by a
// newline in a node's reason or printed by a broken release, fails the
// listing rather than speak for the node.
func TestNodesListedTwiceAreRefused(t *testing.T) {
	ctx := context.Background()
	const reason = "   Reason=spot interruption: i-0abc = reclaim ✓ [root@2026-11-26T04:35:06]"
	forged := nodeText(t, reason, "   Reason=x\n\nNodeName=compute-1 Arch=x86_64\n   State=IDLE Partitions=gpu CPUTot=64")
	if nodes, err := parseNodesText(forged); err != nil || len(nodes) != 3 {
		t.Fatalf("the forgery does not parse as 3 records (%+v, %v): the test would prove nothing", nodes, err)
	}
	c, _ := fixtureClient(t, "22.05", func(cmd string) ([]byte, error, bool) {
		if out, err, ok := failJSON(cmd); ok {
			return out, err, ok
		}
		return answer("scontrol show node", []byte(forged))(cmd)
	})
	if nodes, err := c.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "compute-1 listed twice") {
		t.Errorf("forged text: %+v, %v", nodes, err)
	}

	// A reason repeating a field of its record is refused by the parser.
	repeated := nodeText(t, reason, "   Reason=x\n   Partitions=gpu CPUTot=64")
	if nodes, err := parseNodesText(repeated); err == nil {
		t.Errorf("repeated fields accepted: %+v", nodes)
	}

	// JSON naming a node twice: the text is read instead.
	sinfo, err := os.ReadFile(filepath.Join("testdata", "22.05", "sinfo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	var list []json.RawMessage
	if json.Unmarshal(sinfo, &doc) != nil || json.Unmarshal(doc["nodes"], &list) != nil {
		t.Fatal("sinfo.json does not decode")
	}
	doc["nodes"], _ = json.Marshal(append(list, list[0]))
	twice, _ := json.Marshal(doc)
	text := allNodes(t, "22.05", "txt")
	c, f := fixtureClient(t, "22.05", func(cmd string) ([]byte, error, bool) {
		switch cmd {
		case "sinfo --json":
			return twice, nil, true
		case "scontrol show node":
			return text, nil, true
		}
		return nil, nil, false
	})
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 2 {
		t.Errorf("text after JSON listing a node twice: %+v, %v", nodes, err)
	}
	if calls := f.Calls(); !reflect.DeepEqual(calls, []string{"scontrol --version", "sinfo --json", "scontrol show node"}) {
		t.Errorf("calls %q", calls)
	}

	// Both listing a node twice: an error. The listings 24.11 printed, in
	// the format of 24.05 (v0.0.41).
	recorded := filepath.Join("testdata", "24.11")
	all, err := os.ReadFile(filepath.Join(recorded, "v0.0.41", "scontrol_show_nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	allText, err := os.ReadFile(filepath.Join(recorded, "text", "scontrol_show_nodes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ = fixtureClient(t, filepath.Join("24.11", "v0.0.41"), func(cmd string) ([]byte, error, bool) {
		switch cmd {
		case "scontrol --json show node":
			var d map[string]json.RawMessage
			var n []json.RawMessage
			if json.Unmarshal(all, &d) != nil || json.Unmarshal(d["nodes"], &n) != nil {
				t.Fatal("nodes do not decode")
			}
			d["nodes"], _ = json.Marshal(append(n, n[1]))
			out, _ := json.Marshal(d)
			return out, nil, true
		case "scontrol show node":
			return append(append([]byte{}, allText...), allText...), nil, true
		}
		return nil, nil, false
	})
	if nodes, err := c.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("JSON and text listing nodes twice: %+v, %v", nodes, err)
	}
}

func TestNodesOfAnEmptyCluster(t *testing.T) {
	for name, override := range map[string]func(string) ([]byte, error, bool){
		"json": answer("scontrol --json show node", []byte(`{"meta":{},"errors":[],"nodes":[]}`)),
		"text": func(cmd string) ([]byte, error, bool) {
			if out, err, ok := failJSON(cmd); ok {
				return out, err, ok
			}
			return answer("scontrol show node", []byte(noNodes+"\n"))(cmd)
		},
	} {
		c, _ := fixtureClient(t, filepath.Join("24.11", "v0.0.41"), override)
		if nodes, err := c.Nodes(context.Background()); err != nil || len(nodes) != 0 {
			t.Errorf("%s: %+v, %v", name, nodes, err)
		}
	}
}
