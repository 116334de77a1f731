// Package node is what spotrescue runs on a compute node: the agent that
// SSM starts to save a plan's jobs (Rescue), the Slurm Prolog that brings
// a rescued job's data back before its next run (Restore), and the
// TaskProlog that tells the job's tasks where it is (TaskEnv).
//
// It also holds the next run's side of the contract with the controller:
// which run and which status the next run sees (TaskEnv), which rescued
// node's data a node gets (PeerOf), and how a heterogeneous job's
// component is named (JobFromEnv).
//
// It imports no head-node package: its settings come from the command
// that runs it (Settings), and what it needs from slurmctld is a function
// that command gives it (Job.Lookup).
package node

import (
	"time"

	"github.com/spotrescue/spotrescue/rescue"
)

// Settings are the configuration the compute-node commands use.
type Settings struct {
	Cluster, Region, Bucket, Prefix string
	Spool                           string // the shared spool directory: plans, job env files
	ScratchRoot, PathTemplate       string // scratch.root, scratch.path_template
	Concurrency                     int    // rescue.concurrency; 0 for the agent's default
	Restore                         bool   // restore.enabled
	RestoreTimeout                  time.Duration
}

// Layout is where the cluster's rescued data and spool files are.
func (s Settings) Layout() rescue.Layout {
	return rescue.Layout{Bucket: s.Bucket, Prefix: s.Prefix, Cluster: s.Cluster, Spool: s.Spool}
}
