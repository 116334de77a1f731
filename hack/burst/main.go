// Command burst measures a mass Spot reclaim (`make bench-burst`): N
// interruption warnings put on the queue at once, for N instances mapped to
// Slurm nodes with running jobs, handled by the real spotrescue controller.
// It prints receipt -> SSM dispatch latency percentiles, the time until the
// last dispatch, AWS calls per interruption by service and operation
// (counted at the SDK middleware), Slurm commands per burst, controller CPU
// seconds and RSS, and the same figures for a baseline handled the way the
// seed's Lambda does it: one event at a time, one SendCommand per instance.
//
// Modes:
//
//	-mode replay (default, 1000 nodes): Slurm is hack/slurmreplay serving a
//	  recorded cluster state built from the real Slurm 22.05 capture; AWS is
//	  one private moto_server per service (SQS, SSM, DynamoDB with S3), SSM's
//	  recording commands and running nothing. Only dispatch is measured:
//	  nothing is uploaded. -network model adds 10-30 ms to every AWS call
//	  (hack/faultproxy).
//	-mode lab: the real lab (make lab-up LAB_NODES=50): real slurmd nodes
//	  with running jobs, ssmlocal running the agent, data uploaded.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	mode        string
	n           int
	jobsPerNode int
	baseline    bool
	bin         string
	keep        bool
	cpuProfile  string
	slowest     int
	perService  bool   // replay: one emulator process per service
	motoSQS     string // replay: fast (moto_sqs.py) or stock moto_server for SQS
	network     string // none, or model: faultproxy's AWS latency in front of the emulators
	plot        string // write the receipt -> dispatch plot to this PNG
	// nodeName is the replayed nodes' name before their number
	// (ParallelCluster's <queue>-dy-<compute resource>-); burst-dy-c5- when "".
	nodeName string
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "replay", "replay (recorded Slurm state, up to thousands of nodes) or lab (real slurmd nodes)")
	flag.IntVar(&o.n, "n", 1000, "interruptions in the burst (nodes)")
	flag.IntVar(&o.jobsPerNode, "jobs-per-node", 2, "running jobs per interrupted node")
	flag.BoolVar(&o.baseline, "baseline", true, "also measure the one-event-at-a-time baseline")
	flag.StringVar(&o.bin, "bin", "bin", "directory with spotrescue and slurmreplay")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "write the controller's CPU profile for the burst to this file")
	flag.IntVar(&o.slowest, "slowest", 0, "list the N records that waited longest for their dispatch")
	flag.StringVar(&o.network, "network", "none", "model: every AWS call of the controller and the baseline waits 10-30 ms in faultproxy, as from an instance to its Region; none: straight to the emulators")
	flag.StringVar(&o.plot, "plot", "", "write a plot of receipt -> dispatch over the burst (PNG) to this file")
	flag.BoolVar(&o.perService, "per-service", true, "replay: one moto_server per service (SQS, SSM, DynamoDB with S3) rather than one for all")
	flag.StringVar(&o.motoSQS, "moto-sqs", "fast", "replay: fast runs SQS on hack/burst/moto_sqs.py (moto with queue attributes computed when read; moto_server scans the queue for every message); stock runs moto_server")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
}
