// Package agents starts the rescue agent on compute nodes through SSM Run
// Command, from the head node: it writes one plan per instance in the
// shared spool (rescue.Plan, which the agent reads) and sends one
// SendCommand per 50 instances, and tells the controller how each
// invocation went.
package agents

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/batch"
	"github.com/spotrescue/spotrescue/rescue"
)

// SSMAPI is the part of SSM the dispatcher uses.
type SSMAPI interface {
	SendCommand(ctx context.Context, in *ssm.SendCommandInput, opts ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetCommandInvocation(ctx context.Context, in *ssm.GetCommandInvocationInput, opts ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
	CancelCommand(ctx context.Context, in *ssm.CancelCommandInput, opts ...func(*ssm.Options)) (*ssm.CancelCommandOutput, error)
}

// MaxTargets is how many instances one SendCommand may name.
const MaxTargets = 50

// Request asks for one job's data on one instance to be saved.
type Request struct {
	Instance string
	Node     string
	Job      rescue.PlanJob
	Deadline time.Time
	Reclaim  time.Time
	// Presync copies ahead of an interruption, without a deadline; it never
	// shares a plan with a final rescue.
	Presync bool
}

// Dispatcher gathers the requests arriving within Window into one plan per
// instance and one SendCommand per 50 instances: a mass reclaim costs a
// few API calls, not one per job.
type Dispatcher struct {
	SSM      SSMAPI
	Layout   rescue.Layout
	Region   string
	Document string
	Window   time.Duration
	Log      *zap.Logger
	DryRun   bool
	// How the agents upload: see rescue.Plan.
	Priority []string
	Checksum string
	Pack     bool // small files in packs from the start
	PackLate bool // small files in packs once one object each would miss the deadline

	once    sync.Once
	batches *batch.Batcher[group, sent]
}

// planKey tells apart the plans of one batch: an instance gets at most one
// final plan and one pre-sync plan.
type planKey struct {
	instance string
	presync  bool
}

// group is one caller's requests for one plan.
type group struct {
	key  planKey
	reqs []Request
}

// sent is what became of a group: its command, or why it has none.
type sent struct {
	cmd string
	err error
}

// Dispatch adds reqs to the batch being gathered and waits until it is sent.
// It returns the SSM command id for each instance that got its plan.
func (d *Dispatcher) Dispatch(ctx context.Context, reqs []Request) (map[string]string, error) {
	d.once.Do(func() {
		// Past two minutes every instance of the batch is gone.
		d.batches = &batch.Batcher[group, sent]{Window: d.Window, Max: MaxTargets, Timeout: 2 * time.Minute, Run: d.run}
	})
	var groups []group
	at := map[planKey]int{}
	for _, r := range reqs {
		k := planKey{r.Instance, r.Presync}
		i, ok := at[k]
		if !ok {
			i, at[k] = len(groups), len(groups)
			groups = append(groups, group{key: k})
		}
		groups[i].reqs = append(groups[i].reqs, r)
	}
	res, err := d.batches.Do(ctx, groups...)
	if err != nil {
		return nil, err
	}
	cmds := map[string]string{}
	var errs []error
	for i, g := range groups {
		if res[i].err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", g.key.instance, res[i].err))
			continue
		}
		cmds[g.key.instance] = res[i].cmd
	}
	return cmds, errors.Join(errs...)
}

// run sends one batch: the groups of an instance make one plan (the
// earliest deadline wins), final rescues and pre-syncs in separate
// commands, since an agent finds its plan by plan id and instance.
func (d *Dispatcher) run(ctx context.Context, groups []group) ([]sent, error) {
	plans := map[planKey]*rescue.Plan{}
	for _, g := range groups {
		for _, r := range g.reqs {
			p := plans[g.key]
			if p == nil {
				p = &rescue.Plan{Instance: r.Instance, Node: r.Node, Cluster: d.Layout.Cluster, Region: d.Region, Bucket: d.Layout.Bucket,
					Deadline: r.Deadline, Reclaim: r.Reclaim, Presync: r.Presync, Priority: d.Priority, Checksum: d.Checksum, Pack: d.Pack, PackLate: d.PackLate}
				plans[g.key] = p
			}
			p.Jobs = appendJob(p.Jobs, r.Job)
			if r.Deadline.Before(p.Deadline) {
				p.Deadline, p.Reclaim = r.Deadline, r.Reclaim
			}
		}
	}
	b := &outcome{plans: plans, cmds: map[planKey]string{}, errs: map[planKey]error{}}
	for _, presync := range []bool{false, true} {
		var instances []string
		for k := range plans {
			if k.presync == presync {
				instances = append(instances, k.instance)
			}
		}
		if len(instances) > 0 {
			sort.Strings(instances)
			d.send(ctx, b, presync, instances)
		}
	}
	out := make([]sent, len(groups))
	for i, g := range groups {
		out[i] = sent{b.cmds[g.key], b.errs[g.key]}
	}
	return out, nil
}

// outcome is what sending one batch's plans came to.
type outcome struct {
	plans map[planKey]*rescue.Plan
	cmds  map[planKey]string
	errs  map[planKey]error
}

func appendJob(jobs []rescue.PlanJob, j rescue.PlanJob) []rescue.PlanJob {
	for _, have := range jobs {
		if have.JobID == j.JobID && have.Run == j.Run {
			return jobs
		}
	}
	return append(jobs, j)
}

// send writes the plans and runs the document on instances. If SSM refuses
// the whole call (one instance is no longer managed, say), each instance is
// retried alone so one lost node does not cost the others their rescue.
func (d *Dispatcher) send(ctx context.Context, b *outcome, presync bool, instances []string) {
	id := rescue.NewPlanID()
	for _, inst := range instances {
		p := b.plans[planKey{inst, presync}]
		p.ID = id
		if d.DryRun {
			continue
		}
		if err := d.Layout.WritePlan(p); err != nil {
			b.errs[planKey{inst, presync}] = err
		}
	}
	targets := instances[:0:0]
	for _, inst := range instances {
		if b.errs[planKey{inst, presync}] == nil {
			targets = append(targets, inst)
		}
	}
	if len(targets) == 0 {
		return
	}
	cmd, err := d.sendCommand(ctx, id, targets)
	if err != nil {
		// No agent will read them; a retry writes plans of its own.
		for _, inst := range targets {
			d.Layout.RemovePlan(id, inst)
		}
	}
	if err != nil && len(targets) > 1 {
		d.Log.Warn("SendCommand failed for the batch; retrying each instance", zap.Int("instances", len(targets)), zap.Error(err))
		for _, inst := range targets {
			d.send(ctx, b, presync, []string{inst})
		}
		return
	}
	for _, inst := range targets {
		if err != nil {
			b.errs[planKey{inst, presync}] = err
		} else {
			b.cmds[planKey{inst, presync}] = cmd
		}
	}
}

// Cancel stops an agent still running, a pre-sync about to be overtaken
// by the final rescue of the same node. A command already finished is not
// an error.
func (d *Dispatcher) Cancel(ctx context.Context, command, instance string) error {
	if d.DryRun {
		return nil
	}
	_, err := d.SSM.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(command), InstanceIds: []string{instance}})
	var done *ssmtypes.InvalidCommandId
	if err != nil && !errors.As(err, &done) {
		return fmt.Errorf("cancel %s on %s: %w", command, instance, err)
	}
	return nil
}

func (d *Dispatcher) sendCommand(ctx context.Context, plan string, instances []string) (string, error) {
	if d.DryRun {
		d.Log.Info("dry run: would send the rescue command", zap.String("plan", plan), zap.Strings("instances", instances))
		return "dry-run-" + plan, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := d.SSM.SendCommand(ctx, &ssm.SendCommandInput{
		DocumentName:   aws.String(d.Document),
		InstanceIds:    instances,
		Parameters:     map[string][]string{"Plan": {plan}},
		Comment:        aws.String("spotrescue plan " + plan),
		MaxConcurrency: aws.String("100%"),
		MaxErrors:      aws.String("100%"),
		TimeoutSeconds: aws.Int32(30), // delivery timeout: past it the instance is gone anyway
	})
	if err != nil {
		return "", fmt.Errorf("send command to %d instance(s): %w", len(instances), err)
	}
	d.Log.Info("rescue dispatched", zap.String("plan", plan), zap.String("command", aws.ToString(out.Command.CommandId)), zap.Strings("instances", instances))
	return aws.ToString(out.Command.CommandId), nil
}

// Status returns the SSM invocation status of command on instance. Right
// after SendCommand SSM may not know the invocation yet: that is Pending.
func (d *Dispatcher) Status(ctx context.Context, command, instance string) (string, error) {
	if d.DryRun {
		return string(ssmtypes.CommandInvocationStatusSuccess), nil
	}
	out, err := d.SSM.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(command), InstanceId: aws.String(instance)})
	var missing *ssmtypes.InvocationDoesNotExist
	if errors.As(err, &missing) {
		return string(ssmtypes.CommandInvocationStatusPending), nil
	}
	if err != nil {
		return "", fmt.Errorf("invocation %s on %s: %w", command, instance, err)
	}
	return string(out.Status), nil
}
