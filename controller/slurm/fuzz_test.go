package slurm

import (
	"os"
	"path/filepath"
	"testing"
)

// The parsers read whatever a Slurm command printed; no input may make
// them panic. `go test` runs the seeds; `go test -fuzz=FuzzX` explores.

func seedFiles(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", pattern))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
}

func FuzzDecodeJobs(f *testing.F) {
	seedFiles(f, "*.json")
	f.Add([]byte(`{"jobs":[{"job_id":{"set":true,"number":"1"},"nodes":"n[1-3]","job_state":["RUNNING","COMPLETING"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, _, err := decodeJobs(data)
		for _, j := range jobs {
			_ = j.Target() + j.Display
			_ = j.Active() || j.Finished() || j.Held()
		}
		_, _, _ = decodeNodes(data)
		_ = err
	})
}

func FuzzParseJobsText(f *testing.F) {
	seedFiles(f, "scontrol_show_job_*.txt")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseJobsText(string(data))
		_, _ = parseNodesText(string(data))
	})
}

func FuzzParseSqueue(f *testing.F) {
	seedFiles(f, "squeue.txt")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseSqueue(string(data))
	})
}

func FuzzExpandHostlist(f *testing.F) {
	for _, s := range []string{"n[01-03]", "a[1-2]-b[3-4],c", "x[", "q[0-99999]", "a[1-9]b[1-9]c[1-9]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ExpandHostlist(s)
		if err == nil && len(names) > maxHosts {
			t.Fatalf("%d names", len(names))
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("slurm 22.05.8")
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseVersion(s) })
}
