//go:build lab

package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// burst is a set of jobs on every node of the lab, each node about to get
// a warning at once.
type burst struct {
	e     *env
	nodes []string
	jobs  map[string]string            // job -> node
	sums  map[string]map[string]string // job -> file -> sha256
}

// chaosSize is how many nodes (interruptions) a burst uses: all four lab
// nodes in `make test`, CHAOS_INTERRUPTIONS (50) in `make chaos`.
func chaosSize(t *testing.T, l *lab.Lab) int {
	n := len(l.Nodes())
	if v := os.Getenv("CHAOS_INTERRUPTIONS"); v != "" {
		want, _ := strconv.Atoi(v)
		if want > n {
			t.Fatalf("CHAOS_INTERRUPTIONS=%d but the lab has %d nodes: run `make chaos`, which brings up a lab that size", want, n)
		}
		n = want
	}
	return n
}

// newBurst starts two jobs on each of n nodes and waits for their data.
func newBurst(e *env, n int) *burst {
	b := &burst{e: e, jobs: map[string]string{}, sums: map[string]map[string]string{}}
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("compute-%d", i)
		b.nodes = append(b.nodes, node)
		for range 2 {
			id := e.submitAsync("", "-n1", "-w", node)
			b.jobs[id] = node
		}
	}
	for id, node := range b.jobs {
		e.WaitJob(e.t, id, 120*time.Second, "RUNNING")
		lab.Eventually(e.t, 60*time.Second, "data of job "+id, func() bool {
			_, err := os.Stat(filepath.Join(e.Scratch(node), id, "ready"))
			return err == nil
		})
		b.sums[id] = sums(e.t, filepath.Join(e.Scratch(node), id))
	}
	return b
}

func (b *burst) warnAll() {
	for _, node := range b.nodes {
		b.e.send(warning(b.e.Instances[node], time.Now()))
	}
}

// check verifies the invariants: one Done record per interrupted run,
// requeued exactly once, data in S3 equal to its manifest and to the
// node's files, no job left held. The nodes are resumed (ParallelCluster
// would replace their instances) so the jobs can run again.
func (b *burst) check(timeout time.Duration) {
	e, t := b.e, b.e.t
	ctx := context.Background()
	for id := range b.jobs {
		rec := e.record(id, 0, state.Done, timeout)
		if rec.Outcome != state.OutcomeComplete {
			t.Errorf("job %s: outcome %s, errors %v", id, rec.Outcome, rec.Errors)
			b.agentOutput(rec)
		}
		if runs, _ := e.store.Runs(ctx, "lab", id); len(runs) != 1 {
			t.Errorf("job %s: %d records, want exactly 1", id, len(runs))
		}
		b.manifestMatchesS3(id)
	}
	for _, n := range b.nodes {
		e.Run(t, "scontrol", "update", "nodename="+n, "state=resume")
	}
	for id := range b.jobs {
		// The jobs are pinned with -w to their node: it is that node again.
		out := e.waitResumed(id, 120*time.Second)
		sameSums(t, b.sums[id], resumedSums(out))
		if t.Failed() {
			t.Logf("job %s output:\n%s", id, out)
		}
		j := e.slurmJob(id)
		if j.Restarts != 1 {
			t.Errorf("job %s: requeued %d times, want 1", id, j.Restarts)
		}
		if j.Held() {
			t.Errorf("job %s left held (%s)", id, j.Reason)
		}
	}
}

// manifestMatchesS3: every file the manifest lists is in S3 with its size.
func (b *burst) manifestMatchesS3(id string) {
	e, t := b.e, b.e.t
	prefix := fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, b.jobs[id])
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", prefix)
	if err != nil {
		t.Errorf("job %s: %v", id, err)
		return
	}
	objects := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(e.S3(), &s3.ListObjectsV2Input{Bucket: aws.String("spotrescue-lab"), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			objects[strings.TrimPrefix(aws.ToString(o.Key), prefix)] = aws.ToInt64(o.Size)
		}
	}
	for _, f := range m.Files {
		if f.Type != rescue.TypeFile {
			continue
		}
		if size, ok := objects[f.Path]; !ok || size != f.Size {
			t.Errorf("job %s: manifest lists %s (%d bytes), S3 has %d (present %v)", id, f.Path, f.Size, size, ok)
		}
	}
}

// The controller is killed with SIGKILL at random moments of a burst and
// restarted each time: every rescue still ends once, complete, requeued
// once, and no message is lost.
func TestChaosKilledDuringBurst(t *testing.T) {
	e := setup(t)
	n := chaosSize(t, e.Lab)
	kills := max(3, n/5)
	b := newBurst(e, n)
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	t.Logf("burst of %d interruptions (%d jobs), %d kills", n, len(b.jobs), kills)
	c := e.startController()
	for i := range 2 {
		e.send(fmt.Sprintf(`{"malformed": %d}`, i)) // evidence the DLQ must keep
	}
	b.warnAll()
	for range kills {
		time.Sleep(time.Duration(rnd.Int63n(int64(1500 * time.Millisecond))))
		c.kill9()
		c = e.startController()
	}
	b.check(3 * time.Minute)
	// Messages a killed controller had received come back after the
	// visibility timeout and are handled (or, malformed, redriven).
	lab.Eventually(t, 90*time.Second, "queue drained", func() bool { return e.queueCount(e.queueURL) == 0 })
	if n := e.queueCount(e.dlqURL); n != 2 {
		t.Errorf("DLQ holds %d messages, want the 2 malformed ones", n)
	}
	if !t.Failed() {
		t.Logf("invariants held after %d kills, for all %d jobs of %d interrupted nodes: exactly one record per interrupted run, Done and complete; "+
			"requeued exactly once (restart count 1); every file of each manifest in S3 with its size; the resumed runs found their files byte-identical; "+
			"no job left held; the queue drained; the DLQ holds exactly the 2 malformed messages", kills, len(b.jobs), n)
	}
}

// 20% of the requests to every AWS API the controller and the agent use
// fail (throttling, 5xx, dropped and lost connections): every rescue
// still completes.
func TestFaultsOnEveryAWSAPI(t *testing.T) {
	e := setup(t)
	n := chaosSize(t, e.Lab)
	b := newBurst(e, n)
	e.faults(`[{"service":"*","operation":"*","throttle":0.08,"error":0.06,"drop":0.03,"lose":0.03,"latency":"5ms"}]`)
	proxy := e.Env["LAB_FAULTPROXY_URL"]
	e.startControllerEnv([]string{"AWS_ENDPOINT_URL=" + proxy, "AWS_ENDPOINT_URL_SSM=" + proxy})
	b.warnAll()
	b.check(3 * time.Minute)
	stats := e.faultStats()
	t.Logf("faults injected: %s", stats)
	for _, api := range []string{"sqs/ReceiveMessage", "dynamodb/PutItem", "ssm/SendCommand", "s3/PutObject"} {
		if !strings.Contains(stats, api+"/") {
			t.Errorf("no traffic of %s went through the fault proxy", api)
		}
	}
}

// faults sets the fault proxy's rules for this test and clears them after.
func (e *env) faults(rules string) {
	put := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, e.Env["LAB_FAULTPROXY_URL"]+"/_fault/rules", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			e.t.Fatalf("set fault rules: %v", err)
		}
		resp.Body.Close()
	}
	put(rules)
	e.t.Cleanup(func() { put("[]") })
}

func (e *env) faultStats() string {
	resp, err := http.Get(e.Env["LAB_FAULTPROXY_URL"] + "/_fault/stats")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return b.String()
}

// agentOutput logs what the agents of a record printed, as SSM keeps it.
func (b *burst) agentOutput(rec *state.Record) {
	e, t := b.e, b.e.t
	for _, n := range rec.Nodes {
		if n.Command == "" {
			t.Logf("job %s on %s: no agent was sent", rec.JobID, n.Name)
			continue
		}
		out, err := e.SSM().GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(n.Command), InstanceId: aws.String(n.Instance)})
		if err != nil {
			t.Logf("job %s on %s: agent %s: %v", rec.JobID, n.Name, n.Command, err)
			continue
		}
		t.Logf("job %s on %s: agent %s %s\n%s\n%s", rec.JobID, n.Name, n.Command, out.Status,
			tail(aws.ToString(out.StandardOutputContent), 60), tail(aws.ToString(out.StandardErrorContent), 60))
	}
}
