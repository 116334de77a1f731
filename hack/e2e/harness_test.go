//go:build lab

// Package e2e tests the whole rescue loop in the lab: the real spotrescue
// binary as the controller, real Slurm jobs, moto's SQS/DynamoDB/S3, and
// ssmlocal running the agent on the lab nodes.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/spotrescue/spotrescue/controller/notify"
	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// env is one test's slice of the lab: its own state table and queue (with
// its DLQ, and ssmlocal's status events routed to it), nodes resumed
// afterwards. Nothing a test leaves behind can reach the next one.
type env struct {
	*lab.Lab
	t        *testing.T
	table    string
	store    *state.Store
	queueURL string
	dlqURL   string
}

// stopping tracks controllers still draining after their test ended.
var stopping sync.WaitGroup

func TestMain(m *testing.M) {
	code := m.Run()
	stopping.Wait()
	os.Exit(code)
}

func setup(t *testing.T) *env {
	t.Helper()
	l := lab.Get(t)
	ctx := context.Background()
	name := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	if err := state.CreateTable(ctx, l.DynamoDB(), name); err != nil {
		t.Fatal(err)
	}
	e := &env{Lab: l, t: t, table: name, store: state.New(l.DynamoDB(), name)}
	e.createQueues(name)
	e.routeSSMEvents(e.queueURL)
	t.Cleanup(func() { e.routeSSMEvents(l.QueueURL) })
	e.resumeNodes()
	t.Cleanup(e.resumeNodes)
	return e
}

// resumeNodes brings every lab node back into service and waits until
// Slurm schedules on all of them: whatever ran before (a demo, a test that
// drained a node and failed) must not decide where this test's jobs go.
func (e *env) resumeNodes() {
	all := strings.Join(append(e.Nodes(), e.PCNodes()...), ",")
	_ = e.Command("scontrol", "update", "nodename="+all, "state=resume").Run()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.Command("sinfo", "-h", "-N", "-n", all, "-o", "%N %t").Output()
		usable := map[string]bool{} // a node of two partitions is listed twice
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) == 2 && (f[1] == "idle" || f[1] == "mix" || f[1] == "alloc") {
				usable[f[0]] = true
			}
		}
		if err == nil && len(usable) == len(e.Instances) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("lab nodes not back in service after 60 s:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// controller is a running `spotrescue controller` process.
type controller struct {
	cmd     *exec.Cmd
	log     *syncBuffer
	metrics string
}

// syncBuffer is the controller's output, written by exec's copier while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startController runs the real binary against the lab, with this test's table.
func (e *env) startController(args ...string) *controller {
	e.t.Helper()
	return e.startControllerEnv(nil, args...)
}

// startControllerEnv is startController with extra environment.
func (e *env) startControllerEnv(extraEnv []string, args ...string) *controller {
	e.t.Helper()
	c := e.launchController(extraEnv, args...)
	lab.Eventually(e.t, 20*time.Second, "controller ready", func() bool {
		code, _ := c.readyz()
		return code == 200
	})
	return c
}

// readyz is the controller's /readyz status and body; 0 if it does not answer.
func (c *controller) readyz() (int, string) {
	resp, err := http.Get("http://" + c.metrics + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// launchController starts the controller without waiting for it.
func (e *env) launchController(extraEnv []string, args ...string) *controller {
	e.t.Helper()
	port := freePort(e.t)
	c := &controller{log: &syncBuffer{}, metrics: fmt.Sprintf("127.0.0.1:%d", port)}
	all := append([]string{"controller", "--state-table", e.table, "--queue-url", e.queueURL, "--metrics-listen", c.metrics, "--log-level", "debug"}, args...)
	c.cmd = exec.Command(filepath.Join(e.Bin, "spotrescue"), all...)
	c.cmd.Env = append(os.Environ(), extraEnv...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("controller log:\n%s", tail(c.log.String(), 120))
		}
		// A graceful stop waits for the last long poll (up to 20 s); the
		// controller owns its queue and table, so let it drain meanwhile.
		c.cmd.Process.Signal(syscall.SIGTERM)
		stopping.Add(1)
		go func() { defer stopping.Done(); c.wait(40 * time.Second) }()
	})
	return c
}

// wait reaps the process, killing it if it outlives timeout.
func (c *controller) wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		return <-done
	}
}

func (c *controller) kill9() {
	c.cmd.Process.Kill()
	c.wait(time.Minute)
}

// metric returns the value of one series from /metrics, 0 if absent.
func (c *controller) metric(t *testing.T, series string) float64 {
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			var v float64
			fmt.Sscan(val, &v)
			return v
		}
	}
	return 0
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// send puts an EventBridge envelope on the interruption queue.
func (e *env) send(body string) {
	e.t.Helper()
	_, err := e.SQS().SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(e.queueURL), MessageBody: aws.String(body)})
	if err != nil {
		e.t.Fatal(err)
	}
}

func envelope(detailType, instance string, at time.Time, detail map[string]any) string {
	detail["instance-id"] = instance
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": uuid.NewString(), "detail-type": detailType, "source": "aws.ec2",
		"account": "123456789012", "time": at.UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": []string{"arn:aws:ec2:us-east-1a:instance/" + instance}, "detail": detail,
	})
	return string(b)
}

func warning(instance string, at time.Time) string {
	return envelope("EC2 Spot Instance Interruption Warning", instance, at, map[string]any{"instance-action": "terminate"})
}

// jobScript writes data into the job's scratch on its first run and waits
// to be interrupted; a resumed run prints what the TaskProlog gave it and
// the checksums of the files it finds restored.
const jobScript = `#!/bin/bash
echo "start run=${SLURM_RESTART_COUNT:-0} node=$SLURMD_NODENAME"
echo "env uri=${SPOT_RESCUE_URI:-} status=${SPOT_RESCUE_STATUS:-} rrun=${SPOT_RESCUE_RUN:-} dir=${SPOT_RESCUE_DIR:-}"
if [ -z "${SPOT_RESCUE_URI:-}" ]; then
  cd "$SPOT_RESCUE_SCRATCH"
  mkdir -p out ckpt
  head -c ${DATA_BYTES:-1048576} /dev/urandom > out/a.bin
  echo "step 7 of 10" > ckpt/state.txt
  for i in $(seq 1 ${SMALL_FILES:-3}); do head -c 2048 /dev/urandom > out/small-$i.dat; done
  trap 'echo "checkpoint at $(date +%s)" > "$SPOT_RESCUE_SCRATCH/checkpoint.txt"' USR1
  touch ready
  # Short sleeps so the USR1 trap runs promptly; a "finish" file ends the job.
  for i in $(seq 600); do [ -e "$SPOT_RESCUE_SCRATCH/finish" ] && exit 0; sleep 1; done
else
  (cd "${SPOT_RESCUE_DIR:-/nonexistent}" && find . -type f ! -name ready | sort | xargs -r sha256sum | sed 's/^/sum /')
  echo "resumed"
  # KEEP_RUNNING: stay up to be interrupted again.
  [ -n "${KEEP_RUNNING:-}" ] && touch "$SPOT_RESCUE_SCRATCH/resumed-$SLURM_RESTART_COUNT" && sleep 600
fi
`

// submit starts the job script with extra sbatch args and waits until it
// has written its data; it returns the job id and the node it runs on.
func (e *env) submit(extraEnv string, args ...string) (id, node string) {
	e.t.Helper()
	id = e.submitAsync(extraEnv, args...)
	e.WaitJob(e.t, id, 30*time.Second, "RUNNING")
	node = e.JobField(e.t, id, "BatchHost")
	// A job of thousands of small files forks a process per file: on the
	// 24.11 lab, beside the unit tests and fuzzing, that took over 30 s.
	lab.Eventually(e.t, 90*time.Second, "job data written", func() bool {
		_, err := os.Stat(filepath.Join(e.Scratch(node), id, "ready"))
		return err == nil
	})
	return id, node
}

// submitAsync submits the job script and returns its id at once.
func (e *env) submitAsync(extraEnv string, args ...string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "job.sh")
	os.WriteFile(script, []byte(jobScript), 0o755)
	all := append([]string{"--open-mode=append", "-o", filepath.Join(dir, "out.log"), "--export=ALL" + extraEnv}, args...)
	return e.Sbatch(e.t, append(all, script)...)
}

// output is the job's accumulated output file.
func (e *env) output(id string) string {
	b, _ := os.ReadFile(e.JobField(e.t, id, "StdOut"))
	return string(b)
}

// sums returns sha256 per relative path of the regular files under dir.
func sums(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "ready" {
			return nil
		}
		b, _ := os.ReadFile(p)
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out["./"+rel] = hex.EncodeToString(h[:])
		return nil
	})
	return out
}

// resumedSums parses the "sum <sha> <path>" lines the resumed run printed.
func resumedSums(out string) map[string]string {
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "sum" {
			got[f[2]] = f[1]
		}
	}
	return got
}

func sameSums(t *testing.T, want, got map[string]string) {
	t.Helper()
	if len(want) == 0 || len(want) != len(got) {
		t.Errorf("restored %d files, want %d:\nwant %v\ngot  %v", len(got), len(want), keys(want), keys(got))
	}
	for p, h := range want {
		if got[p] != h {
			t.Errorf("%s: restored checksum %q, want %q", p, got[p], h)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// record waits until the job's record for run reaches phase and returns it.
func (e *env) record(job string, run int, phase state.Phase, timeout time.Duration) *state.Record {
	e.t.Helper()
	var r *state.Record
	lab.Eventually(e.t, timeout, fmt.Sprintf("job %s run %d to reach %s", job, run, phase), func() bool {
		var err error
		r, err = e.store.Get(context.Background(), state.Key{Cluster: "lab", JobID: job, Run: run})
		return err == nil && r.Phase == phase
	})
	return r
}

// waitResumed waits for the job's next run to finish its resume output.
func (e *env) waitResumed(id string, timeout time.Duration) string {
	e.t.Helper()
	var out string
	lab.Eventually(e.t, timeout, "job "+id+" to resume", func() bool {
		out = e.output(id)
		return strings.Contains(out, "resumed")
	})
	return out
}

func envLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "env uri=s3://") {
			return line
		}
	}
	return ""
}

// createQueues makes the test's queue and DLQ, shaped like the lab's.
func (e *env) createQueues(name string) {
	ctx := context.Background()
	dlq, err := e.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		e.t.Fatal(err)
	}
	arn := "arn:aws:sqs:us-east-1:123456789012:" + name + "-dlq"
	q, err := e.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, arn),
		"VisibilityTimeout": "30",
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.queueURL, e.dlqURL = aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)
}

// routeSSMEvents points ssmlocal's status-change events at url, as the
// EventBridge rule's target would be.
func (e *env) routeSSMEvents(url string) {
	req, _ := http.NewRequest(http.MethodPut, e.Env["AWS_ENDPOINT_URL_SSM"]+"/_lab/events-target", strings.NewReader(fmt.Sprintf(`{"queue_url":%q}`, url)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("route SSM events: %s", resp.Status)
	}
}

// webhook is a local HTTPS-less endpoint (loopback http is allowed) that
// records the notices the controller posts.
type webhook struct {
	*httptest.Server
	mu      sync.Mutex
	notices []notify.Notice
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Text       string        `json:"text"`
			SpotRescue notify.Notice `json:"spotrescue"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Text == "" {
			http.Error(w, "bad notice", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.notices = append(h.notices, body.SpotRescue)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// wait returns the notices once n have come, failing if more do.
func (h *webhook) wait(t *testing.T, n int) []notify.Notice {
	t.Helper()
	var got []notify.Notice
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%d notices", n), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		got = append([]notify.Notice(nil), h.notices...)
		return len(got) >= n
	})
	if len(got) > n {
		t.Errorf("%d notices, want %d: %+v", len(got), n, got)
	}
	return got
}
