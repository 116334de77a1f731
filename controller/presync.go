package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// presyncer copies jobs' scratch to S3 before any warning, without a
// deadline, so that a final rescue moves only what changed since: on a
// Rebalance Recommendation, when the node is at elevated risk, and, with
// rescue.presync_every, for every node on a timer. Pre-syncs are best
// effort and record nothing in DynamoDB: the jobs are not interrupted
// (yet). It remembers the pre-sync each instance may still run, so that a
// final rescue stops it first: one writer per prefix.
type presyncer struct {
	policy     Policy
	plans      planner
	slurm      Slurm
	nodes      Nodes
	dispatcher Dispatcher
	records    *records
	log        *zap.Logger
	metrics    *Metrics
	now        func() time.Time

	mu      sync.Mutex
	running map[string]string // instance -> pre-sync command that may still run
}

// node pre-syncs the jobs of one node after a Rebalance Recommendation,
// unless its final rescue is under way.
func (p *presyncer) node(ctx context.Context, log *zap.Logger, instance, node string) {
	if p.finalRescueOf(ctx, instance) {
		log.Info("no pre-sync: the instance's final rescue is under way")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	jobs, err := p.slurm.Jobs(ctx)
	if err != nil {
		log.Warn("no pre-sync: cannot list Slurm jobs", zap.Error(err))
		return
	}
	p.start(ctx, log, p.requests(log, jobs, instance, node))
}

// loop pre-syncs every node every period until ctx ends.
func (p *presyncer) loop(ctx context.Context, period time.Duration) {
	every(ctx, period, func(ctx context.Context) {
		// Every call is bounded: a pass must end before the next tick.
		ctx, cancel := context.WithTimeout(ctx, min(period/2, 2*time.Minute))
		defer cancel()
		p.all(ctx)
	})
}

// all pre-syncs the running jobs of every node of the cluster: one Slurm
// listing, and SendCommands of up to 50 instances. A node whose last
// pre-sync still runs, or whose jobs are being rescued, is left alone.
func (p *presyncer) all(ctx context.Context) {
	log := p.log.With(zap.String("presync", "timer"))
	jobs, err := p.slurm.Jobs(ctx)
	if err != nil {
		log.Warn("no pre-sync: cannot list Slurm jobs", zap.Error(err))
		return
	}
	// A held job is being rescued (our hold) or was held by its user:
	// either way not a job to copy now.
	jobs = slices.DeleteFunc(jobs, func(j slurm.Job) bool { return j.Held() })
	rescuing := p.records.instances()
	var reqs []agents.Request
	for _, node := range nodesOf(jobs) {
		instance, err := p.nodes.InstanceOf(ctx, node)
		if err != nil {
			continue // not a node of this cluster's node table (static, or foreign)
		}
		if rescuing[instance] || p.stillRunning(ctx, instance) {
			continue
		}
		reqs = append(reqs, p.requests(log, jobs, instance, node)...)
	}
	p.start(ctx, log, reqs)
}

// requests is one request per job of node that would be rescued.
func (p *presyncer) requests(log *zap.Logger, jobs []slurm.Job, instance, node string) []agents.Request {
	units, _ := Decide(p.policy, jobs, node)
	var reqs []agents.Request
	far := p.now().Add(time.Hour)
	for _, u := range units {
		rq, err := p.plans.request(jobRecord("", u.Job), node, instance, far, far, true)
		if err != nil {
			log.Warn("no pre-sync for a job", zap.String("job", u.Job.ID), zap.String("node", node), zap.Error(err))
			continue
		}
		reqs = append(reqs, rq)
	}
	return reqs
}

// start sends the agents and notes their commands, so that a final rescue
// can cancel them first.
func (p *presyncer) start(ctx context.Context, log *zap.Logger, reqs []agents.Request) {
	if len(reqs) == 0 {
		return
	}
	cmds, err := p.dispatcher.Dispatch(ctx, reqs)
	if err != nil {
		p.metrics.awsError("ssm", "SendCommand")
		log.Warn("pre-sync not started on every node", zap.Error(err))
	}
	p.mu.Lock()
	for instance, cmd := range cmds {
		p.running[instance] = cmd
	}
	p.mu.Unlock()
	for instance, cmd := range cmds {
		log.Info("pre-sync started", zap.String("instance", instance), zap.String("command", cmd))
	}
}

// stillRunning reports whether the last pre-sync sent to instance may
// still run. SSM's status event usually said already (ended); SSM is asked
// only about a pre-sync no event has ended, and one that cannot be asked
// about counts as running.
func (p *presyncer) stillRunning(ctx context.Context, instance string) bool {
	p.mu.Lock()
	cmd, ok := p.running[instance]
	p.mu.Unlock()
	if !ok {
		return false
	}
	st, err := p.dispatcher.Status(ctx, cmd, instance)
	if err != nil || !event.TerminalStatus(st) {
		return true
	}
	p.ended(cmd, instance)
	return false
}

// ended forgets a pre-sync once its command has finished on instance.
func (p *presyncer) ended(command, instance string) {
	p.mu.Lock()
	if p.running[instance] == command {
		delete(p.running, instance)
	}
	p.mu.Unlock()
}

// finalRescueOf reports whether instance was warned: its final rescue is
// under way (or done), and a pre-sync now would upload beside it.
func (p *presyncer) finalRescueOf(ctx context.Context, instance string) bool {
	if p.records.instances()[instance] {
		return true
	}
	_, err := p.records.store.GetInterruption(ctx, instance)
	return !errors.Is(err, state.ErrNotFound) // unsure counts as under way
}

// stop cancels a pre-sync still running on instance before its final
// rescue starts, so the two never upload to one prefix at once.
func (p *presyncer) stop(ctx context.Context, instance string) {
	p.mu.Lock()
	cmd, ok := p.running[instance]
	delete(p.running, instance)
	p.mu.Unlock()
	if !ok {
		return
	}
	if err := p.dispatcher.Cancel(ctx, cmd, instance); err != nil {
		p.log.Warn("cannot cancel the pre-sync; the final rescue supersedes it", zap.String("instance", instance), zap.Error(err))
	}
}

// nodesOf lists, once each and sorted, the nodes of the active jobs.
func nodesOf(jobs []slurm.Job) []string {
	var nodes []string
	for i := range jobs {
		if jobs[i].Active() {
			nodes = append(nodes, jobs[i].Nodes...)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes)
}
