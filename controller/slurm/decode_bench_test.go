package slurm

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// BenchmarkDecodeJobs2000 decodes squeue --json for a cluster of 2,000
// jobs, recorded from Slurm 22.05 (each of its jobs repeated): 22.05's
// squeue ignores filters, so each of the controller's batched reads in a
// mass reclaim decodes every job of the cluster.
func BenchmarkDecodeJobs2000(b *testing.B) {
	data := bigSqueue(b, 2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		jobs, _, err := decodeJobs(data)
		if err != nil || len(jobs) != 2000 {
			b.Fatalf("%d jobs, %v", len(jobs), err)
		}
	}
}

// bigSqueue repeats the recorded squeue.json's jobs to n.
func bigSqueue(tb testing.TB, n int) []byte {
	raw, err := os.ReadFile("testdata/22.05/squeue.json")
	if err != nil {
		tb.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatal(err)
	}
	var jobs []json.RawMessage
	if err := json.Unmarshal(doc["jobs"], &jobs); err != nil {
		tb.Fatal(err)
	}
	var out []json.RawMessage
	for len(out) < n {
		out = append(out, jobs[len(out)%len(jobs)])
	}
	doc["jobs"], _ = json.Marshal(out)
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(doc); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
