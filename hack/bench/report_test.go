package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() report {
	var rs []result
	add := func(network, c, op, tool string, secs float64) {
		rs = append(rs, result{caseName: c, op: op, tool: tool, network: network, set: dataSets[c], wall: time.Duration(secs * float64(time.Second)), runs: 1})
	}
	for _, n := range []string{"model", "none"} {
		add(n, "a", "upload", "aws", 6)
		add(n, "a", "upload", "agent", 1.5)
		add(n, "a", "upload", "agent-pack", 0.3)
		add(n, "c", "upload", "aws", 90)
		add(n, "c", "upload", "agent", 40)
		add(n, "c", "upload", "agent-pack", 1)
	}
	return report{results: rs, started: time.Now(), costs: []serverCost{{name: "S", requests: 4000, cpu: 2 * time.Second, wall: time.Second}}}
}

// The tables mark each target met or missed, per network, and the (c)
// deadline; the Markdown embeds a plot per network that plot writes.
func TestReportMarksTargetsAndPlots(t *testing.T) {
	r := sample()
	md := r.section()
	for _, want := range []string{
		"| (a) 1000 x 100 KiB | upload | agent | 1.5 | 1: 0.0, 0.0 | 65.1 | 4.00x | 3.0x met |",
		"| (c) 20,000 x 4 KiB | upload | agent | 40.0 | 1: 0.0, 0.0 | 2.0 | 2.25x | 3.0x **missed**; <= 30s **missed** |",
		"| (c) 20,000 x 4 KiB | upload | agent-pack | 1.0 | 1: 0.0, 0.0 | 78.1 | 90.00x | 3.0x met; <= 30s met |",
		"S: 0.50 ms of CPU per request",
		"](agent-vs-aws-model.png)", "](agent-vs-aws-none.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, networkNames["model"]) > strings.Index(md, networkNames["none"]) {
		t.Error("the networks are not in the order they ran")
	}
	dir := t.TempDir()
	files, err := r.plot(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("plot: %v, %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG: %v", filepath.Base(f), err)
		}
	}
}

// -replot reads a recorded run back: the same results, the ratios within
// the tables' rounding.
func TestParseResultsRoundTrip(t *testing.T) {
	r := sample()
	rs, err := parseResults(r.section())
	if err != nil || len(rs) != len(r.results) {
		t.Fatalf("parsed %d results, want %d: %v", len(rs), len(r.results), err)
	}
	for i, x := range rs {
		want := r.results[i]
		if x.network != want.network || x.caseName != want.caseName || x.op != want.op || x.tool != want.tool {
			t.Fatalf("result %d: %+v, want %+v", i, x, want)
		}
		if d := x.wall.Seconds()/want.wall.Seconds() - 1; d > 0.02 || d < -0.02 {
			t.Errorf("result %d: %s, want %s", i, x.wall, want.wall)
		}
	}
}
