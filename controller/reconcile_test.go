package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// rescueSetup is a harness with one job on nodeA whose warning has been
// handled: its record is Detected.
func rescueSetup(t *testing.T, mod func(*Options), j slurm.Job) (*harness, state.Key) {
	t.Helper()
	h := newHarness(t, now(), mod, j)
	keys := h.warn(t, "m1", instA)
	k := key(j.ID, j.Restarts)
	if !slices.Equal(keys, []string{k.String()}) {
		t.Fatalf("warning queued %v, want %s", keys, k)
	}
	return h, k
}

// heldSetup is rescueSetup for a record the intake could not dispatch: it
// rests in Held, for reconcile's dispatch step. The dispatcher keeps
// failing until the test clears h.disp.fail.
func heldSetup(t *testing.T, mod func(*Options), j slurm.Job) (*harness, state.Key) {
	t.Helper()
	h := newHarness(t, now(), mod, j)
	h.disp.fail = errors.New("SendCommand: ThrottlingException")
	keys := h.warn(t, "m1", instA)
	k := key(j.ID, j.Restarts)
	if !slices.Equal(keys, []string{k.String()}) {
		t.Fatalf("warning queued %v, want %s", keys, k)
	}
	if r := h.store.record(t, k); r.Phase != state.Held {
		t.Fatalf("phase %s after a failed intake dispatch, want Held", r.Phase)
	}
	return h, k
}

// untilDispatched reconciles while the agent is still uploading, so the
// record rests in Dispatched.
func (h *harness) untilDispatched(t *testing.T, k state.Key) {
	t.Helper()
	h.disp.setStatus(instA, "InProgress")
	wait := h.reconcile(t, k)
	if wait <= 0 || wait > pollEvery {
		t.Fatalf("Reconcile while uploading: wait %v, want (0, %v]", wait, pollEvery)
	}
	if r := h.store.record(t, k); r.Phase != state.Dispatched {
		t.Fatalf("phase %s while uploading, want Dispatched", r.Phase)
	}
}

func (h *harness) env(t *testing.T, jobID string) *rescue.JobEnv {
	t.Helper()
	e, err := h.layout.ReadJobEnv(jobID)
	if err != nil {
		t.Fatalf("env file of job %s: %v", jobID, err)
	}
	return e
}

func (h *harness) noEnv(t *testing.T, jobID string) {
	t.Helper()
	if _, err := h.layout.ReadJobEnv(jobID); !errors.Is(err, rescue.ErrNoEnv) {
		t.Errorf("env file of job %s: %v, want none", jobID, err)
	}
}

func TestRescueEndToEnd(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	rec := h.store.record(t, k)

	// Held and Dispatched: the job keeps running, held, on a drained node,
	// while the agent uploads.
	h.untilDispatched(t, k)
	j := h.slurm.job("101")
	if j.Reason != "JobHeldAdmin" || j.State != "RUNNING" {
		t.Errorf("job during the upload: %s/%s, want RUNNING held by the admin", j.State, j.Reason)
	}
	if reason, ok := h.slurm.drainedNodes()[nodeA]; !ok || reason != "spot interruption" {
		t.Errorf("node %s drained %v with reason %q", nodeA, ok, reason)
	}
	reqs := h.disp.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d agent requests, want 1", len(reqs))
	}
	uid := os.Getuid() // the job's user, whom the agent reads the files as
	want := agents.Request{
		Instance: instA, Node: nodeA,
		Job:      rescue.PlanJob{JobID: "101", Run: 0, Dir: "/scratch/alice/101", Prefix: "spot/lab/101/run-0/" + nodeA + "/", UID: &uid},
		Deadline: rec.Deadline, Reclaim: rec.EventTime.Add(Reclaim),
	}
	if got := reqs[0]; got.Instance != want.Instance || got.Node != want.Node || !reflect.DeepEqual(got.Job, want.Job) ||
		!got.Deadline.Equal(want.Deadline) || !got.Reclaim.Equal(want.Reclaim) {
		t.Errorf("agent request\n got  %+v\n want %+v", got, want)
	}
	mid := h.store.record(t, k)
	const uri = "s3://rescue-bucket/spot/lab/101/run-0/"
	if mid.URI != uri || mid.Nodes[0].Command == "" {
		t.Errorf("dispatched record: URI %q command %q", mid.URI, mid.Nodes[0].Command)
	}

	// The agent finishes with a complete manifest.
	h.clock.Advance(40 * time.Second)
	h.completeManifest("101", 0, nodeA, 4096)
	h.disp.setStatus(instA, "Success")
	if wait := h.reconcile(t, k); wait != 0 {
		t.Errorf("finished rescue asks to wait %v", wait)
	}

	r := h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete || r.Requeue != "requeued" {
		t.Errorf("record: phase %s outcome %s requeue %q, want Done complete \"requeued\"", r.Phase, r.Outcome, r.Requeue)
	}
	if r.URI != uri || r.Bytes != 4096 || r.Files != 1 || !r.Nodes[0].Complete || r.Nodes[0].Status != "Success" {
		t.Errorf("record: uri %q bytes %d files %d node %+v", r.URI, r.Bytes, r.Files, r.Nodes[0])
	}
	for name, ts := range map[string]time.Time{"held": r.Times.Held, "dispatched": r.Times.Dispatched, "finished": r.Times.Finished, "requeued": r.Times.Requeued, "done": r.Times.Done} {
		if ts.IsZero() {
			t.Errorf("time %s not recorded", name)
		}
	}
	if r.Attempts != 0 || len(r.Errors) != 0 {
		t.Errorf("errors recorded on a clean rescue: %v", r.Errors)
	}

	j = h.slurm.job("101")
	if j.State != "PENDING" || j.Restarts != 1 || j.Held() {
		t.Errorf("job after the rescue: %s restarts %d reason %s, want PENDING, 1, not held", j.State, j.Restarts, j.Reason)
	}
	if !strings.Contains(j.AdminComment, uri) || !strings.Contains(j.AdminComment, "status=complete") {
		t.Errorf("AdminComment %q lacks the URI and status", j.AdminComment)
	}

	env := h.env(t, "101")
	if env.URI != uri || env.Status != "complete" || env.Run != 0 || len(env.Nodes) != 1 || !slices.Equal(env.Nodes[0], []string{nodeA}) {
		t.Errorf("env file %+v", env)
	}
	fi, err := os.Stat(h.layout.EnvPath("101"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o444 || int(st.Uid) != os.Geteuid() {
		t.Errorf("env file mode %v owner %d, want 0444 and the controller's: root restores what it names, so only root writes it", fi.Mode().Perm(), st.Uid)
	}

	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"spotrescue_rescues_total", []string{"outcome=complete"}, 1},
		{"spotrescue_requeues_total", []string{"result=requeued"}, 1},
		{"spotrescue_rescued_bytes_total", nil, 4096},
		{"spotrescue_deadline_slack_seconds", nil, 1},
		{"spotrescue_dispatch_latency_seconds", nil, 1},
	} {
		if got := h.metric(t, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}

	// Done is Done: reconciling again changes nothing.
	h.reconcile(t, k)
	if again := h.store.record(t, k); again.Version != r.Version || h.slurm.job("101").Restarts != 1 {
		t.Error("reconciling a Done record changed something")
	}
}

// A job that ends during its rescue is not requeued, and the record says why.
func TestJobFinishedBeforeRequeue(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.slurm.mutate("101", func(j *slurm.Job) { j.State, j.Nodes = "COMPLETED", nil })
	h.completeManifest("101", 0, nodeA, 10)
	h.disp.setStatus(instA, "Success")
	h.reconcile(t, k)

	r := h.store.record(t, k)
	if r.Phase != state.Done {
		t.Fatalf("phase %s, want Done", r.Phase)
	}
	if !strings.HasPrefix(r.Requeue, "not requeued") || !strings.Contains(r.Requeue, "COMPLETED") {
		t.Errorf("Requeue %q does not say the job ended", r.Requeue)
	}
	if j := h.slurm.job("101"); j.Restarts != 0 || j.State != "COMPLETED" {
		t.Errorf("finished job: %s restarts %d", j.State, j.Restarts)
	}
	if got := h.metric(t, "spotrescue_requeues_total", "result=job_ended"); got != 1 {
		t.Errorf("requeues_total{job_ended} = %v", got)
	}
}

// A job Slurm forgot before the hold is skipped: nothing to hold or save.
// A record the intake could not hold (Detected) whose job is gone by the
// time reconcile holds it is skipped: nothing to rescue, nothing to requeue.
func TestJobGoneBeforeHoldIsSkipped(t *testing.T) {
	cases := []struct {
		name   string
		change func(s *fakeSlurm)
		want   string
	}{
		{"purged", func(s *fakeSlurm) { s.mu.Lock(); delete(s.jobs, "101"); s.mu.Unlock() }, "no longer knows"},
		{"completed", func(s *fakeSlurm) {
			s.mutate("101", func(j *slurm.Job) { j.State, j.Nodes = "COMPLETED", nil })
		}, "ended (COMPLETED)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// What the intake records when its hold fails.
			h := newHarness(t, now(), nil, batchJob("101", nodeA))
			k := key("101", 0)
			h.store.put(&state.Record{Key: k, Phase: state.Detected, EventTime: h.clock.Now(), Deadline: h.clock.Now().Add(Reclaim - testMargin),
				Nodes: []state.Node{{Name: nodeA, Instance: instA, Interrupted: true}}, Times: state.Times{Detected: h.clock.Now()}})
			tc.change(h.slurm)
			h.reconcile(t, k)
			r := h.store.record(t, k)
			if r.Phase != state.Done || r.Outcome != state.OutcomeSkipped || !strings.Contains(r.Requeue, tc.want) {
				t.Errorf("record: %s %s %q", r.Phase, r.Outcome, r.Requeue)
			}
			if len(h.disp.requests()) != 0 {
				t.Error("an agent was sent for a job that is gone")
			}
			if got := h.metric(t, "spotrescue_rescues_total", "outcome=skipped"); got != 1 {
				t.Errorf("rescues_total{skipped} = %v", got)
			}
		})
	}
}

func TestNoRequeueJobIsReleasedNotRequeued(t *testing.T) {
	j := batchJob("101", nodeA)
	j.Requeue = false
	h, k := rescueSetup(t, nil, j)
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, k)

	r := h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Errorf("record: %s %s, want Done complete", r.Phase, r.Outcome)
	}
	if !strings.Contains(r.Requeue, "--no-requeue") {
		t.Errorf("Requeue %q does not mention --no-requeue", r.Requeue)
	}
	got := h.slurm.job("101")
	if got.Held() || got.Restarts != 0 || got.State != "RUNNING" {
		t.Errorf("job: %s restarts %d reason %s, want RUNNING, 0, not held", got.State, got.Restarts, got.Reason)
	}
	if n := h.metric(t, "spotrescue_requeues_total", "result=not_requeueable"); n != 1 {
		t.Errorf("requeues_total{not_requeueable} = %v", n)
	}
}

// A job its user had held comes back held by its user, who can release it,
// not by the administrator.
func TestUserHoldIsGivenBack(t *testing.T) {
	j := batchJob("101", nodeA)
	j.Reason, j.Priority = "JobHeldUser", 0
	h, k := rescueSetup(t, nil, j)
	if !h.store.record(t, k).UserHeld {
		t.Fatal("UserHeld not recorded at detection")
	}
	h.untilDispatched(t, k)
	if got := h.slurm.job("101").Reason; got != "JobHeldAdmin" {
		t.Errorf("during the rescue the hold is %s, want JobHeldAdmin", got)
	}
	h.completeManifest("101", 0, nodeA, 10)
	h.disp.setStatus(instA, "Success")
	h.reconcile(t, k)

	got := h.slurm.job("101")
	if got.Reason != "JobHeldUser" || got.Restarts != 1 || got.State != "PENDING" {
		t.Errorf("job: %s restarts %d reason %s, want PENDING, 1, JobHeldUser", got.State, got.Restarts, got.Reason)
	}
	if r := h.store.record(t, k); r.Phase != state.Done {
		t.Errorf("phase %s", r.Phase)
	}
}

// ParallelCluster requeued the job (NODE_FAIL) while the data was being
// saved: once is enough.
func TestAlreadyRequeuedBySlurmIsNotRequeuedAgain(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.untilDispatched(t, k)
	h.slurm.nodeFailRequeue("101")
	h.completeManifest("101", 0, nodeA, 10)
	h.disp.setStatus(instA, "Success")
	h.reconcile(t, k)

	r := h.store.record(t, k)
	if r.Phase != state.Done || !strings.Contains(r.Requeue, "already requeued") {
		t.Errorf("record: %s %q", r.Phase, r.Requeue)
	}
	got := h.slurm.job("101")
	if got.Restarts != 1 || got.Held() {
		t.Errorf("job: restarts %d reason %s, want exactly 1 restart and released", got.Restarts, got.Reason)
	}
	// The next run still learns where its data is.
	if env := h.env(t, "101"); env.URI != r.URI || env.Run != 0 {
		t.Errorf("env %+v", env)
	}
}

func TestOutcomeComesFromTheManifests(t *testing.T) {
	cases := []struct {
		name      string
		nodes     []string
		manifests func(h *harness)
		outcome   state.Outcome
		phase     state.Phase // phase the upload's outcome is recorded as
	}{
		{"no manifest", []string{nodeA}, func(*harness) {}, state.OutcomeFailed, state.Failed},
		{"incomplete manifest", []string{nodeA}, func(h *harness) { h.partialManifest("101", 0, nodeA, 10) }, state.OutcomePartial, state.Partial},
		{"one of two nodes saved", []string{nodeA, nodeB}, func(h *harness) { h.completeManifest("101", 0, nodeA, 10) }, state.OutcomePartial, state.Partial},
		{"both nodes saved", []string{nodeA, nodeB}, func(h *harness) {
			h.completeManifest("101", 0, nodeA, 10)
			h.completeManifest("101", 0, nodeB, 20)
		}, state.OutcomeComplete, state.Rescued},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, k := rescueSetup(t, nil, batchJob("101", tc.nodes...))
			var phases []state.Phase
			h.store.interfere = func(r *state.Record) bool { phases = append(phases, r.Phase); return false }
			tc.manifests(h)
			h.reconcile(t, k)

			r := h.store.record(t, k)
			if r.Phase != state.Done || r.Outcome != tc.outcome || r.Requeue != "requeued" {
				t.Errorf("record: %s %s %q, want Done %s requeued", r.Phase, r.Outcome, r.Requeue, tc.outcome)
			}
			if !slices.Contains(phases, tc.phase) {
				t.Errorf("phases written %v, want %s among them", phases, tc.phase)
			}
			if j := h.slurm.job("101"); j.Restarts != 1 || j.Held() {
				t.Errorf("job: restarts %d reason %s, want requeued and released", j.Restarts, j.Reason)
			}
			env := h.env(t, "101")
			if string(env.Status) != string(tc.outcome) || env.URI != "s3://rescue-bucket/spot/lab/101/run-0/" {
				t.Errorf("env %+v, want status %s", env, tc.outcome)
			}
			if got := h.metric(t, "spotrescue_rescues_total", "outcome="+string(tc.outcome)); got != 1 {
				t.Errorf("rescues_total{%s} = %v", tc.outcome, got)
			}
			if len(tc.nodes) == 2 {
				if got := h.disp.commandsTo(instB); len(got) != 1 {
					t.Errorf("the surviving node of the job got %d agents, want 1", len(got))
				}
			}
		})
	}
}

func TestDeadlinePassedBeforeDispatchFails(t *testing.T) {
	h, k := heldSetup(t, nil, batchJob("101", nodeA))
	h.disp.mu.Lock()
	h.disp.fail = nil
	h.disp.mu.Unlock()
	h.clock.Advance(Reclaim - testMargin + time.Second)
	h.reconcile(t, k)

	r := h.store.record(t, k)
	if r.Outcome != state.OutcomeFailed || r.Phase != state.Done {
		t.Errorf("record: %s %s, want Done failed", r.Phase, r.Outcome)
	}
	if len(h.disp.requests()) != 0 {
		t.Error("an agent was dispatched after the deadline")
	}
	if !slices.ContainsFunc(r.Errors, func(e string) bool { return strings.Contains(e, "deadline passed") }) {
		t.Errorf("errors %v do not say the deadline passed", r.Errors)
	}
	if j := h.slurm.job("101"); j.Restarts != 1 || j.Held() {
		t.Errorf("job: restarts %d reason %s, want requeued and released", j.Restarts, j.Reason)
	}
}

func TestDispatchFailureIsRetried(t *testing.T) {
	h, k := heldSetup(t, nil, batchJob("101", nodeA))
	if _, err := h.c.Reconcile(context.Background(), k.String()); err == nil {
		t.Fatal("Reconcile succeeded although no agent could be dispatched")
	}
	r := h.store.record(t, k)
	if r.Phase != state.Held {
		t.Errorf("phase %s after a failed dispatch, want Held", r.Phase)
	}
	if r.Attempts != 1 || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "ThrottlingException") {
		t.Errorf("attempts %d errors %v, want the dispatch error recorded", r.Attempts, r.Errors)
	}
	if got := h.metric(t, "spotrescue_reconcile_errors_total", "phase=Held"); got != 1 {
		t.Errorf("reconcile_errors_total{Held} = %v", got)
	}
	// Once by the intake's dispatch, once by reconcile's.
	if got := h.metric(t, "spotrescue_aws_errors_total", "service=ssm", "operation=SendCommand"); got != 2 {
		t.Errorf("aws_errors_total{ssm,SendCommand} = %v", got)
	}

	h.disp.mu.Lock()
	h.disp.fail = nil
	h.disp.mu.Unlock()
	h.clock.Advance(2 * time.Second)
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, k)
	r = h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete || r.Attempts != 0 {
		t.Errorf("after the retry: %s %s attempts %d", r.Phase, r.Outcome, r.Attempts)
	}
	if j := h.slurm.job("101"); j.Restarts != 1 {
		t.Errorf("restarts %d", j.Restarts)
	}
}

// Some nodes dispatched is progress; the others are retried while tracking.
func TestPartialDispatchProceeds(t *testing.T) {
	h := newHarness(t, now(), nil, batchJob("101", nodeA, nodeB))
	h.disp.failFor[instB] = true
	h.disp.setStatus(instA, "InProgress")
	h.warn(t, "m1", instA)
	k := key("101", 0)
	h.reconcile(t, k)
	r := h.store.record(t, k)
	if r.Phase != state.Dispatched || r.Nodes[0].Command == "" || r.Nodes[1].Command != "" {
		t.Fatalf("record %s nodes %+v", r.Phase, r.Nodes)
	}
	h.disp.mu.Lock()
	h.disp.failFor[instB] = false
	h.disp.mu.Unlock()
	h.disp.setStatus(instA, "Success")
	h.disp.setStatus(instB, "Success")
	h.completeManifest("101", 0, nodeA, 10)
	h.completeManifest("101", 0, nodeB, 10)
	h.reconcile(t, k)
	r = h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Errorf("record %s %s, want Done complete", r.Phase, r.Outcome)
	}
	if n := len(h.disp.commandsTo(instB)); n != 1 {
		t.Errorf("node B got %d agents, want 1", n)
	}
}

// Another writer updating the record between a step's read and its write
// fails the step; the retry re-reads and carries on, and no step that
// already reached Slurm is repeated in a way the job would notice.
func TestConflictingWriteIsRetried(t *testing.T) {
	// (Held and Dispatched are written by the intake.)
	for _, phase := range []state.Phase{state.Rescued, state.Requeued, state.Done} {
		t.Run(string(phase), func(t *testing.T) {
			h, k := rescueSetup(t, nil, batchJob("101", nodeA))
			h.completeManifest("101", 0, nodeA, 10)
			interfered := false
			h.store.interfere = func(r *state.Record) bool {
				if r.Phase == phase && !interfered {
					interfered = true
					return true
				}
				return false
			}
			_, err := h.tryReconcile(k)
			// Dispatched merges the conflict (its SendCommand cannot be
			// repeated); every other step fails and is retried.
			if phase != state.Dispatched && !errors.Is(err, state.ErrConflict) {
				t.Fatalf("Reconcile with a conflicting write: %v, want ErrConflict", err)
			}
			if !interfered {
				t.Fatal("no write reached the phase")
			}
			h.clock.Advance(time.Second)
			h.reconcile(t, k)

			r := h.store.record(t, k)
			if r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
				t.Errorf("record %s %s, want Done complete", r.Phase, r.Outcome)
			}
			j := h.slurm.job("101")
			if j.Restarts != 1 || h.slurm.requeued != 1 {
				t.Errorf("restarts %d after %d requeues, want exactly one", j.Restarts, h.slurm.requeued)
			}
			if j.Held() {
				t.Errorf("job left held: %s", j.Reason)
			}
			if env := h.env(t, "101"); env.Status != "complete" {
				t.Errorf("env %+v", env)
			}
		})
	}
}

func TestDryRunChangesNothingInSlurm(t *testing.T) {
	j := batchJob("101", nodeA)
	h, k := rescueSetup(t, func(o *Options) { o.DryRun = true }, j)
	before := h.slurm.job("101")
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, k)

	r := h.store.record(t, k)
	if r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Errorf("dry-run record %s %s, want Done complete", r.Phase, r.Outcome)
	}
	after := h.slurm.job("101")
	if after.State != before.State || after.Reason != before.Reason || after.Restarts != before.Restarts ||
		after.AdminComment != before.AdminComment || after.Priority != before.Priority {
		t.Errorf("dry run changed the job:\n before %+v\n after  %+v", before, after)
	}
	if d := h.slurm.drainedNodes(); len(d) != 0 {
		t.Errorf("dry run drained %v", d)
	}
	h.noEnv(t, "101")
}

func TestDryRunDoesNotDrainIdleNode(t *testing.T) {
	h := newHarness(t, now(), func(o *Options) { o.DryRun = true })
	h.warn(t, "m1", instA)
	if d := h.slurm.drainedNodes(); len(d) != 0 {
		t.Errorf("dry run drained %v", d)
	}
}

// A checkpoint signal gives the job its grace period before the upload
// starts, but never more than half the time left.
func TestCheckpointSignalAndGrace(t *testing.T) {
	h, k := rescueSetup(t, func(o *Options) { o.Policy = Policy{Signal: "USR1", Grace: 15 * time.Second} }, batchJob("101", nodeA))
	wait := h.reconcile(t, k)
	if wait != 15*time.Second {
		t.Errorf("wait %v, want the 15 s grace", wait)
	}
	if got := h.slurm.signals["101"]; !slices.Equal(got, []string{"USR1"}) {
		t.Errorf("signals %v, want USR1", got)
	}
	if r := h.store.record(t, k); r.Phase != state.Held || len(h.disp.requests()) != 0 {
		t.Errorf("upload started during the grace period (%s)", r.Phase)
	}
	h.clock.Advance(15 * time.Second)
	h.completeManifest("101", 0, nodeA, 10)
	h.reconcile(t, k)
	if r := h.store.record(t, k); r.Phase != state.Done || r.Outcome != state.OutcomeComplete {
		t.Errorf("after the grace: %s %s", r.Phase, r.Outcome)
	}
	if got := h.slurm.signals["101"]; len(got) != 1 {
		t.Errorf("signals %v, want one", got)
	}

	// A grace longer than the budget is cut to leave the upload half the time.
	h2, k2 := rescueSetup(t, func(o *Options) { o.Policy = Policy{Signal: "USR1", Grace: 10 * time.Minute} }, batchJob("101", nodeA))
	rec := h2.store.record(t, k2)
	wait = h2.reconcile(t, k2)
	latest := rec.Deadline.Add(-(Reclaim - testMargin) / 2)
	if want := latest.Sub(h2.clock.Now()); wait != want {
		t.Errorf("wait %v, want %v (half the budget)", wait, want)
	}
}

func TestResumeEnqueuesUnfinishedRecords(t *testing.T) {
	h := newHarness(t, now(), nil)
	for _, r := range []*state.Record{
		{Key: key("101", 0), Phase: state.Detected},
		{Key: key("102", 1), Phase: state.Dispatched},
		{Key: key("103", 0), Phase: state.Requeued},
		{Key: key("104", 0), Phase: state.Done},
		{Key: state.Key{Cluster: "other", JobID: "105", Run: 0}, Phase: state.Held},
	} {
		h.store.put(r)
	}
	if err := h.c.resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.c.queue.Len(); n != 3 {
		t.Errorf("queue length %d, want 3", n)
	}
	if got := h.queued(); !slices.Equal(got, []string{"lab/101/0", "lab/102/1", "lab/103/0"}) {
		t.Errorf("queued %v", got)
	}

	h.store.activeErr = errors.New("ResourceNotFoundException")
	if err := h.c.resume(context.Background()); err == nil {
		t.Error("resume hid a store failure: the controller would run without its records")
	}
}

func TestReconcileOfUnknownOrMalformedKey(t *testing.T) {
	h := newHarness(t, now(), nil)
	for _, key := range []string{"lab/999/0", "lab/../0", "garbage"} {
		if wait, err := h.c.Reconcile(context.Background(), key); err != nil || wait != 0 {
			t.Errorf("Reconcile(%q) = %v, %v; want it dropped", key, wait, err)
		}
	}
}

// A manifest the controller can never use (another job's, written there by
// a compute node's user; not JSON; too big) counts as nothing saved on that
// node, with the reason on the node: it once made collect retry for ever,
// and the job stayed held.
func TestUnusableManifestCountsAsNothingSaved(t *testing.T) {
	for name, bad := range map[string]func(h *harness){
		"another job's": func(h *harness) {
			h.manifests.put(h.layout.NodePrefix("101", 0, nodeA), &rescue.Manifest{Version: 1, JobID: "999", Run: 0, Node: nodeA, Complete: true, Bytes: 1})
		},
		"not a manifest": func(h *harness) {
			h.manifests.err = fmt.Errorf("manifest s3://b/x: %w: parse manifest: invalid character", rescue.ErrBadManifest)
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, k := rescueSetup(t, nil, batchJob("101", nodeA))
			h.clock.Advance(40 * time.Second)
			bad(h)
			h.disp.setStatus(instA, "Success")
			h.reconcile(t, k)
			r := h.store.record(t, k)
			if r.Phase != state.Done || r.Outcome != state.OutcomeFailed || r.Nodes[0].Problem == "" {
				t.Errorf("record: %s %s, node problem %q; want Done, failed and why", r.Phase, r.Outcome, r.Nodes[0].Problem)
			}
			if e := h.env(t, "101"); e.Status != "failed" {
				t.Errorf("the next run is told %q", e.Status)
			}
		})
	}
}

// While an agent uploads, Reconcile asks to look again within pollEvery,
// by the controller's clock (not the wall clock).
func TestTrackPollsWhileTheAgentUploads(t *testing.T) {
	start := time.Date(2026, 11, 20, 5, 12, 58, 0, time.UTC) // the fixture's warning time
	h := newHarness(t, start, nil, batchJob("101", nodeA))
	k := key("101", 0)
	h.warn(t, "m1", instA)
	h.disp.setStatus(instA, "InProgress")
	wait, err := h.c.Reconcile(context.Background(), k.String())
	if err != nil || wait <= 0 || wait > pollEvery {
		t.Errorf("Reconcile while the agent uploads = %v, %v; want a poll delay in (0, %v]", wait, err, pollEvery)
	}
}

// A rescue whose deadline passed before its upload started still tells the
// next run: its env file reads, with status failed.
func TestDeadlinePassedTellsTheNextRun(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.clock.Advance(Reclaim - testMargin + time.Second)
	h.reconcile(t, k)
	if r := h.store.record(t, k); r.Phase != state.Done || r.Outcome != state.OutcomeFailed {
		t.Fatalf("record %s %s", r.Phase, r.Outcome)
	}
	env, err := h.layout.ReadJobEnv("101")
	switch {
	case errors.Is(err, rescue.ErrNoEnv):
	case err != nil:
		t.Errorf("the next run's env file cannot be read: %v", err)
	case env.Status != "failed":
		t.Errorf("env status %q, want failed", env.Status)
	}
}

// A write that conflicts after the agents were sent (another warning of
// the job marking its node) is merged into a fresh read: the commands are
// kept, and no node gets a second agent uploading beside the first.
func TestConflictAfterDispatchKeepsOneAgentPerNode(t *testing.T) {
	h, k := rescueSetup(t, nil, batchJob("101", nodeA))
	h.completeManifest("101", 0, nodeA, 10)
	interfered := false
	h.store.interfere = func(r *state.Record) bool {
		if r.Phase == state.Dispatched && !interfered {
			interfered = true
			return true
		}
		return false
	}
	h.reconcile(t, k)
	if n := len(h.disp.commandsTo(instA)); n != 1 {
		t.Errorf("%d agents sent to %s for one rescue, want 1", n, instA)
	}
}
