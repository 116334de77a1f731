// Command spotrescue rescues the node-local scratch data of Slurm jobs on EC2
// Spot instances before the instance is reclaimed, and resumes the job from
// it. One binary serves the head-node controller, the compute-node agent, the
// Slurm hooks and the operator commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spotrescue/spotrescue/controller/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		var probs config.Problems
		if !errors.As(err, &probs) {
			fmt.Fprintln(os.Stderr, "spotrescue:", err)
		} else {
			fmt.Fprintln(os.Stderr, probs.Error())
		}
		os.Exit(1)
	}
}
