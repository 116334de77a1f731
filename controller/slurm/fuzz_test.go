package slurm

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// The parsers read whatever a Slurm command printed; no input may make
// them panic, and what they accept must be usable as it is. `go test` runs
// the seeds: the corpus committed in testdata/fuzz/<FuzzName>, which holds
// every fixture of every version (TestFuzzCorpusHoldsTheFixtures) and
// hostile inputs; `make fuzz` explores from there.

var updateCorpus = flag.Bool("update-corpus", false, "write the fixtures missing from testdata/fuzz as seeds")

// fixtureSeeds are the fixtures each target starts from.
var fixtureSeeds = map[string][]string{
	"FuzzDecodeJobs":    {"*.json"},
	"FuzzParseJobsText": {"scontrol_show_job_*.txt", "scontrol_show_node_*.txt"},
	"FuzzParseSqueue":   {"squeue.txt"},
	"FuzzParseVersion":  {"version.txt"},
}

// corpusEntry is a seed file of a target with one []byte argument.
func corpusEntry(data []byte) string {
	return "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
}

func TestFuzzCorpusHoldsTheFixtures(t *testing.T) {
	for target, patterns := range fixtureSeeds {
		for _, pattern := range patterns {
			files := fixtureFiles(pattern)
			if len(files) == 0 {
				t.Fatalf("no fixture matches %s", pattern)
			}
			for _, name := range files {
				data, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel("testdata", name)
				seed := filepath.Join("testdata", "fuzz", target, strings.ReplaceAll(rel, string(filepath.Separator), "-"))
				if have, err := os.ReadFile(seed); err == nil && string(have) == corpusEntry(data) {
					continue
				}
				if !*updateCorpus {
					t.Errorf("%s is not the seed of %s: go test ./controller/slurm -run TestFuzzCorpus -update-corpus", seed, name)
					continue
				}
				if err := os.MkdirAll(filepath.Dir(seed), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(seed, []byte(corpusEntry(data)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

var numericID = regexp.MustCompile(`^[1-9][0-9]*$`)

// checkJobs holds for every job any reader returns: a numeric id, an
// address for commands, and a bounded node list of real names.
func checkJobs(t *testing.T, jobs []Job) {
	t.Helper()
	for _, j := range jobs {
		if !numericID.MatchString(j.ID) {
			t.Fatalf("job id %q", j.ID)
		}
		if j.Display == "" || j.Target() == "" {
			t.Fatalf("job %s: display %q target %q", j.ID, j.Display, j.Target())
		}
		if j.ArrayTaskID != "" && j.ArrayJobID == "" {
			t.Fatalf("job %s: array task %s of no array", j.ID, j.ArrayTaskID)
		}
		if j.Target() != j.ID && j.Target() != j.ArrayJobID+"_"+j.ArrayTaskID {
			t.Fatalf("job %s addressed as %q", j.ID, j.Target())
		}
		checkNames(t, j.Nodes)
		checkCounts(t, j.NodeCount, j.CPUs, j.GPUs)
		_ = j.Active() || j.Finished() || j.Held() || j.Completing()
	}
}

// checkCounts: no count read is negative or beyond maxCount.
func checkCounts(t *testing.T, counts ...int) {
	t.Helper()
	for _, n := range counts {
		if n < 0 || n > maxCount {
			t.Fatalf("count %d", n)
		}
	}
}

// checkNodes holds for every node any reader returns.
func checkNodes(t *testing.T, nodes []Node) {
	t.Helper()
	for _, n := range nodes {
		if n.Name == "" {
			t.Fatal("node without a name")
		}
		checkCounts(t, n.CPUs)
		for _, p := range n.Partitions {
			if p == "" || strings.Contains(p, ",") || strings.TrimSpace(p) != p {
				t.Fatalf("node %s: partition %q", n.Name, p)
			}
		}
		_ = n.Drained()
	}
}

func checkNames(t *testing.T, names []string) {
	t.Helper()
	if len(names) > naming.MaxHosts {
		t.Fatalf("%d names", len(names))
	}
	for _, n := range names {
		if n == "" || len(n) > naming.MaxHostName || strings.ContainsAny(n, ",[]") {
			t.Fatalf("node name %q", n)
		}
	}
}

func FuzzDecodeJobs(f *testing.F) {
	f.Add([]byte(`{"jobs":[{"job_id":{"set":true,"number":"1"},"nodes":"n[1-3]","job_state":["RUNNING","COMPLETING"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, m, err := decodeJobs(data)
		if err != nil && len(jobs) > 0 {
			t.Fatalf("%d jobs with error %v", len(jobs), err)
		}
		checkJobs(t, jobs)
		_, _ = m.version()
		if p := m.parser(); p < 0 {
			t.Fatalf("data_parser %d", p)
		}
		nodes, _, err := decodeNodes(data)
		if err != nil && len(nodes) > 0 {
			t.Fatalf("%d nodes with error %v", len(nodes), err)
		}
		checkNodes(t, nodes)
	})
}

// FuzzParseJobsText reads `scontrol show job` and `scontrol show node`
// text. Besides not panicking: a job is never listed twice, since a second
// record with a job's id could only come from a newline in a free-text
// field.
func FuzzParseJobsText(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, err := parseJobsText(string(data))
		if err != nil && len(jobs) > 0 {
			t.Fatalf("%d jobs with error %v", len(jobs), err)
		}
		checkJobs(t, jobs)
		seen := map[string]bool{}
		for _, j := range jobs {
			if seen[j.ID] {
				t.Fatalf("job %s listed twice", j.ID)
			}
			seen[j.ID] = true
		}
		nodes, err := parseNodesText(string(data))
		if err != nil && len(nodes) > 0 {
			t.Fatalf("%d nodes with error %v", len(nodes), err)
		}
		checkNodes(t, nodes)
	})
}

func FuzzParseSqueue(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, err := parseSqueue(string(data))
		if err != nil && len(jobs) > 0 {
			t.Fatalf("%d jobs with error %v", len(jobs), err)
		}
		checkJobs(t, jobs)
		if n := strings.Count(string(data), recordSep); len(jobs) > n {
			t.Fatalf("%d jobs from %d records", len(jobs), n)
		}
	})
}

// FuzzGPUsOf: any TRES string gives a bounded count, and one with a
// gres/gpu total gives that total whatever typed entries follow.
func FuzzGPUsOf(f *testing.F) {
	for _, s := range []string{"cpu=4,mem=1000M,node=1,billing=4,gres/gpu=2", "gres/gpu:a100=2,gres/gpu:t4=1",
		"gres/gpu=3,gres/gpu:a100=2,gres/gpu:t4=1", "gres/gpumem=40G,gres/gpu=-3", "(null)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tres string) {
		n := gpusOf(tres)
		checkCounts(t, n)
		if !strings.Contains(tres, "gres/gpu=") {
			if got := gpusOf("gres/gpu=7," + tres); got != 7 {
				t.Fatalf("gpusOf(gres/gpu=7,%q) = %d", tres, got)
			}
		}
	})
}

// FuzzParseVersion: a version read is a plausible Slurm release and reads
// back the same from its own spelling.
func FuzzParseVersion(f *testing.F) {
	f.Add([]byte("slurm 22.05.8"))
	f.Add([]byte("slurm 23.11.0-0rc1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVersion(string(data))
		if err != nil {
			return
		}
		if v.Major < 0 || v.Major > 99 || v.Minor < 0 || v.Minor > 99 || v.Micro < 0 {
			t.Fatalf("version %+v from %q", v, data)
		}
		if back, err := ParseVersion("slurm " + v.String()); err != nil || back != v {
			t.Fatalf("%+v reads back as %+v, %v", v, back, err)
		}
	})
}
