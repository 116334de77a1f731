package slurm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// recording is a directory written by hack/slurmrecord: one subdirectory
// per JSON data format the Slurm it ran emits, and text/.
type recording struct {
	dir     string
	formats []string
	parsers map[string]int // format -> data_parser version
}

// recordings are the Slurm releases recorded by hack/slurmrecord.
var recordings = []recording{
	{"24.11", []string{"v0.0.40", "v0.0.41", "v0.0.42", "text"}, map[string]int{"v0.0.40": 40, "v0.0.41": 41, "v0.0.42": 42}},
}

// scenarioOf reads scenario.json: the job id of each role.
func scenarioOf(t *testing.T, dir string) (jobs map[string]string, drained, reason string) {
	t.Helper()
	var sc struct {
		Jobs    map[string]string `json:"jobs"`
		Drained string            `json:"drained"`
		Reason  string            `json:"drain_reason"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", dir, "scenario.json"))
	if err == nil {
		err = json.Unmarshal(data, &sc)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sc.Jobs, sc.Drained, sc.Reason
}

// recordedClient reads one format of a recording: JSON, or with text only
// the text forms, as on a Slurm whose JSON is unusable.
func recordedClient(t *testing.T, dir, format string) *Client {
	t.Helper()
	var override func(string) ([]byte, error, bool)
	if format == "text" {
		override = failJSON
	}
	c, _ := fixtureClient(t, filepath.Join(dir, format), override)
	return c
}

// view is what the adapter makes of a job, in the fields every format
// carries; the sizes only where the format has them.
type view struct {
	Display, Name, State string
	Nodes                []string
	Restarts             int
	Requeue, Batch       bool
	HeldByUser, Admin    bool
	Finished, Active     bool
	HetJobID, ArrayJobID string
	ExcNodes, ReqNodes   string
	NodeCount, CPUs      int
}

func viewOf(j *Job, sizes bool) view {
	v := view{Display: j.Display, Name: j.Name, State: j.State, Nodes: j.Nodes, Restarts: j.Restarts, Requeue: j.Requeue, Batch: j.Batch,
		HeldByUser: j.HeldByUser(), Admin: j.HeldByAdmin(), Finished: j.Finished(), Active: j.Active(), HetJobID: j.HetJobID, ArrayJobID: j.ArrayJobID}
	if sizes {
		v.ExcNodes, v.ReqNodes, v.NodeCount, v.CPUs = j.ExcNodes, j.ReqNodes, j.NodeCount, j.CPUs
	}
	return v
}

// want2411 is the recorded cluster (hack/slurmrecord's scenario), by role.
func want2411(ids map[string]string) map[string]view {
	running := func(name string, nodes ...string) view {
		return view{Display: "", Name: name, State: "RUNNING", Nodes: nodes, Requeue: true, Batch: true, Active: true, NodeCount: len(nodes), CPUs: len(nodes)}
	}
	w := map[string]view{
		"plain":     running("plain", "compute-1"),
		"spaces":    running("a name  with spaces", "compute-1"),
		"requeued":  running("requeued", "compute-1"),
		"twonode":   running("twonode", "compute-3", "compute-4"),
		"completed": {Name: "completed", State: "COMPLETED", Nodes: []string{"compute-1"}, Requeue: true, Batch: true, Finished: true, ReqNodes: "compute-1", NodeCount: 1, CPUs: 1},
		"userheld":  {Name: "userheld", State: "PENDING", Requeue: true, Batch: true, HeldByUser: true, NodeCount: 1, CPUs: 1},
		"adminheld": {Name: "adminheld", State: "PENDING", Requeue: true, Batch: true, Admin: true, NodeCount: 1, CPUs: 1},
		"excluded":  {Name: "excluded", State: "PENDING", Requeue: true, Batch: true, ExcNodes: "compute-1", ReqNodes: "compute-2", NodeCount: 1, CPUs: 1},
		// The array's id is its pending remainder's (task 3; %2 lets two run).
		"array": {Name: "array", State: "PENDING", Requeue: true, Batch: true, ArrayJobID: ids["array"], ReqNodes: "compute-2", NodeCount: 1, CPUs: 1},
		"het":   running("het", "pc-dy-c5-1"),
	}
	r := w["requeued"]
	r.Restarts = 1
	w["requeued"] = r
	for _, role := range []string{"plain", "spaces", "requeued"} {
		v := w[role]
		v.ReqNodes = "compute-1"
		w[role] = v
	}
	tn := w["twonode"]
	tn.ReqNodes = "compute-[3-4]"
	w["twonode"] = tn
	a := w["array"]
	a.Display = ids["array"] + "_3"
	w["array"] = a
	h := w["het"]
	h.HetJobID, h.Display, h.CPUs = ids["het"], ids["het"]+"+0", 4 // --exclusive: the whole node
	w["het"] = h
	for role, v := range w {
		if v.Display == "" {
			v.Display = ids[role]
			w[role] = v
		}
	}
	return w
}

// Every format a real Slurm 24.11 printed reads as the same cluster: by
// `scontrol show job` (JSON or text) and by the listing (squeue --json, or
// squeue's text columns, which carry no sizes).
func TestRecordedJobs(t *testing.T) {
	ctx := context.Background()
	for _, r := range recordings {
		ids, _, _ := scenarioOf(t, r.dir)
		want := want2411(ids)
		for _, format := range r.formats {
			t.Run(r.dir+"/"+format, func(t *testing.T) {
				c := recordedClient(t, r.dir, format)
				listed, err := c.Jobs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				all := byID(t, listed)
				for role, id := range ids {
					j, err := c.Job(ctx, id)
					if err != nil {
						t.Fatalf("%s (%s): %v", role, id, err)
					}
					if got := viewOf(j, true); !reflect.DeepEqual(got, want[role]) {
						t.Errorf("%s: scontrol show job %s\n got  %+v\n want %+v", role, id, got, want[role])
					}
					l, ok := all[id]
					if !ok {
						t.Fatalf("%s: job %s not listed", role, id)
					}
					if got, w := viewOf(&l, format != "text"), viewOf(j, format != "text"); !reflect.DeepEqual(got, w) {
						t.Errorf("%s: the listing reads job %s\n as   %+v\n, scontrol as %+v", role, id, got, w)
					}
				}
				// The array's running tasks and the heterogeneous job's second
				// component are records of their own.
				var tasks []string
				var second *Job
				for i, j := range listed {
					if j.ArrayJobID == ids["array"] && j.State == "RUNNING" {
						tasks = append(tasks, j.Display)
					}
					if j.HetJobID == ids["het"] && j.HetJobOffset == 1 {
						second = &listed[i]
					}
				}
				if slices.Sort(tasks); !slices.Equal(tasks, []string{ids["array"] + "_1", ids["array"] + "_2"}) {
					t.Errorf("running array tasks %q", tasks)
				}
				if second == nil || !slices.Equal(second.Nodes, []string{"pc-dy-m5-1"}) || second.Target() != second.ID {
					t.Errorf("second heterogeneous component %+v", second)
				}
			})
		}
	}
}

// The recorded nodes: the draining one with its reason, partitions, CPUs,
// the same from every format; and the data_parser each JSON format names.
// A difference this covers: 24.11's `scontrol show node` text has an
// indented empty line inside a record, before the Reason (22.05's has
// none); taken for the end of the record, it cost the node its reason.
func TestRecordedNodes(t *testing.T) {
	ctx := context.Background()
	for _, r := range recordings {
		_, drained, reason := scenarioOf(t, r.dir)
		var first []Node
		for _, format := range r.formats {
			t.Run(r.dir+"/"+format, func(t *testing.T) {
				c := recordedClient(t, r.dir, format)
				n, err := c.Node(ctx, drained)
				if err != nil {
					t.Fatal(err)
				}
				if !n.Drained() || n.Reason != reason || !slices.Equal(n.Partitions, []string{"spot", "ondemand"}) || n.CPUs != 4 {
					t.Errorf("drained node %+v", n)
				}
				nodes, err := c.Nodes(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(nodes) != 6 {
					t.Errorf("%d nodes, want the lab's 6", len(nodes))
				}
				if first == nil {
					first = nodes
				} else if !reflect.DeepEqual(nodes, first) {
					t.Errorf("nodes differ from %s's:\n got  %+v\n want %+v", r.formats[0], nodes, first)
				}
				if p, ok := r.parsers[format]; ok {
					data, _ := os.ReadFile(filepath.Join("testdata", r.dir, format, "squeue.json"))
					_, m, err := decodeJobs(data)
					if v, _ := m.version(); err != nil || m.parser() != p || v != (Version{24, 11, 5}) {
						t.Errorf("meta: parser %d, version %v, %v; want %d, 24.11.5", m.parser(), v, err, p)
					}
				}
			})
		}
	}
}
