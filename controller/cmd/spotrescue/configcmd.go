package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spotrescue/spotrescue/controller/config"
)

func newConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and explain the configuration",
	}
	cmd.AddCommand(newConfigValidateCommand(g))
	return cmd
}

func newConfigValidateCommand(g *globals) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Report every problem in the configuration, each with its field and a fix",
		Long: `Loads the configuration the way the controller does (defaults, ParallelCluster's
clustermgtd config, the YAML file, SPOTRESCUE_* environment, flags) and lists
every problem at once. Exit status 1 when there is any.

Settings:
` + settingsTable(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, ok := map[string]config.Role{"controller": config.RoleController, "agent": config.RoleAgent, "client": config.RoleClient}[role]
			if !ok {
				return fmt.Errorf("--role %q: use controller, agent or client", role)
			}
			if _, err := g.load(cmd, r); err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return err
		},
	}
	withConfig(cmd)
	cmd.Flags().StringVar(&role, "role", "controller", "what the configuration is for: controller, agent or client")
	return cmd
}

func settingsTable() string {
	var b strings.Builder
	for _, s := range config.Settings() {
		fmt.Fprintf(&b, "  %-24s %s\n", s.Path, s.Env)
	}
	return b.String()
}
