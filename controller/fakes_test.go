package controller

// In-memory fakes of the controller's consumer-defined interfaces. They
// behave like the real thing where the controller's decisions depend on it:
// conditional writes and versions (state.Store), Slurm's answers and hold
// reasons (slurm.Client against Slurm 22.05), the SSM dispatcher's command
// ids and statuses, and S3 manifests.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// ---- clock ----

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// ---- SQS ----

type fakeQueue struct {
	mu         sync.Mutex
	deleted    []string // receipt handles deleted
	visibility map[string]int32
	deleteErr  error
	extended   int // visibility extensions of messages being handled
}

func (q *fakeQueue) ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return &sqs.ReceiveMessageOutput{}, nil
}

func (q *fakeQueue) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleteErr != nil {
		return nil, q.deleteErr
	}
	if len(in.Entries) > 10 {
		return nil, errors.New("AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
	}
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		q.deleted = append(q.deleted, aws.ToString(e.ReceiptHandle))
		out.Successful = append(out.Successful, sqstypes.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (q *fakeQueue) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.visibility == nil {
		q.visibility = map[string]int32{}
	}
	q.visibility[aws.ToString(in.ReceiptHandle)] = in.VisibilityTimeout
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (q *fakeQueue) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	// Keeping a message invisible while it is handled is not leaving it
	// for the DLQ or giving it back, which visibility records.
	q.mu.Lock()
	defer q.mu.Unlock()
	q.extended += len(in.Entries)
	return &sqs.ChangeMessageVisibilityBatchOutput{}, nil
}

func (q *fakeQueue) wasDeleted(receipt string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Contains(q.deleted, receipt)
}

func (q *fakeQueue) visibilityOf(receipt string) (int32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	v, ok := q.visibility[receipt]
	return v, ok
}

// ---- Slurm ----

// fakeSlurm keeps jobs and node states as slurmctld 22.05 would.
type fakeSlurm struct {
	mu       sync.Mutex
	jobs     map[string]*slurm.Job
	nodes    []slurm.Node        // what Nodes lists (drain states from drained)
	drained  map[string]string   // node -> drain reason
	signals  map[string][]string // job -> signals sent
	jobsErr  error               // Jobs (squeue) fails with this
	holdErr  error               // Hold fails with this
	requeued int                 // successful scontrol requeue commands, for double-requeue checks
}

func newFakeSlurm(jobs ...slurm.Job) *fakeSlurm {
	s := &fakeSlurm{jobs: map[string]*slurm.Job{}, drained: map[string]string{}, signals: map[string][]string{}}
	for _, j := range jobs {
		s.add(j)
	}
	return s
}

func (s *fakeSlurm) add(j slurm.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.Display == "" {
		j.Display = j.ID
	}
	if j.Reason == "" {
		j.Reason = "None"
	}
	if j.Priority == 0 && !strings.HasPrefix(j.Reason, "JobHeld") {
		j.Priority = 1000
	}
	cp := cloneJob(j)
	s.jobs[j.ID] = &cp
}

func cloneJob(j slurm.Job) slurm.Job {
	j.Nodes = slices.Clone(j.Nodes)
	j.Flags = slices.Clone(j.Flags)
	return j
}

func (s *fakeSlurm) job(id string) slurm.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		panic("fake slurm: no job " + id)
	}
	return cloneJob(*j)
}

// mutate changes a job as something outside the controller would (the job
// ending, ParallelCluster requeuing it after NODE_FAIL, ...).
func (s *fakeSlurm) mutate(id string, f func(j *slurm.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.jobs[id])
}

// nodeFailRequeue is what slurmctld does when a job's node dies and the
// job may be requeued: back to PENDING, one more restart, holds kept.
func (s *fakeSlurm) nodeFailRequeue(id string) {
	s.mutate(id, func(j *slurm.Job) {
		j.State, j.Flags, j.Nodes, j.BatchHost = "PENDING", nil, nil, ""
		j.Restarts++
	})
}

func (s *fakeSlurm) drainedNodes() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.drained {
		out[k] = v
	}
	return out
}

func (s *fakeSlurm) Jobs(context.Context) ([]slurm.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobsErr != nil {
		return nil, s.jobsErr
	}
	ids := make([]string, 0, len(s.jobs))
	for id := range s.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]slurm.Job, 0, len(ids))
	for _, id := range ids {
		out = append(out, cloneJob(*s.jobs[id]))
	}
	return out, nil
}

func (s *fakeSlurm) Job(_ context.Context, id string) (*slurm.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("scontrol show job %s: %w: Invalid job id specified", id, slurm.ErrNoJob)
	}
	cp := cloneJob(*j)
	return &cp, nil
}

// eachJob applies f to every job, collecting Slurm's per-job errors.
func (s *fakeSlurm) eachJob(op string, ids []string, f func(j *slurm.Job) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, id := range ids {
		j, ok := s.jobs[id]
		if !ok {
			errs = append(errs, &slurm.JobError{ID: id, Msg: "Invalid job id specified", Err: slurm.ErrNoJob})
			continue
		}
		if err := f(j); err != nil {
			errs = append(errs, &slurm.JobError{ID: id, Msg: err.Error(), Err: err})
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s jobs: %w", op, errors.Join(errs...))
	}
	return nil
}

func (s *fakeSlurm) Hold(_ context.Context, ids ...string) error {
	if s.holdErr != nil {
		return s.holdErr
	}
	return s.eachJob("hold", ids, func(j *slurm.Job) error {
		if j.Finished() {
			return slurm.ErrFinished
		}
		// An administrator hold replaces a user hold.
		j.Reason, j.Priority = "JobHeldAdmin", 0
		return nil
	})
}

func (s *fakeSlurm) Release(_ context.Context, ids ...string) error {
	return s.eachJob("release", ids, func(j *slurm.Job) error {
		if j.Finished() {
			return slurm.ErrFinished
		}
		// Release lifts every hold, the user's too.
		if j.Reason == "JobHeldAdmin" || j.Reason == "JobHeldUser" {
			j.Reason, j.Priority = "None", 1000
		}
		return nil
	})
}

func (s *fakeSlurm) UserHold(_ context.Context, ids ...string) error {
	return s.eachJob("uhold", ids, func(j *slurm.Job) error {
		if j.Finished() {
			return slurm.ErrFinished
		}
		j.Reason, j.Priority = "JobHeldUser", 0
		return nil
	})
}

func (s *fakeSlurm) Requeue(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	switch {
	case !ok:
		return fmt.Errorf("requeue job %s: %w", id, slurm.ErrNoJob)
	case !j.Batch || !j.Requeue:
		return fmt.Errorf("requeue job %s: %w", id, slurm.ErrNotRequeueable)
	case j.State == "PENDING":
		return fmt.Errorf("requeue job %s: %w", id, slurm.ErrAlreadyPending)
	}
	// A held job stays held.
	j.State, j.Flags, j.Nodes, j.BatchHost = "PENDING", nil, nil, ""
	j.Restarts++
	s.requeued++
	return nil
}

func (s *fakeSlurm) Drain(_ context.Context, nodes []string, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nodes {
		s.drained[n] = reason
	}
	return nil
}

func (s *fakeSlurm) Signal(_ context.Context, id, signal string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[id]; !ok {
		return fmt.Errorf("signal job %s: %w", id, slurm.ErrNoJob)
	}
	s.signals[id] = append(s.signals[id], signal)
	return nil
}

func (s *fakeSlurm) SetAdminComment(_ context.Context, id, comment string) error {
	return s.eachJob("update", []string{id}, func(j *slurm.Job) error { j.AdminComment = comment; return nil })
}

func (s *fakeSlurm) SetPartition(_ context.Context, id, partition string) error {
	return s.eachJob("update", []string{id}, func(j *slurm.Job) error { j.Partition = partition; return nil })
}

func (s *fakeSlurm) Nodes(context.Context) ([]slurm.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]slurm.Node, len(s.nodes))
	for i, n := range s.nodes {
		n.Partitions = slices.Clone(n.Partitions)
		if _, ok := s.drained[n.Name]; ok {
			n.Flags = append(slices.Clone(n.Flags), "DRAIN")
		}
		out[i] = n
	}
	return out, nil
}

// SetExcludedNodes refuses a job that is not pending, as slurmctld does.
func (s *fakeSlurm) SetExcludedNodes(_ context.Context, id, hostlist string) error {
	return s.eachJob("update", []string{id}, func(j *slurm.Job) error {
		if j.State != "PENDING" {
			return slurm.ErrNotPending
		}
		j.ExcNodes = hostlist
		return nil
	})
}

// ---- DynamoDB state ----

// faultyStore is state.Memory with the faults a test injects.
type faultyStore struct {
	*state.Memory
	mu        sync.Mutex
	activeErr error // Active fails with this
	// failCreate, when set, fails every CreateAll and PutInterruptions (a
	// DynamoDB outage).
	failCreate error
	// interfere, when set, runs before each Update; returning true makes
	// another writer update the stored record first (its version moves
	// on), as a concurrent controller step would.
	interfere func(incoming *state.Record) bool
}

func newFakeStore() *faultyStore { return &faultyStore{Memory: state.NewMemory()} }

// faults are the faults a test has injected.
type faults struct {
	create, active error
	interfere      func(*state.Record) bool
}

func (s *faultyStore) fault() faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return faults{s.failCreate, s.activeErr, s.interfere}
}

func (s *faultyStore) CreateAll(ctx context.Context, recs []*state.Record) []error {
	if err := s.fault().create; err != nil {
		errs := make([]error, len(recs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return s.Memory.CreateAll(ctx, recs)
}

func (s *faultyStore) PutInterruptions(ctx context.Context, ins []*state.Interruption) error {
	if err := s.fault().create; err != nil {
		return err
	}
	return s.Memory.PutInterruptions(ctx, ins)
}

func (s *faultyStore) Active(ctx context.Context, cluster string) ([]state.Key, error) {
	if err := s.fault().active; err != nil {
		return nil, err
	}
	return s.Memory.Active(ctx, cluster)
}

func (s *faultyStore) Update(ctx context.Context, r *state.Record) error {
	if interfere := s.fault().interfere; interfere != nil && interfere(r) {
		if cur, err := s.Memory.Get(ctx, r.Key); err == nil {
			s.Memory.Update(ctx, cur) // someone else's write lands first
		}
	}
	return s.Memory.Update(ctx, r)
}

// put stores a record as it is, for tests that start mid-way. Like any
// real write it moves the version on, so a controller's cached copy is stale.
func (s *faultyStore) put(r *state.Record) {
	ctx := context.Background()
	if cur, err := s.Memory.Get(ctx, r.Key); err == nil {
		r.Version = cur.Version
		if err := s.Memory.Update(ctx, r); err != nil {
			panic(err)
		}
		return
	}
	if err := s.Memory.Create(ctx, r); err != nil {
		panic(err)
	}
}

func (s *faultyStore) record(t *testing.T, k state.Key) *state.Record {
	t.Helper()
	r, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatalf("record %s: %v", k, err)
	}
	return r
}

func (s *faultyStore) count() int { return s.Len() }

// ---- ParallelCluster node table ----

type fakeNodes struct {
	byInstance map[string]string
	lookupErr  error
}

func (n *fakeNodes) NodeOf(_ context.Context, instance string) (string, error) {
	if n.lookupErr != nil {
		return "", n.lookupErr
	}
	if node, ok := n.byInstance[instance]; ok {
		return node, nil
	}
	return "", errNotOurs
}

func (n *fakeNodes) InstanceOf(_ context.Context, node string) (string, error) {
	for inst, nd := range n.byInstance {
		if nd == node {
			return inst, nil
		}
	}
	return "", fmt.Errorf("node %s has no instance", node)
}

// ---- SSM ----

// fakeDispatcher hands out SSM-style command ids and reports statuses.
type fakeDispatcher struct {
	mu       sync.Mutex
	next     int
	sent     []agents.Request
	cmds     map[string][]string // instance -> commands sent to it
	status   map[string]string   // instance -> invocation status SSM reports
	fail     error               // every SendCommand fails with this
	failFor  map[string]bool     // instances whose SendCommand fails
	fallback string              // status of instances not in status
	canceled []string            // commands canceled
	gate     func()              // if set, the next Dispatch runs it first (once)
}

func newFakeDispatcher() *fakeDispatcher {
	return &fakeDispatcher{cmds: map[string][]string{}, status: map[string]string{}, failFor: map[string]bool{}, fallback: "Success"}
}

func (d *fakeDispatcher) Dispatch(_ context.Context, reqs []agents.Request) (map[string]string, error) {
	d.mu.Lock()
	gate := d.gate
	d.gate = nil
	d.mu.Unlock()
	if gate != nil {
		gate()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return nil, d.fail
	}
	out := map[string]string{}
	var failed []string
	for _, r := range reqs {
		if d.failFor[r.Instance] {
			failed = append(failed, r.Instance)
			continue
		}
		d.next++
		cmd := fmt.Sprintf("%08x-0000-4000-8000-%012x", d.next, d.next)
		d.sent = append(d.sent, r)
		d.cmds[r.Instance] = append(d.cmds[r.Instance], cmd)
		out[r.Instance] = cmd
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("SendCommand to %v: InvalidInstanceId", failed)
	}
	return out, nil
}

func (d *fakeDispatcher) Cancel(_ context.Context, command, instance string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.canceled = append(d.canceled, command)
	return nil
}

func (d *fakeDispatcher) Status(_ context.Context, command, instance string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Contains(d.cmds[instance], command) {
		return "", fmt.Errorf("GetCommandInvocation %s %s: InvocationDoesNotExist", command, instance)
	}
	if st, ok := d.status[instance]; ok {
		return st, nil
	}
	return d.fallback, nil
}

func (d *fakeDispatcher) setStatus(instance, status string) {
	d.mu.Lock()
	d.status[instance] = status
	d.mu.Unlock()
}

func (d *fakeDispatcher) requests() []agents.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sent)
}

func (d *fakeDispatcher) commandsTo(instance string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.cmds[instance])
}

// ---- S3 manifests ----

type fakeManifests struct {
	mu      sync.Mutex
	m       map[string]*rescue.Manifest // node prefix -> manifest
	resumed map[string]*rescue.Resumed  // node prefix -> a later run's word
	err     error
}

func (f *fakeManifests) Resumed(_ context.Context, nodePrefix, job string, rescued int) (*rescue.Resumed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.resumed[nodePrefix]; ok && r.JobID == job && r.Rescued == rescued {
		cp := *r
		return &cp, nil
	}
	return nil, f.err
}

func (f *fakeManifests) resume(nodePrefix string, r rescue.Resumed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resumed == nil {
		f.resumed = map[string]*rescue.Resumed{}
	}
	f.resumed[nodePrefix] = &r
}

func (f *fakeManifests) Manifest(_ context.Context, nodePrefix string) (*rescue.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	m, ok := f.m[nodePrefix]
	if !ok {
		return nil, fmt.Errorf("s3://bucket/%s%s: %w", nodePrefix, rescue.ManifestName, rescue.ErrNoManifest)
	}
	cp := *m
	return &cp, nil
}

func (f *fakeManifests) put(nodePrefix string, m *rescue.Manifest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*rescue.Manifest{}
	}
	f.m[nodePrefix] = m
}

// ---- harness ----

type harness struct {
	c         *Controller
	clock     *fakeClock
	queue     *fakeQueue
	slurm     *fakeSlurm
	store     *faultyStore
	nodes     *fakeNodes
	disp      *fakeDispatcher
	manifests *fakeManifests
	metrics   *Metrics
	reg       *prometheus.Registry
	layout    rescue.Layout
	opts      Options
	deps      Deps
}

const (
	testCluster  = "lab"
	testRegion   = "ap-northeast-1"
	testDocument = "SpotRescue-Rescue"
	testMargin   = 20 * time.Second
)

// newHarness builds a controller over fakes. The clock starts at start;
// mod may adjust the options before the controller is built.
func newHarness(t *testing.T, start time.Time, mod func(*Options), jobs ...slurm.Job) *harness {
	t.Helper()
	h := &harness{
		clock:     &fakeClock{t: start},
		queue:     &fakeQueue{},
		slurm:     newFakeSlurm(jobs...),
		store:     newFakeStore(),
		nodes:     &fakeNodes{byInstance: map[string]string{instA: nodeA, instB: nodeB, instC: nodeC}},
		disp:      newFakeDispatcher(),
		manifests: &fakeManifests{},
		reg:       prometheus.NewRegistry(),
		layout:    rescue.Layout{Bucket: "rescue-bucket", Prefix: "spot", Cluster: testCluster, Spool: t.TempDir()},
	}
	o := Options{
		Cluster: testCluster, Region: testRegion, QueueURL: "https://sqs.ap-northeast-1.amazonaws.com/123456789012/spotrescue",
		Layout: h.layout, ScratchTemplate: "/scratch/{user}/{job_id}", Margin: testMargin,
		Workers: 1, Receivers: 1, Document: testDocument,
	}
	if mod != nil {
		mod(&o)
	}
	h.layout = o.Layout
	h.metrics = NewMetrics(h.reg)
	h.opts, h.deps = o, Deps{
		Queue: h.queue, Slurm: h.slurm, Store: h.store, Nodes: h.nodes, Dispatcher: h.disp, Manifests: h.manifests,
		Log: zaptest.NewLogger(t), Metrics: h.metrics, Now: h.clock.Now,
	}
	h.rebuild(t)
	return h
}

// rebuild builds the controller again from h.opts and h.deps, for a test
// that changes them.
func (h *harness) rebuild(t *testing.T) {
	h.reg = prometheus.NewRegistry()
	h.metrics = NewMetrics(h.reg)
	h.deps.Metrics = h.metrics
	h.c = New(h.opts, h.deps)
	t.Cleanup(h.c.queue.ShutDown)
}

// queued empties the controller's work queue and returns what was in it.
func (h *harness) queued() []string {
	var keys []string
	for h.c.queue.Len() > 0 {
		k, _ := h.c.queue.Get()
		h.c.queue.Done(k)
		h.c.queue.Forget(k)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// reconcile runs one Reconcile and fails the test on an error.
func (h *harness) reconcile(t *testing.T, k state.Key) time.Duration {
	t.Helper()
	wait, err := h.tryReconcile(k)
	if err != nil {
		t.Fatalf("Reconcile(%s): %v", k, err)
	}
	return wait
}

// tryReconcile reconciles k, and again if SSM's events woke it up.
func (h *harness) tryReconcile(k state.Key) (time.Duration, error) {
	wait, err := h.c.Reconcile(context.Background(), k.String())
	if err == nil && wait > 0 && h.deliverStatusEvents() {
		wait, err = h.c.Reconcile(context.Background(), k.String())
	}
	return wait, err
}

// deliverStatusEvents plays SSM's status-change events: every command whose
// invocation the fake SSM reports finished is observed, as the controller's
// intake would from EventBridge. It reports whether anything new arrived.
func (h *harness) deliverStatusEvents() bool {
	h.disp.mu.Lock()
	type inv struct{ cmd, inst, status string }
	var finished []inv
	for inst, cmds := range h.disp.cmds {
		st, ok := h.disp.status[inst]
		if !ok {
			st = h.disp.fallback
		}
		if !event.TerminalStatus(st) {
			continue
		}
		for _, cmd := range cmds {
			finished = append(finished, inv{cmd, inst, st})
		}
	}
	h.disp.mu.Unlock()
	news := false
	for _, f := range finished {
		if h.c.commands.observed(f.cmd, f.inst) != f.status && len(h.c.commands.observe(f.cmd, f.inst, f.status)) > 0 {
			news = true
		}
	}
	return news
}

// complete stores a complete manifest for a node of a job run.
func (h *harness) completeManifest(jobID string, run int, node string, bytes int64) {
	h.manifests.put(h.layout.NodePrefix(jobID, run, node), &rescue.Manifest{
		Version: 1, JobID: jobID, Run: run, Node: node, Complete: true, Bytes: bytes,
		Finished: h.clock.Now(), Files: []rescue.File{{Path: "ckpt.bin", Type: rescue.TypeFile, Size: bytes}},
	})
}

func (h *harness) partialManifest(jobID string, run int, node string, bytes int64) {
	h.manifests.put(h.layout.NodePrefix(jobID, run, node), &rescue.Manifest{
		Version: 1, JobID: jobID, Run: run, Node: node, Complete: false, Bytes: bytes,
		Finished: h.clock.Now(), Files: []rescue.File{{Path: "ckpt.bin", Type: rescue.TypeFile, Size: bytes}},
		Skipped: []rescue.Skipped{{Path: "big.dat", Reason: rescue.SkipDeadline}},
	})
}
