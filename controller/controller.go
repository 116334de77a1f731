// Package controller is the spotrescue daemon on the head node.
//
// It works like a Kubernetes controller. DynamoDB records (package state)
// are the objects; SQS messages are watch notifications. Read it top-down:
//
//   - intake.go receives EventBridge messages and hands each to its handler;
//   - events.go holds the jobs of a batch of interruption warnings, drains
//     their nodes, dispatches their agents and writes one record per job,
//     and turns other events into notes on those records;
//   - reconcile.go moves one record toward Done, one idempotent step at a
//     time: hold and drain (if the intake could not), dispatch (if the
//     intake did not), track the upload, then
//   - requeue.go writes the env file and AdminComment, requeues and releases.
//
// Every step is written to DynamoDB before the next starts, so a controller
// killed at any point lists the unfinished records on start and carries on.
package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"

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
}

// Nodes maps EC2 instances to Slurm nodes and back.
type Nodes interface {
	NodeOf(ctx context.Context, instance string) (string, error)
	InstanceOf(ctx context.Context, node string) (string, error)
}

// Dispatcher runs the agent on instances and reports on it.
type Dispatcher interface {
	Dispatch(ctx context.Context, reqs []rescue.Request) (map[string]string, error)
	Status(ctx context.Context, command, instance string) (string, error)
	Cancel(ctx context.Context, command, instance string) error
}

// Manifests reads what an agent saved.
type Manifests interface {
	Manifest(ctx context.Context, nodePrefix string) (*rescue.Manifest, error)
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

// Policy holds the operator's choices about jobs.
type Policy struct {
	States            []string      // job states that are rescued; empty means RUNNING, COMPLETING, SUSPENDED
	Signal            string        // sent with scancel --signal before the upload; "" for none
	Grace             time.Duration // time the job gets to checkpoint after Signal
	FallbackAfter     int           // interruptions of one job before it moves to FallbackPartition; 0 for never
	FallbackPartition string
	Presync           bool          // copy a node's jobs' scratch on a Rebalance Recommendation
	PresyncEvery      time.Duration // and every node's this often; 0 for never
}

var defaultStates = []string{"RUNNING", "COMPLETING", "SUSPENDED"}

// skipReason says why the policy does not rescue j, or "" if it does.
// Interactive jobs are left alone: their processes live with the user's
// session, and nothing could resume them.
func (p Policy) skipReason(j *slurm.Job) string {
	states := p.States
	if len(states) == 0 {
		states = defaultStates
	}
	if !j.Batch {
		return "interactive job (not submitted with sbatch)"
	}
	for _, s := range states {
		if j.State == s || slices.Contains(j.Flags, s) {
			return ""
		}
	}
	return fmt.Sprintf("state %s is not in rescue.states", j.State)
}

// Deps are the controller's connections to the world.
type Deps struct {
	Queue      Queue
	Slurm      Slurm
	Store      Store
	Nodes      Nodes
	Dispatcher Dispatcher
	Manifests  Manifests
	Lease      Lease // with Options.LeaseTTL
	Log        *zap.Logger
	Metrics    *Metrics
	Now        func() time.Time
}

// Controller is the daemon.
type Controller struct {
	Options
	Deps
	queue workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	commands map[string]*watch // SSM command id -> who waits on it
	cache    map[string]*state.Record
	presyncs map[string]string // instance -> pre-sync command that may still run
	ready    bool
	standby  bool        // waiting for another controller's lease
	deposed  atomic.Bool // the lease was lost: act no more
	lastPoll time.Time   // when a receive last returned, for liveness
	intake   struct {
		inFlight      int                  // batches of warnings being handled
		fullReceivers int                  // receivers whose last batch was full
		yielded       map[string]time.Time // record key -> when it first stepped aside
	}
}

// New returns a controller; Run starts it.
func New(o Options, d Deps) *Controller {
	if d.Now == nil {
		d.Now = time.Now
	}
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(200), 1000)},
	)
	c := &Controller{
		Options:  o,
		Deps:     d,
		queue:    workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: "rescues"}),
		commands: map[string]*watch{},
		cache:    map[string]*state.Record{},
		presyncs: map[string]string{},
	}
	c.intake.yielded = map[string]time.Time{}
	if d.Metrics != nil {
		d.Metrics.countOverdue(c.overdueRecords)
	}
	return c
}

// Run resumes unfinished records, then receives events and reconciles until
// ctx is cancelled. In-flight work finishes; queued work stays in DynamoDB
// for the next start. With a lease it first waits to hold it, and returns
// ErrLeaseLost if another controller takes it over.
func (c *Controller) Run(ctx context.Context) error {
	if c.LeaseTTL > 0 && c.Lease != nil {
		return c.runWithLease(ctx)
	}
	return c.lead(ctx)
}

// lead is Run for the controller that acts.
func (c *Controller) lead(ctx context.Context) error {
	if err := c.resume(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range max(c.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next() {
			}
		}()
	}
	if c.Policy.PresyncEvery > 0 {
		go c.presyncLoop(ctx)
	}
	go c.cleanLoop(ctx)
	var recv sync.WaitGroup
	for range max(c.Receivers, 1) {
		recv.Add(1)
		go func() {
			defer recv.Done()
			c.receive(ctx)
		}()
	}
	c.setReady()
	c.Log.Info("controller running", zap.String("cluster", c.Cluster), zap.Int("workers", c.Workers), zap.Int("receivers", c.Receivers), zap.Bool("dry_run", c.DryRun))
	<-ctx.Done()
	c.Log.Info("stopping: finishing work in flight")
	recv.Wait()
	c.queue.ShutDownWithDrain()
	wg.Wait()
	return nil
}

// resume enqueues every record that is not Done: the level-triggered restart.
func (c *Controller) resume(ctx context.Context) error {
	keys, err := c.Store.Active(ctx, c.Cluster)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	for _, k := range keys {
		c.queue.Add(k.String())
	}
	if len(keys) > 0 {
		c.Log.Info("resuming unfinished rescues", zap.Int("records", len(keys)))
	}
	return nil
}

// next reconciles one key; false when the queue is shut down.
func (c *Controller) next() bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if c.deposed.Load() {
		return true // the new lease holder resumes it from DynamoDB
	}
	c.Metrics.queueDepth.Set(float64(c.queue.Len()))
	// Reconcile on its own context: a SIGTERM lets the step in flight finish
	// and record itself instead of leaving Slurm half-changed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	after, err := c.Reconcile(ctx, key)
	switch {
	case err != nil:
		c.Log.Warn("reconcile failed; will retry", zap.String("key", key), zap.Error(err))
		c.queue.AddRateLimited(key)
	case after > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, after)
	default:
		c.queue.Forget(key)
	}
	return true
}

func (c *Controller) enqueue(keys ...state.Key) {
	for _, k := range keys {
		c.queue.Add(k.String())
	}
}

// watchCommand notes that key waits on an SSM command, so the command's
// status events can wake it.
func (c *Controller) watchCommand(command string, key state.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.commands[command]
	if w == nil {
		w = &watch{keys: map[string]bool{}, status: map[string]string{}, polled: map[string]time.Time{}}
		c.commands[command] = w
	}
	w.keys[key.String()] = true
}

// forgetCommand drops key's interest in command, and the command once nobody waits on it.
func (c *Controller) forgetCommand(command string, key state.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.commands[command]; w != nil {
		delete(w.keys, key.String())
		if len(w.keys) == 0 {
			delete(c.commands, command)
		}
	}
}

// observe keeps a status seen in an event and returns the keys to wake.
func (c *Controller) observe(command, instance, status string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.commands[command]
	if w == nil {
		return nil
	}
	w.status[instance] = status
	keys := make([]string, 0, len(w.keys))
	for k := range w.keys {
		keys = append(keys, k)
	}
	return keys
}

// pollDue reports whether SSM may be asked about an invocation now: once
// pollEvery has passed since the dispatch and since the last question. It
// notes the question.
func (c *Controller) pollDue(command, instance string, dispatched time.Time) bool {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.commands[command]
	if w == nil {
		return true
	}
	last := w.polled[instance]
	if last.IsZero() {
		last = dispatched
	}
	if now.Sub(last) < pollEvery {
		return false
	}
	w.polled[instance] = now
	return true
}

// observedStatus is the last status an event reported, or "".
func (c *Controller) observedStatus(command, instance string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.commands[command]; w != nil {
		return w.status[instance]
	}
	return ""
}

func (c *Controller) setReady() {
	c.mu.Lock()
	c.ready, c.lastPoll = true, c.Now()
	c.mu.Unlock()
}

// polled notes that a long poll returned.
func (c *Controller) polled() {
	c.mu.Lock()
	c.lastPoll = c.Now()
	c.mu.Unlock()
}

// Healthy reports whether the controller is still receiving: a long poll
// returns at least every 20 s, so a minute without one means it is stuck.
func (c *Controller) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.ready || c.Now().Sub(c.lastPoll) < time.Minute
}

// Ready reports whether the controller has resumed its records and is receiving.
func (c *Controller) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// remember keeps copies of records this controller wrote, so that the next
// reconcile starts from them without a read: like an informer's cache in
// Kubernetes. Writes stay conditional, so a stale copy fails its write
// with ErrConflict and is dropped.
func (c *Controller) remember(recs ...*state.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		if r.Phase.Terminal() {
			delete(c.cache, r.Key.String())
		} else {
			c.cache[r.Key.String()] = r.Clone()
		}
	}
}

func (c *Controller) forget(k state.Key) {
	c.mu.Lock()
	delete(c.cache, k.String())
	c.mu.Unlock()
}

// record returns the cached copy of k, or reads it.
func (c *Controller) record(ctx context.Context, k state.Key) (*state.Record, error) {
	c.mu.Lock()
	r, ok := c.cache[k.String()]
	c.mu.Unlock()
	if ok {
		return r.Clone(), nil
	}
	return c.Store.Get(ctx, k)
}

// watch is what the controller knows about one SSM command in flight.
type watch struct {
	keys   map[string]bool      // records waiting on the command
	status map[string]string    // instance -> last status from an event
	polled map[string]time.Time // instance -> when SSM was last asked
}

var errNotOurs = errors.New("instance is not a node of this cluster")
