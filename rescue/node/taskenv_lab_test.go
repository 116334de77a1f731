//go:build lab

package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// When slurmd skips the Prolog (a requeued job back on a node within the
// credential lifetime), the TaskProlog restores the data itself, once,
// and exports SPOT_RESCUE_DIR.
func TestTaskPrologRestoresWhenThePrologDidNot(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	root := t.TempDir()
	cfg := Settings{Cluster: "lab", Region: "us-east-1", Bucket: "spotrescue-lab", Prefix: "spotrescue", Spool: t.TempDir(),
		ScratchRoot: filepath.Join(root, "{node}"), PathTemplate: filepath.Join(root, "{node}", "{job_id}"), Restore: true, RestoreTimeout: time.Minute}
	job := fmt.Sprint(time.Now().UnixNano() % 1e9)
	// What a rescue of run 0 on node-a left: data in S3 and the env file.
	src := filepath.Join(root, "node-a", job)
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "state.ckpt"), []byte("epoch 7"), 0o644)
	layout := cfg.Layout()
	agent := &rescue.Agent{S3: l.S3(), Log: zap.NewNop(), Root: cfg.ScratchRoot, Concurrency: 2}
	res := agent.Rescue(ctx, &rescue.Plan{ID: "p1", Instance: "i-0c0ffee0000000001", Node: "node-a", Bucket: cfg.Bucket,
		Jobs: []rescue.PlanJob{{JobID: job, Dir: src, Prefix: layout.NodePrefix(job, 0, "node-a")}}}, rescue.Deadlines{Soft: time.Now().Add(time.Minute), Hard: time.Now().Add(time.Minute)})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if err := layout.WriteJobEnv(job, rescue.JobEnv{URI: layout.RunURI(job, 0), Status: rescue.Complete, Run: 0, Nodes: [][]string{{"node-a"}}}); err != nil {
		t.Fatal(err)
	}
	// Run 1 starts on node-b; no Prolog ran there.
	env := Job{ID: job, User: "root", Node: "node-b", NodeList: "node-b", UID: os.Getuid(), GID: os.Getgid(), Restarts: 1}
	os.MkdirAll(filepath.Join(root, "node-b", job), 0o700)
	var out bytes.Buffer
	if err := TaskEnv(ctx, &out, cfg, env); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "node-b", job)
	if !strings.Contains(out.String(), "export SPOT_RESCUE_DIR="+dst) || !strings.Contains(out.String(), "SPOT_RESCUE_STATUS=complete") {
		t.Fatalf("exports:\n%s", out.String())
	}
	if b, err := os.ReadFile(filepath.Join(dst, "state.ckpt")); err != nil || string(b) != "epoch 7" {
		t.Fatalf("restored file: %q %v", b, err)
	}
	// A second task finds the marker and restores nothing again.
	os.WriteFile(filepath.Join(dst, "state.ckpt"), []byte("epoch 8, written by the job"), 0o644)
	out.Reset()
	TaskEnv(ctx, &out, cfg, env)
	if b, _ := os.ReadFile(filepath.Join(dst, "state.ckpt")); string(b) != "epoch 8, written by the job" {
		t.Errorf("the second task restored again over the job's own write: %q", b)
	}
}
