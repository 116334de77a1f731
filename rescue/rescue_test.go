package rescue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"go.uber.org/zap"
)

func TestScratchDirRefusesPathTricks(t *testing.T) {
	tmpl := "/scratch/{user}/{job_id}"
	got, err := ScratchDir(tmpl, NewScratchVars("42", "alice", "", "", "n1"))
	if err != nil || got != "/scratch/alice/42" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, v := range []ScratchVars{
		NewScratchVars("42", "../root", "", "", "n1"),
		NewScratchVars("42/../../etc", "alice", "", "", "n1"),
		NewScratchVars("42", "a b", "", "", "n1"),
		NewScratchVars("", "alice", "", "", "n1"),
	} {
		if got, err := ScratchDir(tmpl, v); err == nil {
			t.Errorf("%+v expanded to %q", v, got)
		}
	}
	got, err = ScratchDir("/s/{array_job_id}_{array_task_id}/{job_id}", NewScratchVars("7", "u", "", "", "n"))
	if err != nil || got != "/s/none_none/7" {
		t.Fatalf("plain job in an array template: %q, %v", got, err)
	}
}

func TestJobEnvRoundTrip(t *testing.T) {
	l := Layout{Spool: t.TempDir()}
	in := JobEnv{URI: "s3://b/p/c/42/run-1/", Status: "partial", Run: 1, Nodes: [][]string{{"q-dy-c5-1", "q-dy-c5-2"}, {"q-dy-r6-1"}}}
	if err := l.WriteJobEnv("42", in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(l.EnvPath("42"))
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("env file mode %v, %v; want read-only to all, written by root", fi.Mode(), err)
	}
	out, err := l.ReadJobEnv("42")
	if err != nil || out.URI != in.URI || out.Status != in.Status || out.Run != 1 || fmt.Sprint(out.Nodes) != "[[q-dy-c5-1 q-dy-c5-2] [q-dy-r6-1]]" {
		t.Fatalf("read back %+v, %v", out, err)
	}
	if _, err := l.ReadJobEnv("43"); err != ErrNoEnv {
		t.Fatalf("missing env: %v", err)
	}
	for _, bad := range []JobEnv{
		{URI: "s3://b/x\nexport LD_PRELOAD=/evil", Status: "complete"},
		{URI: "s3://b/p/", Status: "complete; id"},
		{URI: "s3://b/p/", Status: "skipped"},
		{URI: "/etc/passwd", Status: "complete"},
		{URI: "s3://b/p/", Status: "complete", Run: -1},
		{URI: "s3://b/p/", Status: "complete", Nodes: [][]string{{"../x"}}},
	} {
		if err := l.WriteJobEnv("44", bad); err == nil {
			t.Errorf("%+v was written", bad)
		}
	}
}

func TestResolveDeadlines(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plan := t0.Add(105 * time.Second) // event + 120 s - 15 s
	d := ResolveDeadlines(plan, 15*time.Second, time.Time{})
	if !d.Soft.Equal(plan) || !d.Hard.Equal(t0.Add(115*time.Second)) {
		t.Errorf("no IMDS: %+v", d)
	}
	// IMDS says the instance goes 30 s earlier than the plan thought.
	d = ResolveDeadlines(plan, 15*time.Second, t0.Add(90*time.Second))
	if !d.Soft.Equal(t0.Add(75*time.Second)) || !d.Hard.Equal(t0.Add(85*time.Second)) {
		t.Errorf("early IMDS: %+v", d)
	}
	// A later IMDS time never extends the plan's deadline.
	d = ResolveDeadlines(plan, 15*time.Second, t0.Add(200*time.Second))
	if !d.Soft.Equal(plan) {
		t.Errorf("late IMDS: %+v", d)
	}
}

// fakeSSM records SendCommand calls; it can refuse one instance like SSM
// does for an instance that is no longer managed.
type fakeSSM struct {
	mu    sync.Mutex
	calls [][]string
	bad   string
	n     atomic.Int64
}

func (f *fakeSSM) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in.InstanceIds)
	for _, id := range in.InstanceIds {
		if id == f.bad {
			return nil, &ssmtypes.InvalidInstanceId{Message: aws.String("not managed")}
		}
	}
	return &ssm.SendCommandOutput{Command: &ssmtypes.Command{CommandId: aws.String(fmt.Sprintf("cmd-%d", f.n.Add(1)))}}, nil
}

func (f *fakeSSM) GetCommandInvocation(context.Context, *ssm.GetCommandInvocationInput, ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error) {
	return nil, &ssmtypes.InvocationDoesNotExist{}
}

// 120 jobs on 60 instances, requested concurrently, become 2 SendCommand
// calls (50 + 10 instances) and one plan per instance holding its jobs.
func TestDispatcherBatches(t *testing.T) {
	f := &fakeSSM{}
	l := Layout{Bucket: "b", Prefix: "p", Cluster: "c", Spool: t.TempDir()}
	d := &Dispatcher{SSM: f, Layout: l, Document: "SpotRescue-Rescue", Window: 100 * time.Millisecond, Log: zap.NewNop()}
	var wg sync.WaitGroup
	cmds := make([]map[string]string, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := fmt.Sprintf("i-%017x", i)
			req := func(job int) Request {
				return Request{Instance: inst, Node: fmt.Sprintf("n%d", i), Job: PlanJob{JobID: fmt.Sprint(job), Prefix: "x/"}, Deadline: time.Now().Add(time.Minute)}
			}
			var err error
			cmds[i], err = d.Dispatch(context.Background(), []Request{req(i), req(i + 60)})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(f.calls) != 2 || len(f.calls[0])+len(f.calls[1]) != 60 || max(len(f.calls[0]), len(f.calls[1])) != MaxTargets {
		t.Fatalf("calls = %d with sizes %d, %d", len(f.calls), len(f.calls[0]), len(f.calls[len(f.calls)-1]))
	}
	for i, c := range cmds {
		inst := fmt.Sprintf("i-%017x", i)
		if c[inst] == "" {
			t.Fatalf("request %d got no command", i)
		}
	}
	plans, _ := filepath.Glob(filepath.Join(l.Spool, "plans", "*", "*.json"))
	if len(plans) != 60 {
		t.Fatalf("%d plan files, want 60", len(plans))
	}
	id := filepath.Base(filepath.Dir(plans[0]))
	inst := strings.TrimSuffix(filepath.Base(plans[0]), ".json")
	p, err := l.ReadPlan(id, inst)
	if err != nil || len(p.Jobs) != 2 {
		t.Fatalf("plan for %s: %+v, %v (want 2 jobs)", inst, p, err)
	}
}

// One unmanaged instance does not cost the others their rescue.
func TestDispatcherIsolatesABadInstance(t *testing.T) {
	f := &fakeSSM{bad: "i-00000000000000002"}
	d := &Dispatcher{SSM: f, Layout: Layout{Spool: t.TempDir()}, Document: "d", Window: 10 * time.Millisecond, Log: zap.NewNop()}
	var reqs []Request
	for i := 1; i <= 3; i++ {
		reqs = append(reqs, Request{Instance: fmt.Sprintf("i-%017d", i), Node: fmt.Sprint("n", i), Job: PlanJob{JobID: "1"}})
	}
	cmds, err := d.Dispatch(context.Background(), reqs)
	if err == nil || !strings.Contains(err.Error(), f.bad) {
		t.Fatalf("err = %v, want one naming %s", err, f.bad)
	}
	if len(cmds) != 2 || cmds[f.bad] != "" {
		t.Fatalf("commands = %v", cmds)
	}
	// Only the plans of commands that were sent stay: one per instance
	// that got an agent, none for the failed batch or the bad instance.
	plans, _ := filepath.Glob(filepath.Join(d.Layout.Spool, "plans", "*", "*.json"))
	if len(plans) != 2 {
		t.Errorf("%d plan files left, want 2: %v", len(plans), plans)
	}
}

func (f *fakeSSM) CancelCommand(context.Context, *ssm.CancelCommandInput, ...func(*ssm.Options)) (*ssm.CancelCommandOutput, error) {
	return &ssm.CancelCommandOutput{}, nil
}

// A pre-sync and a final rescue of one instance never share a plan: each
// goes in its own command, and the plans say which they are.
func TestDispatcherKeepsPresyncApart(t *testing.T) {
	f := &fakeSSM{}
	l := Layout{Spool: t.TempDir()}
	d := &Dispatcher{SSM: f, Layout: l, Document: "d", Window: 20 * time.Millisecond, Log: zap.NewNop(), Checksum: "SHA256", Priority: []string{"*.ckpt"}}
	inst := "i-00000000000000001"
	cmds, err := d.Dispatch(context.Background(), []Request{
		{Instance: inst, Node: "n1", Job: PlanJob{JobID: "1"}, Presync: true},
		{Instance: inst, Node: "n1", Job: PlanJob{JobID: "2"}},
	})
	if err != nil || len(f.calls) != 2 || len(cmds) != 1 {
		t.Fatalf("calls %v cmds %v err %v", f.calls, cmds, err)
	}
	plans, _ := filepath.Glob(filepath.Join(l.Spool, "plans", "*", inst+".json"))
	if len(plans) != 2 {
		t.Fatalf("%d plans, want 2", len(plans))
	}
	presyncs := 0
	for _, p := range plans {
		plan, err := l.ReadPlan(filepath.Base(filepath.Dir(p)), inst)
		if err != nil || len(plan.Jobs) != 1 || plan.Checksum != "SHA256" || plan.Priority[0] != "*.ckpt" {
			t.Fatalf("plan %+v %v", plan, err)
		}
		if plan.Presync {
			presyncs++
			if plan.Jobs[0].JobID != "1" {
				t.Errorf("pre-sync plan holds job %s", plan.Jobs[0].JobID)
			}
		}
	}
	if presyncs != 1 {
		t.Errorf("%d pre-sync plans, want 1", presyncs)
	}
}
