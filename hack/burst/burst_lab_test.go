//go:build lab

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// A burst of 100 interruptions (200 jobs) through the real controller:
// every job is dispatched, and every instance gets exactly one agent.
// Correctness only; `make bench-burst` measures speed.
func TestBurstDispatchesEveryJobOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o := options{mode: "replay", n: 100, jobsPerNode: 2, bin: "../../bin"}
	bin, _ := filepath.Abs(o.bin)
	repo, _ := filepath.Abs("../..")
	dir := t.TempDir()
	ep, err := privateEmulators(ctx, dir, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.stop()
	c, err := prepare(ctx, nil, ep, o, repo, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := measure(ctx, ep, o, c, bin)
	if err != nil {
		t.Fatal(err)
	}
	if res.dispatched != c.jobs {
		t.Errorf("%d of %d jobs dispatched", res.dispatched, c.jobs)
	}
	// Every job is in exactly one plan: one agent saves it, once.
	plans, _ := filepath.Glob(filepath.Join(dir, "spool", "plans", "*", "*.json"))
	perJob, instances := map[string]int{}, map[string]bool{}
	for _, p := range plans {
		var plan rescue.Plan
		b, _ := os.ReadFile(p)
		if err := json.Unmarshal(b, &plan); err != nil {
			t.Fatal(err)
		}
		instances[plan.Instance] = true
		for _, j := range plan.Jobs {
			perJob[j.JobID]++
		}
	}
	if len(instances) != o.n || len(perJob) != c.jobs {
		t.Errorf("%d instances and %d jobs got an agent, want %d and %d", len(instances), len(perJob), o.n, c.jobs)
	}
	for job, n := range perJob {
		if n != 1 {
			t.Errorf("job %s is in %d plans, want 1", job, n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "slurm-calls.log")); err != nil {
		t.Errorf("no Slurm command was run: %v", err)
	}
}

// A job on 2,500 nodes (Slurm replayed) is rescued and recorded: its
// record, with an entry per node, once exceeded DynamoDB's 400 KB item
// limit and could not be written at all. Every node's agent is dispatched;
// the manifests the test leaves as the agents would make the outcome
// complete, with every node's bytes counted.
func TestJobOnTwoThousandFiveHundredNodes(t *testing.T) {
	const n = 2500
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Node names as long as ParallelCluster's, and a day's worth of bytes.
	o := options{mode: "replay", n: n, jobsPerNode: 1, bin: "../../bin", nodeName: "queue1-dy-c5xlarge-"}
	bin, _ := filepath.Abs(o.bin)
	repo, _ := filepath.Abs("../..")
	dir := t.TempDir()
	ep, err := privateEmulators(ctx, dir, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.stop()
	c, err := prepare(ctx, nil, ep, o, repo, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	const job = "4242"
	if err := replayOneJob(c.binDir, job, c.nodes); err != nil {
		t.Fatal(err)
	}
	// What each node's agent would leave.
	s3c := s3.NewFromConfig(ep.cfg, func(o *s3.Options) { o.UsePathStyle = true })
	layout := rescue.Layout{Bucket: "spotrescue-lab", Prefix: "spotrescue", Cluster: c.name}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, node := range c.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m, _ := json.Marshal(rescue.Manifest{Version: 1, JobID: job, Node: node, Complete: true, Algorithm: rescue.ChecksumCRC32C, Bytes: 987654321098, Files: []rescue.File{}})
			if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("spotrescue-lab"), Key: aws.String(rescue.ManifestKey(layout.NodePrefix(job, 0, node))), Body: bytes.NewReader(m)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	p, err := startController(ctx, ep, c, bin, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.cmd.Process.Signal(syscall.SIGTERM); p.cmd.Wait() }()
	if _, err := sendWarnings(ctx, ep.sqsClient(), c.queueURL, c.nodes[:1], c.instances); err != nil {
		t.Fatal(err)
	}
	store := state.New(ep.dynamodb(), c.stateTbl)
	var rec *state.Record
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
		rec, err = store.Get(ctx, state.Key{Cluster: c.name, JobID: job})
		if err == nil && rec.Phase.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "controller.log"))
			t.Fatalf("record %+v, %v after 5 minutes; controller log:\n%s", rec, err, tail(string(log), 30))
		}
	}
	if len(rec.Nodes) != n || rec.Outcome != state.OutcomeComplete || rec.Bytes != n*987654321098 {
		t.Errorf("record: %d nodes, outcome %s, %d bytes; want %d nodes, complete, %d bytes", len(rec.Nodes), rec.Outcome, rec.Bytes, n, n*987654321098)
	}
	commands := map[string]bool{}
	for _, nd := range rec.Nodes {
		if nd.Command == "" {
			t.Fatalf("node %s got no agent", nd.Name)
		}
		commands[nd.Command] = true
	}
	t.Logf("%d nodes, %d SSM commands; record %s, %s", len(rec.Nodes), len(commands), rec.Phase, rec.Requeue)
}

// replayOneJob makes the replayed Slurm state one running batch job on
// every node.
func replayOneJob(dir, id string, nodes []string) error {
	b, err := os.ReadFile(filepath.Join(dir, "squeue.json"))
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	j := doc["jobs"].([]any)[0].(map[string]any)
	list := strings.Join(nodes, ",")
	j["job_id"], j["nodes"], j["batch_host"], j["name"], j["node_count"] = id, list, nodes[0], "wide", len(nodes)
	j["job_resources"] = map[string]any{"nodes": list, "allocated_hosts": len(nodes)}
	doc["jobs"] = []any{j}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "squeue.json"), out, 0o644)
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
