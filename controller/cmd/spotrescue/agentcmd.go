package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue/node"
)

func newAgentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run on a compute node: save (rescue) or bring back (restore) a job's scratch data",
	}
	cmd.AddCommand(newAgentRescueCommand(g), newAgentRestoreCommand(g))
	return cmd
}

func newAgentRescueCommand(g *globals) *cobra.Command {
	var planID, instance string
	cmd := &cobra.Command{
		Use:   "rescue --plan <id>",
		Short: "Upload the scratch data of the jobs in a rescue plan to S3 (run by SSM)",
		Long: `Reads the plan the controller wrote for this instance in the shared spool
directory, uploads each job's scratch directory to S3 in parallel (files
matching the plan's priority patterns first, then newest first), stops
starting files at the deadline (from IMDS spot/instance-action when reachable,
else the plan's), aborts what is still in flight at the hard stop, and writes
each job's manifest last. Files a previous manifest at the prefix (a pre-sync)
already holds unchanged are not sent again. A pre-sync plan has no deadline.
Prints one summary line per job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			return node.Rescue(cmd.Context(), nodeSettings(cfg), log, cmd.OutOrStdout(), planID, instance)
		},
	}
	withConfig(cmd, agentSettings...)
	cmd.Flags().StringVar(&planID, "plan", "", "rescue plan id (from the SSM document's Plan parameter)")
	cmd.Flags().StringVar(&instance, "instance", "", "this instance's id (default $AWS_SSM_INSTANCE_ID, else IMDS)")
	cmd.MarkFlagRequired("plan")
	return cmd
}

func newAgentRestoreCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a rescued job's scratch data before its next run (the Slurm Prolog)",
		Long: `Run by the Slurm Prolog as root on each node of a starting job. Creates the job's
scratch directory, and if the job was rescued, downloads the files its manifest
lists, verifies every checksum and renames them into place. Reads SLURM_JOB_ID,
SLURM_JOB_UID, SLURM_JOB_USER, SLURMD_NODENAME and SLURM_JOB_NODELIST.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			return node.Restore(cmd.Context(), nodeSettings(cfg), log, slurmJob(cfg))
		},
	}
	withConfig(cmd, agentSettings...)
	return cmd
}

// nodeSettings are the settings of the compute-node commands (package
// node), from the configuration.
func nodeSettings(cfg *config.Config) node.Settings {
	return node.Settings{
		Cluster: cfg.Cluster, Region: cfg.Region, Bucket: cfg.Bucket, Prefix: cfg.Prefix, Spool: cfg.SpoolDir,
		ScratchRoot: cfg.Scratch.Root, PathTemplate: cfg.Scratch.PathTemplate, Concurrency: cfg.Rescue.Concurrency,
		Restore: cfg.Restore.Enabled, RestoreTimeout: cfg.Restore.Timeout.Std(),
	}
}

// slurmJob is the starting job as Slurm's environment describes it; the
// Prolog asks slurmctld for what the environment leaves out.
func slurmJob(cfg *config.Config) node.Job {
	job := node.JobFromEnv(os.Getenv)
	job.Lookup = func(ctx context.Context, id string) (string, string, error) {
		j, err := slurm.New(cfg.Slurm.BinDir, slurm.WithRetry(2, time.Second)).Job(ctx, id)
		if err != nil {
			return "", "", err
		}
		return j.ArrayJobID, j.ArrayTaskID, nil
	}
	return job
}
