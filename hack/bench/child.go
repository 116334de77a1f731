package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/confine"
)

// childMode is the hidden first argument that makes this binary one agent
// transfer, so that its peak RSS can be measured on its own.
const childMode = "_agent"

// agentNode is the node name the benchmark's agent saves under.
const agentNode = "bench"

type childArgs struct {
	dir, bucket, prefix, uri, target, pprof string
	concurrency, parts                      int
	partSize, rangeSize                     int64
	pack                                    bool
}

func runChild(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "bench child: rescue or restore?")
		return 2
	}
	op := args[0]
	var c childArgs
	fs := flag.NewFlagSet(childMode, flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "rescue: directory to upload")
	fs.StringVar(&c.bucket, "bucket", "", "rescue: bucket")
	fs.StringVar(&c.prefix, "prefix", "", "rescue: node prefix")
	fs.StringVar(&c.uri, "uri", "", "restore: run URI")
	fs.StringVar(&c.target, "target", "", "restore: target directory")
	fs.StringVar(&c.pprof, "pprof", "", "write a CPU profile here")
	fs.IntVar(&c.concurrency, "concurrency", 0, "")
	fs.IntVar(&c.parts, "parts", 0, "")
	fs.Int64Var(&c.partSize, "part-size", 0, "")
	fs.Int64Var(&c.rangeSize, "range-size", 0, "")
	fs.BoolVar(&c.pack, "pack", false, "rescue: pack small files (Plan.Pack)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if c.pprof != "" {
		if stop, err := startProfile(c.pprof); err == nil {
			defer stop()
		}
	}
	if err := child(context.Background(), op, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

func startProfile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// child builds the agent as `spotrescue agent` does (same retryer,
// path-style addressing for a custom endpoint) and runs one transfer.
func child(ctx context.Context, op string, c childArgs) error {
	cfg, err := rescue.AWSConfig(ctx, "")
	if err != nil {
		return err
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	a := &rescue.Agent{S3: rescue.NewS3(cfg), Log: log, Concurrency: c.concurrency, PartSize: c.partSize, PartBuffers: c.parts, RangeSize: c.rangeSize, Checkpoint: time.Hour}
	switch op {
	case "rescue":
		a.Root = filepath.Dir(c.dir)
		plan := &rescue.Plan{ID: "bench", Node: agentNode, Bucket: c.bucket, Pack: c.pack, Jobs: []rescue.PlanJob{{JobID: "1", Dir: c.dir, Prefix: c.prefix}}}
		far := time.Now().Add(time.Hour)
		r := a.Rescue(ctx, plan, rescue.Deadlines{Soft: far, Hard: far})[0]
		fmt.Println(r.Summary())
		if r.Err == nil && !r.Manifest.Complete {
			r.Err = errors.New("the rescue is not complete")
		}
		return r.Err
	case "restore":
		if err := os.MkdirAll(c.target, 0o700); err != nil {
			return err
		}
		dir, err := confine.OpenRoot(c.target)
		if err != nil {
			return err
		}
		defer dir.Close()
		r, err := a.Restore(ctx, rescue.RestoreRequest{JobID: "1", Node: agentNode, From: agentNode, URI: c.uri, Dir: dir, UID: os.Getuid(), GID: os.Getgid()})
		if err != nil {
			return err
		}
		fmt.Printf("restored %d entries, %d bytes: %s\n", r.Files, r.Bytes, r.Status)
		return nil
	}
	return fmt.Errorf("unknown operation %q", op)
}
