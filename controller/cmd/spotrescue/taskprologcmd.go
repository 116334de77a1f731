package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/rescue"
)

func newTaskPrologCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "taskprolog",
		Short: "Print the job's SPOT_RESCUE_* variables as export lines (the Slurm TaskProlog)",
		Long: `Run by the Slurm TaskProlog as the job's user before each task. Prints
export SPOT_RESCUE_SCRATCH=<the job's scratch directory>, and for a job resumed
after a rescue: SPOT_RESCUE_URI (the rescued run's S3 prefix), SPOT_RESCUE_STATUS
(complete, partial or failed), SPOT_RESCUE_RUN (the restart count rescued) and
SPOT_RESCUE_DIR (where the data was restored, when it was).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			return printTaskEnv(cmd.Context(), cmd.OutOrStdout(), cfg, prologEnv())
		},
	}
	withConfig(cmd, agentSettings...)
	return cmd
}

func printTaskEnv(ctx context.Context, w io.Writer, cfg *config.Config, env jobEnv) error {
	dir, err := env.scratchDir(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "export %s=%s\n", rescue.VarScratch, dir)
	saved, err := layoutOf(cfg).ReadJobEnv(env.JobID)
	if errors.Is(err, rescue.ErrNoEnv) {
		return nil
	}
	if err != nil {
		return err
	}
	status := saved.Status
	if cfg.Restore.Enabled {
		if m := restored(ctx, cfg, env, saved); m != nil {
			// kept: the directory already held the job's data, at least as
			// new as what was rescued; it is where the job finds it.
			if m.Status == "complete" || m.Status == "partial" || m.Status == restoreKept {
				fmt.Fprintf(w, "export %s=%s\n", rescue.VarDir, m.Dir)
			}
			status = worse(status, m.Status)
		}
	}
	fmt.Fprintf(w, "export %s=%s\nexport %s=%s\nexport %s=%d\n", rescue.VarURI, saved.URI, rescue.VarStatus, status, rescue.VarRun, saved.Run)
	return nil
}

// restored is what the Prolog restored for this run, or, if it did not run
// (slurmd skips the Prolog of a requeued job that comes back to a node
// within the credential lifetime), what this TaskProlog restores itself,
// as the job's user, once for all the job's tasks on the node.
func restored(ctx context.Context, cfg *config.Config, env jobEnv, saved *rescue.JobEnv) *rescue.Restored {
	log := zap.NewNop()
	dir, err := env.scratch(cfg, log)
	if err != nil {
		return &rescue.Restored{Status: "failed"}
	}
	defer dir.Close()
	agent := &rescue.Agent{Root: cfg.Scratch.Root}
	current := func() *rescue.Restored { return agent.ReadMarker(env.Node, dir, env.JobID, env.Restarts, saved.Run) }
	if m := current(); m != nil {
		return m
	}
	unlock, err := rescue.LockScratch(dir, cfg.Restore.Timeout.Std())
	if err != nil {
		return &rescue.Restored{Status: "failed"}
	}
	defer unlock()
	if m := current(); m != nil {
		return m // another task of the job restored it meanwhile
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Restore.Timeout.Std())
	defer cancel()
	m, err := restoreJob(ctx, cfg, log, env, dir, saved)
	if err != nil {
		return &rescue.Restored{Status: "failed"}
	}
	return m
}

// worse returns the less complete of two statuses.
func worse(a, b string) string {
	rank := map[string]int{"complete": 0, "partial": 1, "failed": 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}
