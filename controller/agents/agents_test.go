package agents

import (
	"context"
	"fmt"
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

	"github.com/spotrescue/spotrescue/rescue"
)

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
	l := rescue.Layout{Bucket: "b", Prefix: "p", Cluster: "c", Spool: t.TempDir()}
	d := &Dispatcher{SSM: f, Layout: l, Document: "SpotRescue-Rescue", Window: 100 * time.Millisecond, Log: zap.NewNop()}
	var wg sync.WaitGroup
	cmds := make([]map[string]string, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := fmt.Sprintf("i-%017x", i)
			req := func(job int) Request {
				return Request{Instance: inst, Node: fmt.Sprintf("n%d", i), Job: rescue.PlanJob{JobID: fmt.Sprint(job), Prefix: "x/"}, Deadline: time.Now().Add(time.Minute)}
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
	d := &Dispatcher{SSM: f, Layout: rescue.Layout{Spool: t.TempDir()}, Document: "d", Window: 10 * time.Millisecond, Log: zap.NewNop()}
	var reqs []Request
	for i := 1; i <= 3; i++ {
		reqs = append(reqs, Request{Instance: fmt.Sprintf("i-%017d", i), Node: fmt.Sprint("n", i), Job: rescue.PlanJob{JobID: "1"}})
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
	l := rescue.Layout{Spool: t.TempDir()}
	d := &Dispatcher{SSM: f, Layout: l, Document: "d", Window: 20 * time.Millisecond, Log: zap.NewNop(), Checksum: "SHA256", Priority: []string{"*.ckpt"}}
	inst := "i-00000000000000001"
	cmds, err := d.Dispatch(context.Background(), []Request{
		{Instance: inst, Node: "n1", Job: rescue.PlanJob{JobID: "1"}, Presync: true},
		{Instance: inst, Node: "n1", Job: rescue.PlanJob{JobID: "2"}},
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
