package main

import (
	"github.com/spf13/cobra"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/rescue/node"
)

func newTaskPrologCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "taskprolog",
		Short: "Print the job's SPOT_RESCUE_* variables as export lines (the Slurm TaskProlog)",
		Long: `Run by the Slurm TaskProlog as the job's user before each task. Prints
export SPOT_RESCUE_SCRATCH=<the job's scratch directory>, and for a job resumed
after a rescue: SPOT_RESCUE_URI (the rescued run's S3 prefix), SPOT_RESCUE_STATUS
(complete, partial or failed), SPOT_RESCUE_RUN (the restart count rescued) and
SPOT_RESCUE_DIR (where the data was restored, when it was). In the batch
script's TaskProlog of a resumed job it also prints "print spotrescue: ..."
lines, which Slurm writes at the top of the job's output: which run it
resumes, from which node and when, what was restored, and what is missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			return node.TaskEnv(cmd.Context(), cmd.OutOrStdout(), nodeSettings(cfg), slurmJob(cfg))
		},
	}
	withConfig(cmd, agentSettings...)
	return cmd
}
