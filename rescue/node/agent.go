package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Rescue runs the agent of plan planID on this instance (instance, or
// $AWS_SSM_INSTANCE_ID, or IMDS's): it uploads each job's scratch data as
// the plan says, by the deadline from IMDS spot/instance-action when it
// answers, else the plan's, and writes one summary line per job to out.
func Rescue(ctx context.Context, s Settings, log *zap.Logger, out io.Writer, planID, instance string) error {
	if !rescue.ValidPlanID(planID) {
		return fmt.Errorf("--plan %q is not a plan id", planID)
	}
	awsCfg, err := rescue.AWSConfig(ctx, s.Region)
	if err != nil {
		return err
	}
	meta := imds.NewFromConfig(awsCfg)
	if instance == "" {
		instance = os.Getenv("AWS_SSM_INSTANCE_ID") // set by the SSM agent
	}
	if instance == "" {
		if instance, err = rescue.InstanceID(ctx, meta); err != nil {
			return fmt.Errorf("find this instance's id: %w", err)
		}
	}
	if !naming.ValidInstance(instance) {
		return fmt.Errorf("instance id %q is not valid", instance)
	}
	plan, err := s.Layout().ReadPlan(planID, instance)
	if err != nil {
		return err
	}
	if plan.Region != "" {
		awsCfg.Region = plan.Region
	}
	// The agent adds the plan's node, instance and id to its own lines.
	agent := &rescue.Agent{S3: rescue.NewS3(awsCfg), Log: log, Root: s.ScratchRoot, Concurrency: s.Concurrency}
	log = log.With(zap.String("node", plan.Node), zap.String("instance", instance), zap.String("plan", plan.ID))
	d := rescue.ResolveDeadlines(plan.Deadline, plan.Reclaim.Sub(plan.Deadline), time.Time{})
	if !plan.Presync {
		// A pre-sync has no deadline (the agent ignores it), so IMDS is only
		// asked when the instance is really going.
		d = rescue.ResolveDeadlines(plan.Deadline, plan.Reclaim.Sub(plan.Deadline), instanceAction(ctx, meta, log))
	}
	var failed []error
	for _, r := range agent.Rescue(ctx, plan, d) {
		if r.Err != nil {
			log.Error("job not rescued", zap.String("job", r.JobID), zap.Error(r.Err))
			failed = append(failed, r.Err)
		}
		// One plain line per job: what an operator reads in the SSM output.
		fmt.Fprintln(out, r.Summary())
	}
	return errors.Join(failed...)
}

// instanceAction asks IMDS briefly: an unreachable IMDS must not eat the deadline.
func instanceAction(ctx context.Context, meta *imds.Client, log *zap.Logger) time.Time {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t, err := rescue.InstanceAction(ctx, meta)
	if err != nil {
		log.Info("IMDS spot/instance-action not available; using the plan's deadline", zap.Error(err))
	}
	return t
}
