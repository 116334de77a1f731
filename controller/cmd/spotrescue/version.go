package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

// buildInfo describes this binary: version, commit and Go version.
func buildInfo() (ver, commit, goVersion string) {
	commit = "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return version, commit, runtime.Version()
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c, g := buildInfo()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "spotrescue %s (commit %s, %s)\n", v, c, g)
			return err
		},
	}
}
