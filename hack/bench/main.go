// Command bench measures the spotrescue agent against `aws s3 sync`, the
// baseline most Spot rescue scripts use: uploads (rescue) and downloads
// (restore) of four data sets, one tool at a time, in one run, so that the
// ratios compare like with like. Each transfer runs as a child process
// whose peak RSS is read from wait4's rusage; the agent runs as a hidden
// mode of this binary, through the same rescue.Agent, AWS configuration
// and S3 client the `spotrescue agent` command uses.
//
// The S3 is a private server the bench starts: SeaweedFS by default (built
// by `hack/deps.sh bench`), which uses every core, so that the server is
// not what is measured; moto_server, the lab's emulator, with -s3 moto.
// Each data set runs twice: through hack/faultproxy's model of the network
// to S3 in a region (latency, per-connection bandwidth, S3's request-rate
// limits), and straight on loopback.
//
//	go run ./hack/bench -out hack/bench/BENCHMARKS.md
//
// `make bench` does that (it builds faultproxy, which must sit next to the
// bench binary). Compare the ratios of one run, never absolute numbers
// across runs.
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
	server   string   // the S3 server: weed or moto
	networks []string // none, model
	repeat   int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childMode {
		os.Exit(runChild(os.Args[2:]))
	}
	if len(os.Args) == 3 && os.Args[1] == "-replot" {
		if err := replot(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
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
	fs.StringVar(&o.server, "s3", "weed", "S3 server to start: weed (SeaweedFS, multi-threaded) or moto (moto_server, one core)")
	networks := fs.String("network", "model,none", "network between the tools and S3: model (hack/faultproxy with S3's latency, bandwidth and rate limits), none (loopback)")
	fs.IntVar(&o.repeat, "repeat", 0, "measure each transfer this many times, alternating which tool goes first, and report the best (0: 3 for a and b, 1 for c)")
	concurrency := fs.Int("concurrency", 0, "agent: files at once (0: the agent's default)")
	partSize := fs.Int64("part-size", 0, "agent: part size in bytes (0: default)")
	parts := fs.Int("parts", 0, "agent: part buffers per slot (0: default)")
	rangeSize := fs.Int64("range-size", 0, "agent: restore range size in bytes (0: default)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.cases, o.tools, o.networks = strings.Split(*cases, ","), strings.Split(*tools, ","), strings.Split(*networks, ",")
	for _, n := range o.networks {
		if n != "model" && n != "none" {
			return o, fmt.Errorf("unknown -network %q (model or none)", n)
		}
	}
	for _, c := range o.cases {
		if _, ok := dataSets[c]; !ok {
			return o, fmt.Errorf("unknown case %q", c)
		}
	}
	o.agentArg = []string{fmt.Sprint("-concurrency=", *concurrency), fmt.Sprint("-part-size=", *partSize),
		fmt.Sprint("-parts=", *parts), fmt.Sprint("-range-size=", *rangeSize)}
	return o, nil
}

// privateCredentials gives the tools credentials and a region for the
// bench's own S3 server, which accepts any, unless the environment has
// some already.
func privateCredentials() {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
}

func run(ctx context.Context, o options) error {
	var l *lab.Lab
	if o.sharedS3 {
		var err error
		if l, err = lab.Load(); err != nil {
			return fmt.Errorf("-shared-s3 needs the lab (make lab-up): %w", err)
		}
	} else {
		privateCredentials()
	}
	b, err := newBench(ctx, l, o)
	if err != nil {
		return err
	}
	defer b.close(ctx)
	started := time.Now()
	costs, err := b.serverCosts(ctx)
	if err != nil {
		return err
	}
	var results []result
	for _, network := range o.networks {
		if err := b.useNetwork(network); err != nil {
			return err
		}
		for _, c := range o.cases {
			rs, err := b.runCase(ctx, c, network)
			if err != nil {
				return fmt.Errorf("case %s, network %s: %w", c, network, err)
			}
			results = append(results, rs...)
		}
	}
	rep := report{results: results, costs: costs, took: time.Since(started), started: started, args: os.Args[1:], env: describeMachine(b.server.name)}
	fmt.Print(rep.text())
	if o.out == "" {
		return nil
	}
	plots, err := rep.plot(filepath.Dir(o.out))
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	fmt.Fprintln(os.Stderr, "bench: wrote", strings.Join(plots, ", "))
	return rep.write(o.out)
}

// replot draws the plots of the run recorded in a BENCHMARKS.md again,
// next to it, without measuring anything: `bench -replot hack/bench/BENCHMARKS.md`.
func replot(md string) error {
	data, err := os.ReadFile(md)
	if err != nil {
		return err
	}
	rs, err := parseResults(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", md, err)
	}
	files, err := report{results: rs}.plot(filepath.Dir(md))
	if err == nil {
		fmt.Fprintln(os.Stderr, "bench: wrote", strings.Join(files, ", "))
	}
	return err
}
