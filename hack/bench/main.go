// Command bench measures the spotrescue agent against `aws s3 sync`, the
// baseline most Spot rescue scripts use, on the lab's S3 endpoint: uploads
// (rescue) and downloads (restore) of three data sets, one tool at a time,
// in one run, so that the ratios compare like with like. Each transfer runs
// as a child process whose peak RSS is read from wait4's rusage; the agent
// runs as a hidden mode of this binary, through the same rescue.Agent the
// `spotrescue agent` command uses.
//
//	source /tmp/spotrescue-lab/lab.env && go run ./hack/bench -out hack/bench/BENCHMARKS.md
//
// `make bench` does that. Loopback S3 (moto_server) is CPU-bound on a small
// machine: compare the ratios of one run, never absolute numbers across runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
)

// options are the command line of a benchmark run.
type options struct {
	cases    []string
	tools    []string
	work     string
	out      string
	bucket   string
	pprof    string
	agentArg []string // passed to every agent child: tuning knobs
	keep     bool
	sharedS3 bool
	repeat   int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childMode {
		os.Exit(runChild(os.Args[2:]))
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	cases := fs.String("cases", "a,b,c", "data sets to run: a (1000 x 100 KiB), b (4 x 256 MiB), c (20,000 x 4 KiB), d (1 x 2 GiB)")
	tools := fs.String("tools", "aws,agent,agent-pack", "tools to measure: aws (aws s3 sync), agent (one object per file), agent-pack (small files packed)")
	fs.StringVar(&o.work, "work", filepath.Join(os.TempDir(), "spotrescue-bench"), "directory for the generated data and restores")
	fs.StringVar(&o.out, "out", "", "write the results to this Markdown file (BENCHMARKS.md)")
	fs.StringVar(&o.bucket, "bucket", "spotrescue-bench", "bucket to use on the lab's S3 (created, emptied afterwards)")
	fs.StringVar(&o.pprof, "pprof", "", "directory for CPU profiles of the agent children")
	fs.BoolVar(&o.keep, "keep", false, "keep the generated data for the next run")
	fs.BoolVar(&o.sharedS3, "shared-s3", false, "use the lab's moto_server (shared with other tests) instead of starting a private one")
	fs.IntVar(&o.repeat, "repeat", 0, "measure each transfer this many times, alternating which tool goes first, and report the best (0: 3 for a and b, 1 for c)")
	concurrency := fs.Int("concurrency", 0, "agent: files at once (0: the agent's default)")
	partSize := fs.Int64("part-size", 0, "agent: part size in bytes (0: default)")
	parts := fs.Int("parts", 0, "agent: part buffers per slot (0: default)")
	rangeSize := fs.Int64("range-size", 0, "agent: restore range size in bytes (0: default)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.cases, o.tools = strings.Split(*cases, ","), strings.Split(*tools, ",")
	for _, c := range o.cases {
		if _, ok := dataSets[c]; !ok {
			return o, fmt.Errorf("unknown case %q", c)
		}
	}
	o.agentArg = []string{fmt.Sprint("-concurrency=", *concurrency), fmt.Sprint("-part-size=", *partSize),
		fmt.Sprint("-parts=", *parts), fmt.Sprint("-range-size=", *rangeSize)}
	return o, nil
}

func run(ctx context.Context, o options) error {
	l, err := lab.Load() // credentials and region; the lab's S3 with -shared-s3
	if err != nil {
		return fmt.Errorf("the lab is not up (make lab-up): %w", err)
	}
	b, err := newBench(ctx, l, o)
	if err != nil {
		return err
	}
	defer b.close(ctx)
	started := time.Now()
	var results []result
	for _, c := range o.cases {
		rs, err := b.runCase(ctx, c)
		if err != nil {
			return fmt.Errorf("case %s: %w", c, err)
		}
		results = append(results, rs...)
	}
	where := "a private one started for this run (its temporary files on tmpfs), the same for every tool"
	if o.sharedS3 {
		where = "the lab's own (shared with whatever else runs in the lab)"
	}
	rep := report{results: results, took: time.Since(started), started: started, args: os.Args[1:], env: describeMachine(where)}
	fmt.Print(rep.table())
	if o.out != "" {
		return rep.write(o.out)
	}
	return nil
}
