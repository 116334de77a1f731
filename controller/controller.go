// Package controller is the spotrescue daemon on the head node.
//
// It works like a Kubernetes controller. DynamoDB records (package state)
// are the objects; SQS messages are watch notifications. Read it top-down
// (ARCHITECTURE.md says which goroutine runs what and which lock guards
// what):
//
//   - controller.go wires the parts and runs the work queue: Run, then
//     runWorker -> processNextWorkItem -> Reconcile for each record;
//   - intake.go receives EventBridge messages; warnings.go turns a batch of
//     interruption warnings into records, taking the first steps for all of
//     them at once; events.go turns the other events into notes on records;
//   - reconcile.go moves one record toward Done, one step at a time, with
//     the steps of steps.go (hold), dispatch.go, track.go and requeue.go:
//     the same steps the intake takes, one implementation each;
//   - records.go keeps the records this controller wrote (its cache) and
//     writes them; commands.go tracks the SSM commands records wait on;
//     presync.go copies data ahead of warnings; cleanup.go empties the spool.
//
// Every step is written to DynamoDB before the next starts, so a controller
// killed at any point lists the unfinished records on start and carries on.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// Slurm is what the controller does to jobs and nodes.
type Slurm interface {
	Jobs(ctx context.Context) ([]slurm.Job, error)
	Job(ctx context.Context, id string) (*slurm.Job, error)
	Hold(ctx context.Context, ids ...string) error
	Release(ctx context.Context, ids ...string) error
	UserHold(ctx context.Context, ids ...string) error
	Requeue(ctx context.Context, id string) error
	Drain(ctx context.Context, nodes []string, reason string) error
	Signal(ctx context.Context, id, signal string) error
	SetAdminComment(ctx context.Context, id, comment string) error
	SetPartition(ctx context.Context, id, partition string) error
	Nodes(ctx context.Context) ([]slurm.Node, error)
	SetExcludedNodes(ctx context.Context, id, hostlist string) error
}

// Store is the controller's durable state.
type Store interface {
	// CreateAll writes each record that is not there yet; one error
	// each, state.ErrExists for a record that is.
	CreateAll(ctx context.Context, recs []*state.Record) []error
	Get(ctx context.Context, k state.Key) (*state.Record, error)
	Update(ctx context.Context, r *state.Record) error
	Active(ctx context.Context, cluster string) ([]state.Key, error)
	Runs(ctx context.Context, cluster, jobID string) ([]*state.Record, error)
	PutInterruptions(ctx context.Context, ins []*state.Interruption) error
	Exists(ctx context.Context, keys []state.Key) (map[state.Key]bool, error)
	GetInterruption(ctx context.Context, instance string) (*state.Interruption, error)
	PutSchedule(ctx context.Context, cluster string, sc state.Schedule) error
	Schedules(ctx context.Context, cluster string) ([]state.Schedule, error)
	DeleteSchedule(ctx context.Context, cluster, id string) error
	AwaitingResume(ctx context.Context, cluster string, since time.Time) ([]*state.Record, error)
}

// Nodes maps EC2 instances to Slurm nodes and back.
type Nodes interface {
	NodeOf(ctx context.Context, instance string) (string, error)
	InstanceOf(ctx context.Context, node string) (string, error)
}

// Dispatcher runs the agent on instances and reports on it.
type Dispatcher interface {
	Dispatch(ctx context.Context, reqs []agents.Request) (map[string]string, error)
	Status(ctx context.Context, command, instance string) (string, error)
	Cancel(ctx context.Context, command, instance string) error
}

// Manifests reads what an agent saved.
// Resumed returns the first later run's word of starting from the
// rescued data under nodePrefix (rescue.ReadResumed), nil for none.
type Manifests interface {
	Manifest(ctx context.Context, nodePrefix string) (*rescue.Manifest, error)
	Resumed(ctx context.Context, nodePrefix, job string, rescued int) (*rescue.Resumed, error)
}

// Options are the controller's settings.
type Options struct {
	Cluster         string
	Region          string
	QueueURL        string
	Layout          rescue.Layout
	ScratchTemplate string
	Margin          time.Duration // kept free before EC2 reclaims the instance
	// GiveUpAfter is how long after its deadline a record whose steps keep
	// failing is closed (see abandon); 10 minutes when 0.
	GiveUpAfter time.Duration
	// SpoolRetention is how old plans and ended jobs' env files get before
	// the controller removes them; 0 keeps them.
	SpoolRetention time.Duration
	Workers        int    // records reconciled at once
	Receivers      int    // concurrent SQS long polls
	Document       string // SSM document, to recognise its status events
	DryRun         bool
	Policy         Policy
	// LeaseTTL turns on high availability: only the holder of the
	// cluster's lease acts. 0 for a single controller without a lease.
	LeaseTTL time.Duration
	Holder   string // this controller's name in the lease (host:pid)
}

// Deps are the controller's connections to the world.
type Deps struct {
	Queue      Queue
	Slurm      Slurm
	Store      Store
	Nodes      Nodes
	Dispatcher Dispatcher
	Manifests  Manifests
	Lease      Lease    // with Options.LeaseTTL
	Notifier   Notifier // told of every finished rescue; nil for none
	Log        *zap.Logger
	Metrics    *Metrics
	Now        func() time.Time
}

// Controller is the daemon: the parts below, a work queue of record keys,
// and the workers that reconcile them.
type Controller struct {
	opts    Options
	lease   Lease
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	queue    workqueue.TypedRateLimitingInterface[string] // record keys to reconcile
	records  *records                                     // the records: cache and writes
	steps    *steps                                       // the phase steps
	commands *commands                                    // SSM commands records wait on
	intake   *intake                                      // SQS messages in
	load     *intakeLoad                                  // whether warnings are arriving
	presync  *presyncer                                   // copies ahead of warnings
	cleaner  *cleaner                                     // the spool's old files
	savings  *savings                                     // the compute rescues saved
	health   *health                                      // liveness and readiness
	deposed  atomic.Bool                                  // the lease was lost: act no more
}

// New returns a controller; Run starts it.
func New(o Options, d Deps) *Controller {
	if d.Now == nil {
		d.Now = time.Now
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 10 * time.Minute
	}
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(200), 1000)},
	)
	c := &Controller{
		opts: o, lease: d.Lease, log: d.Log, metrics: d.Metrics, now: d.Now,
		queue:    workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: "rescues"}),
		records:  &records{store: d.Store, log: d.Log, now: d.Now, notifier: d.Notifier, cache: map[string]*state.Record{}},
		commands: &commands{now: d.Now, watches: map[string]*watch{}},
		load:     &intakeLoad{now: d.Now, metrics: d.Metrics, yielded: map[string]time.Time{}},
		health:   &health{now: d.Now},
	}
	act := actor{dryRun: o.DryRun, log: d.Log}
	scheduled := make(chan struct{}, 1) // a schedule was recorded: look again
	c.presync = &presyncer{
		policy: o.Policy, plans: planner{layout: o.Layout, template: o.ScratchTemplate},
		slurm: d.Slurm, nodes: d.Nodes, dispatcher: d.Dispatcher, records: c.records,
		log: d.Log, metrics: d.Metrics, now: d.Now, running: map[string]string{},
	}
	c.steps = &steps{
		opts: o, act: act, plans: planner{layout: o.Layout, template: o.ScratchTemplate},
		slurm: d.Slurm, dispatcher: d.Dispatcher, manifests: d.Manifests,
		records: c.records, commands: c.commands, presync: c.presync,
		wake: c.enqueueKey, scheduled: scheduled, log: d.Log, metrics: d.Metrics, now: d.Now,
	}
	c.intake = &intake{
		scheduled: scheduled,
		opts:      o, queue: d.Queue, slurm: d.Slurm, nodes: d.Nodes,
		records: c.records, steps: c.steps, commands: c.commands, presync: c.presync, load: c.load, health: c.health,
		enqueue: c.enqueue, deposed: &c.deposed, log: d.Log, metrics: d.Metrics, now: d.Now,
	}
	c.savings = &savings{records: c.records, slurm: d.Slurm, manifests: d.Manifests, layout: o.Layout,
		cluster: o.Cluster, log: d.Log, metrics: d.Metrics, now: d.Now}
	c.records.saved = c.savings.watch
	c.cleaner = &cleaner{layout: o.Layout, retention: o.SpoolRetention, dryRun: o.DryRun, slurm: d.Slurm, log: d.Log, metrics: d.Metrics}
	if d.Metrics != nil {
		d.Metrics.countOverdue(func() int { return c.records.count(c.overdue) })
	}
	return c
}

// Run resumes unfinished records, then receives events and reconciles until
// ctx is cancelled. In-flight work finishes; queued work stays in DynamoDB
// for the next start. With a lease it first waits to hold it, and returns
// ErrLeaseLost if another controller takes it over.
func (c *Controller) Run(ctx context.Context) error {
	if c.opts.LeaseTTL > 0 && c.lease != nil {
		return c.runWithLease(ctx)
	}
	return c.lead(ctx)
}

// lead is Run for the controller that acts: the workers, the receivers and
// the timers, until ctx ends.
func (c *Controller) lead(ctx context.Context) error {
	if err := c.resume(ctx); err != nil {
		return err
	}
	var workers sync.WaitGroup
	for range max(c.opts.Workers, 1) {
		workers.Go(c.runWorker)
	}
	if c.opts.Policy.PresyncEvery > 0 {
		go c.presync.loop(ctx, c.opts.Policy.PresyncEvery)
	}
	go c.cleaner.loop(ctx)
	go c.intake.schedules(ctx)
	go c.savings.loop(ctx)
	var receivers sync.WaitGroup
	for range max(c.opts.Receivers, 1) {
		receivers.Go(func() { c.intake.receive(ctx) })
	}
	c.health.setReady()
	c.log.Info("controller running", zap.String("cluster", c.opts.Cluster), zap.Int("workers", c.opts.Workers),
		zap.Int("receivers", c.opts.Receivers), zap.Bool("dry_run", c.opts.DryRun))
	<-ctx.Done()
	c.log.Info("stopping: finishing work in flight")
	receivers.Wait()
	c.queue.ShutDownWithDrain()
	workers.Wait()
	return nil
}

// resume enqueues every record that is not Done: the level-triggered restart.
func (c *Controller) resume(ctx context.Context) error {
	keys, err := c.records.store.Active(ctx, c.opts.Cluster)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	c.enqueue(keys...)
	if len(keys) > 0 {
		c.log.Info("resuming unfinished rescues", zap.Int("records", len(keys)))
	}
	return nil
}

// runWorker reconciles records until the queue is shut down.
func (c *Controller) runWorker() {
	for c.processNextWorkItem() {
	}
}

// processNextWorkItem reconciles one key; false when the queue is shut down.
func (c *Controller) processNextWorkItem() bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if c.deposed.Load() {
		return true // the new lease holder resumes it from DynamoDB
	}
	c.metrics.queueDepth.Set(float64(c.queue.Len()))
	// Reconcile on its own context: a SIGTERM lets the step in flight finish
	// and record itself instead of leaving Slurm half-changed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	after, err := c.Reconcile(ctx, key)
	switch {
	case err != nil:
		c.log.Warn("reconcile failed; will retry", zap.String("key", key), zap.Error(err))
		c.queue.AddRateLimited(key)
	case after > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, after)
	default:
		c.queue.Forget(key)
	}
	return true
}

// enqueue queues records for reconciling.
func (c *Controller) enqueue(keys ...state.Key) {
	for _, k := range keys {
		c.queue.Add(k.String())
	}
}

func (c *Controller) enqueueKey(key string) { c.queue.Add(key) }

var errNotOurs = errors.New("instance is not a node of this cluster")
