package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/spotrescue/spotrescue/controller/config"
)

// globals holds what every subcommand shares: the config sources and the logger.
type globals struct {
	configFile string
	logLevel   string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "spotrescue",
		Short:         "Rescue Slurm jobs' scratch data from EC2 Spot interruptions and resume them",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `spotrescue watches for EC2 Spot interruption warnings, holds the affected Slurm
jobs, uploads their node-local scratch data to S3 within the two-minute
deadline, records every step in DynamoDB and requeues the jobs so that their
next run resumes from the rescued data.`,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "config", "", fmt.Sprintf("config file (default $%s or %s)", config.EnvConfigPath, config.DefaultPath))
	pf.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	root.AddCommand(
		newControllerCommand(g),
		newAgentCommand(g),
		newTaskPrologCommand(g),
		newSimulateCommand(g),
		newInspectCommand(g),
		newJobsCommand(g),
		newConfigCommand(g),
		newVersionCommand(),
	)
	return root
}

// The settings each kind of command reads: its --help lists these flags and
// hides the others, which it still accepts (one file, and one set of flags
// in a script, may serve every command).
var (
	// agentSettings: agent rescue, agent restore and taskprolog on compute nodes.
	agentSettings = []string{"cluster", "region", "bucket", "prefix", "scratch", "spool_dir", "slurm", "rescue.concurrency", "restore"}
	// clientSettings: jobs list and jobs show.
	clientSettings = []string{"cluster", "region", "state_table"}
	// drillSettings: simulate.
	drillSettings = []string{"cluster", "region", "queue_url", "node_table"}
	// inspectSettings: inspect, which asks the node table, Slurm and S3.
	inspectSettings = []string{"cluster", "region", "node_table", "bucket", "prefix", "scratch", "slurm", "rescue.states"}
)

// withConfig gives cmd a flag per configuration setting, and shows in its
// --help those of settings (all of them when none are named).
func withConfig(cmd *cobra.Command, settings ...string) *cobra.Command {
	config.BindFlags(cmd.Flags(), settings...)
	return cmd
}

// load reads and validates the configuration for role; every problem is
// reported at once. Flags come from cmd, which must have been made withConfig.
func (g *globals) load(cmd *cobra.Command, role config.Role) (*config.Config, error) {
	c, probs, err := config.Load(config.DefaultSources(cmd.Flags(), g.configFile))
	if err != nil {
		return nil, err
	}
	probs = append(probs, c.Validate(role)...)
	if role == config.RoleController {
		probs = append(probs, c.CheckSlurm()...)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// logger writes console lines on a terminal and JSON otherwise (journald, SSM output).
func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	if term.IsTerminal(int(os.Stderr.Fd())) {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	} else {
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "time"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		cfg.Sampling = nil // every rescue line matters
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	return cfg.Build()
}
