//go:build lab

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/google/uuid"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// The product: warning -> data in S3 -> record -> requeue -> the next run,
// on another node, sees its four variables and finds its files intact.
func TestHappyPath(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	want := sums(t, filepath.Join(e.Scratch(node), id))
	c := e.startController()
	e.send(warning(e.Instances[node], time.Now()))

	rec := e.record(id, 0, state.Done, 90*time.Second)
	out := e.waitResumed(id, 60*time.Second)
	if newNode := e.JobField(t, id, "BatchHost"); newNode == node {
		t.Errorf("job resumed on the drained node %s", node)
	}
	wantURI := fmt.Sprintf("s3://spotrescue-lab/spotrescue/lab/%s/run-0/", id)
	line := envLine(out)
	for _, w := range []string{"uri=" + wantURI, "status=complete", "rrun=0", "dir=" + e.Dir + "/nodes/"} {
		if !strings.Contains(line, w) {
			t.Errorf("resumed run's env %q lacks %q", line, w)
		}
	}
	sameSums(t, want, resumedSums(out))
	if got := e.JobField(t, id, "Restarts"); got != "1" {
		t.Errorf("restarts = %s, want 1", got)
	}

	// S3 holds the same bytes, and a complete manifest written last.
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node))
	if err != nil || !m.Complete || len(m.Files) != len(want)+1+2 { // + ready + out/ ckpt/ dirs
		t.Fatalf("manifest %+v, %v", m, err)
	}
	for rel := range want {
		obj, err := e.S3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("spotrescue-lab"), Key: aws.String(fmt.Sprintf("spotrescue/lab/%s/run-0/%s/%s", id, node, rel[2:]))})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(obj.Body)
		orig, _ := os.ReadFile(filepath.Join(e.Scratch(node), id, rel))
		if !bytes.Equal(got, orig) {
			t.Errorf("%s: S3 differs from the node's file", rel)
		}
	}

	// The job's own output says what happened, before the resumed run's
	// first line (the TaskProlog's print lines).
	told := fmt.Sprintf("spotrescue: job %s resumes from run 0, rescued from %s, warned at ", id, node)
	restored := fmt.Sprintf("spotrescue: restored %d files (", m.RegularFiles())
	if i, j := strings.Index(out, told), strings.Index(out, "start run=1"); i < 0 || j < i || !strings.Contains(out[i:j], restored) || !strings.Contains(out[i:j], ": complete\n") {
		t.Errorf("the resumed run's output does not start with %q and %q... complete:\n%s", told, restored, out)
	}

	// The record tells the whole story.
	if rec.Outcome != state.OutcomeComplete || rec.URI != wantURI || rec.Requeue != "requeued" || rec.Files != int64(m.RegularFiles()) || rec.Bytes != m.Bytes || rec.Bytes < 1<<20 {
		t.Errorf("record: outcome=%s uri=%s requeue=%q files=%d bytes=%d", rec.Outcome, rec.URI, rec.Requeue, rec.Files, rec.Bytes)
	}
	ts := rec.Times
	if !(ts.Detected.Before(ts.Held) && ts.Held.Before(ts.Dispatched) && ts.Dispatched.Before(ts.Finished) && !ts.Requeued.Before(ts.Finished) && !ts.Done.Before(ts.Requeued)) {
		t.Errorf("times out of order: %+v", ts)
	}
	job, err := slurm.New(filepath.Dir(e.Run(t, "which", "scontrol"))).Job(context.Background(), id)
	if err != nil || !strings.Contains(job.AdminComment, wantURI) {
		t.Errorf("AdminComment %q lacks the URI (%v)", job.AdminComment, err)
	}
	envFile := filepath.Join(e.Dir, "shared/spotrescue/jobs", id+".env")
	// Root's and read-only: the Prolog restores what it names.
	if fi, err := os.Stat(envFile); err != nil || fi.Mode().Perm() != 0o444 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("env file %s: %v %v; want root's, 0444", envFile, fi, err)
	}
	checkAgentLog(t, e, rec)
	checkJSONLines(t, "controller", c.log.String())
	checkRestoreLog(t, e, id)
}

// checkRestoreLog: the Prolog's restore of the job logged JSON lines with
// each key once (the lab's Prolog log holds every node's).
func checkRestoreLog(t *testing.T, e *env, id string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.Dir, "log", "prolog.log"))
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"job":"`+id+`"`) {
			mine = append(mine, line)
		}
	}
	if len(mine) == 0 {
		t.Fatalf("the Prolog logged nothing about job %s", id)
	}
	checkJSONLines(t, "restore", strings.Join(mine, "\n")+"\n")
}

// checkAgentLog: what the agent logged, as SSM keeps it, is JSON lines with
// each key once, and its summary of the job names the node, instance, plan
// and job.
func checkAgentLog(t *testing.T, e *env, rec *state.Record) {
	t.Helper()
	n := rec.Nodes[0]
	out, err := e.SSM().GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(n.Command), InstanceId: aws.String(n.Instance)})
	if err != nil {
		t.Fatalf("agent output: %v", err)
	}
	log := aws.ToString(out.StandardErrorContent)
	finished := false
	for _, line := range checkJSONLines(t, "agent", log) {
		if line["msg"] == "rescue finished" {
			_, node := line["node"]
			_, instance := line["instance"]
			_, plan := line["plan"]
			_, job := line["job"]
			finished = node && instance && plan && job
		}
	}
	if !finished {
		t.Errorf("no 'rescue finished' line with node, instance, plan and job in:\n%s", log)
	}
}

// checkJSONLines fails unless every whole line of log is one JSON object
// with each key once (log tools keep one of two, silently), and returns the
// lines. A running process may be mid-line at the end: that part is left.
func checkJSONLines(t *testing.T, who, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	whole := log[:strings.LastIndexByte(log, '\n')+1]
	for _, line := range strings.Split(strings.TrimSpace(whole), "\n") {
		keys, err := jsonKeys(line)
		if err != nil {
			t.Errorf("%s log line is not one JSON object (%v): %s", who, err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("%s log line has %q twice: %s", who, k, line)
			}
			seen[k] = true
		}
		var fields map[string]any
		json.Unmarshal([]byte(line), &fields)
		lines = append(lines, fields)
	}
	return lines
}

// jsonKeys returns the top-level keys of a JSON object in order, repeats included.
func jsonKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string) // an object's keys are strings
		keys = append(keys, k)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// Two jobs on one node: each job's data under its own prefix, never mixed.
func TestTwoJobsOnOneNode(t *testing.T) {
	e := setup(t)
	// Not pinned with -w: a pinned job could not run anywhere else after
	// the drain. Slurm packs one-CPU jobs onto the first node with room.
	a, node := e.submit("", "-n1")
	b, nodeB := e.submit("", "-n1")
	if nodeB != node {
		t.Fatalf("jobs landed on %s and %s; the test needs them on one node", node, nodeB)
	}
	wantA, wantB := sums(t, filepath.Join(e.Scratch(node), a)), sums(t, filepath.Join(e.Scratch(node), b))
	e.startController()
	e.send(warning(e.Instances[node], time.Now()))
	e.record(a, 0, state.Done, 90*time.Second)
	e.record(b, 0, state.Done, 90*time.Second)
	sameSums(t, wantA, resumedSums(e.waitResumed(a, 60*time.Second)))
	sameSums(t, wantB, resumedSums(e.waitResumed(b, 60*time.Second)))
	for _, j := range []string{a, b} {
		m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", j, node))
		if err != nil || m.JobID != j {
			t.Errorf("manifest of %s: %+v %v", j, m, err)
		}
	}
}

// A 2-node job with one node interrupted: both nodes' data is saved and
// each node of the next run gets the data of the same rank.
func TestTwoNodeJob(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "job.sh")
	os.WriteFile(script, []byte(`#!/bin/bash
if [ -z "${SPOT_RESCUE_URI:-}" ]; then
  srun -N2 --ntasks-per-node=1 bash -c 'cd "$SPOT_RESCUE_SCRATCH" && echo "$SLURM_NODEID" > rank && head -c 100000 /dev/urandom > data.bin && touch ready'
  sleep 600
else
  srun -N2 --ntasks-per-node=1 bash -c 'echo "rank-$SLURM_NODEID has $(cat "$SPOT_RESCUE_DIR/rank") $(sha256sum < "$SPOT_RESCUE_DIR/data.bin" | cut -c1-16)"'
  echo resumed
fi
`), 0o755)
	id := e.Sbatch(t, "-N2", "--open-mode=append", "-o", filepath.Join(dir, "out.log"), script)
	e.WaitJob(t, id, 30*time.Second, "RUNNING")
	nodes := strings.Split(strings.Trim(strings.ReplaceAll(e.Run(t, "scontrol", "show", "hostnames", e.JobField(t, id, "NodeList")), "\n", " "), " "), " ")
	if len(nodes) != 2 {
		t.Fatalf("nodes %v", nodes)
	}
	for _, n := range nodes {
		lab.Eventually(t, 30*time.Second, "data on "+n, func() bool {
			_, err := os.Stat(filepath.Join(e.Scratch(n), id, "ready"))
			return err == nil
		})
	}
	e.startController()
	e.send(warning(e.Instances[nodes[1]], time.Now()))
	rec := e.record(id, 0, state.Done, 90*time.Second)
	if len(rec.Nodes) != 2 || rec.Nodes[0].Interrupted || !rec.Nodes[1].Interrupted || !rec.Nodes[0].Complete || !rec.Nodes[1].Complete {
		t.Fatalf("record nodes %+v", rec.Nodes)
	}
	out := e.waitResumed(id, 90*time.Second)
	for rank := range 2 {
		if !strings.Contains(out, fmt.Sprintf("rank-%d has %d ", rank, rank)) {
			t.Errorf("rank %d did not get rank %d's data:\n%s", rank, rank, out)
		}
	}
	if strings.Contains(e.Run(t, "sinfo", "-h", "-n", nodes[0], "-o", "%t"), "drain") {
		t.Errorf("the surviving node %s was drained", nodes[0])
	}
}

// The same event delivered twice: one rescue, one requeue.
func TestDuplicateEvent(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	msg := warning(e.Instances[node], time.Now())
	e.send(msg)
	e.send(msg)
	c := e.startController()
	e.record(id, 0, state.Done, 90*time.Second)
	e.waitResumed(id, 60*time.Second)
	e.send(msg) // and once more after the rescue
	lab.Eventually(t, 15*time.Second, "duplicates counted", func() bool {
		return c.metric(t, `spotrescue_events_ignored_total{reason="duplicate"}`) >= 2
	})
	if got := e.JobField(t, id, "Restarts"); got != "1" {
		t.Errorf("restarts = %s, want 1", got)
	}
	runs, _ := e.store.Runs(context.Background(), "lab", id)
	if len(runs) != 1 {
		t.Errorf("%d records, want 1", len(runs))
	}
}

// An instance that is not in the node table is not ours: counted and
// deleted, and Slurm is untouched.
func TestForeignInstance(t *testing.T) {
	e := setup(t)
	id, _ := e.submit("")
	c := e.startController()
	e.send(warning("i-0fffffffffffffff0", time.Now()))
	lab.Eventually(t, 15*time.Second, "foreign instance counted", func() bool {
		return c.metric(t, `spotrescue_events_ignored_total{reason="foreign_instance"}`) == 1
	})
	lab.Eventually(t, 10*time.Second, "queue empty", func() bool { return e.queueCount(e.queueURL) == 0 })
	if drained := e.Run(t, "sinfo", "-h", "-N", "-t", "drain,draining,drained", "-o", "%N"); drained != "" {
		t.Errorf("nodes drained: %s", drained)
	}
	if e.JobField(t, id, "JobState") != "RUNNING" || e.JobField(t, id, "Restarts") != "0" {
		t.Error("the job was touched")
	}
}

// A malformed message is never deleted by us: it ends in the DLQ after the
// redrive count, intact, and the metric counts it.
func TestMalformedMessageGoesToDLQ(t *testing.T) {
	e := setup(t)
	c := e.startController()
	body := `{"detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2", "detail": {"instance-id": "i-0c0ffee0000000001; rm -rf /"}}`
	e.send(body)
	var got string
	lab.Eventually(t, 30*time.Second, "message in the DLQ", func() bool {
		out, err := e.SQS().ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.dlqURL), WaitTimeSeconds: 1})
		if err == nil && len(out.Messages) == 1 {
			got = aws.ToString(out.Messages[0].Body)
			return true
		}
		return false
	})
	if got != body {
		t.Errorf("DLQ holds %q, want the original body", got)
	}
	if n := c.metric(t, "spotrescue_messages_invalid_total"); n < 3 {
		t.Errorf("invalid messages counted %v times, want >= 3 (the redrive count)", n)
	}
}

// Killed with SIGKILL after the hold and before the requeue, then restarted:
// the job still ends rescued and requeued exactly once.
func TestControllerKilledMidRescue(t *testing.T) {
	e := setup(t)
	// Enough small files, uploaded one at a time, that the upload takes
	// seconds: a small job's whole rescue takes a fraction of one, too
	// short to be caught in the middle.
	id, node := e.submit(",SMALL_FILES=1500")
	want := sums(t, filepath.Join(e.Scratch(node), id))
	c := e.startController("--rescue-concurrency", "1")
	e.send(warning(e.Instances[node], time.Now()))
	lab.Eventually(t, 30*time.Second, "job held", func() bool {
		r, err := e.store.Get(context.Background(), state.Key{Cluster: "lab", JobID: id})
		return err == nil && (r.Phase == state.Held || r.Phase == state.Dispatched)
	})
	c.kill9()
	if r, _ := e.store.Get(context.Background(), state.Key{Cluster: "lab", JobID: id}); r.Phase == state.Done || r.Phase == state.Requeued {
		t.Fatalf("killed too late: %s", r.Phase)
	}
	e.startController()
	rec := e.record(id, 0, state.Done, 90*time.Second)
	sameSums(t, want, resumedSums(e.waitResumed(id, 60*time.Second)))
	if got := e.JobField(t, id, "Restarts"); got != "1" || rec.Outcome != state.OutcomeComplete {
		t.Errorf("restarts = %s (want 1), outcome %s", got, rec.Outcome)
	}
}

// Rebalance Recommendation: node drained, no rescue, no requeue.
func TestRebalanceDrainsOnly(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	c := e.startController()
	e.send(envelope("EC2 Instance Rebalance Recommendation", e.Instances[node], time.Now(), map[string]any{}))
	lab.Eventually(t, 15*time.Second, node+" drained", func() bool {
		return strings.HasPrefix(e.Run(t, "sinfo", "-h", "-n", node, "-o", "%t"), "dr")
	})
	time.Sleep(2 * time.Second)
	if e.JobField(t, id, "JobState") != "RUNNING" || e.JobField(t, id, "Restarts") != "0" {
		t.Errorf("job state %s restarts %s", e.JobField(t, id, "JobState"), e.JobField(t, id, "Restarts"))
	}
	if runs, _ := e.store.Runs(context.Background(), "lab", id); len(runs) != 0 {
		t.Errorf("rebalance created %d records", len(runs))
	}
	if c.metric(t, `spotrescue_events_received_total{kind="rebalance_recommendation"}`) != 1 {
		t.Error("rebalance not counted")
	}
}

// The instance terminates while the upload is in flight: the record ends
// with what the last manifest says was saved, and the job is requeued.
func TestTerminatedMidRescue(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=3000")
	e.startController("--rescue-concurrency", "1")
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Dispatched, 30*time.Second)
	// Past the agent's first checkpoint manifest, well before it finishes.
	time.Sleep(7 * time.Second)
	e.terminate(e.Instances[node])
	e.send(envelope("EC2 Instance State-change Notification", e.Instances[node], time.Now(), map[string]any{"state": "terminated"}))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	if rec.Outcome != state.OutcomePartial || rec.Files == 0 || rec.Files >= 3000 || !rec.Nodes[0].Gone {
		t.Fatalf("outcome %s files %d gone %v", rec.Outcome, rec.Files, rec.Nodes[0].Gone)
	}
	out := e.waitResumed(id, 60*time.Second)
	if !strings.Contains(envLine(out), "status=partial") {
		t.Errorf("resumed env %q, want status=partial", envLine(out))
	}
}

// Data that cannot fit the deadline one object per file, and the agent
// told never to pack: manifest complete: false, record Partial, job
// requeued with SPOT_RESCUE_STATUS=partial.
func TestDeadlineTooShort(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=3000")
	hook := newWebhook(t)
	e.startController("--rescue-concurrency", "1", "--rescue-pack-small-files", "never", "--notify-webhook-url", hook.URL)
	// The warning is 100 s old: 5 s are left before the 15 s margin.
	e.send(warning(e.Instances[node], time.Now().Add(-100*time.Second)))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node))
	if err != nil || m.Complete || len(m.Skipped) == 0 {
		t.Fatalf("manifest complete=%v skipped=%d err=%v", m != nil && m.Complete, len(m.Skipped), err)
	}
	if rec.Outcome != state.OutcomePartial {
		t.Errorf("outcome %s", rec.Outcome)
	}
	out := e.waitResumed(id, 60*time.Second)
	if !strings.Contains(envLine(out), "status=partial") {
		t.Errorf("resumed env %q, want status=partial", envLine(out))
	}
	// The job's output says what is missing.
	if want := fmt.Sprintf("spotrescue: partial: %d entries were not saved: %q", len(m.Skipped), m.Skipped[0].Path); !strings.Contains(out, want) {
		t.Errorf("the resumed run's output lacks %q:\n%.2000s", want, out)
	}
	// Whoever watches the webhook heard of the partial rescue, once.
	n := hook.wait(t, 1)[0]
	if n.Job != id || n.Outcome != "partial" || n.Run != 0 || n.URI != rec.URI || n.Files != rec.Files {
		t.Errorf("notice %+v, want job %s partial with the record's URI and %d files", n, id, rec.Files)
	}
}

// The same short window with the default rescue.pack_small_files (auto):
// one object per file would miss it, so the agent packs the files left
// and saves them all; the record says Complete and the next run gets
// every file back.
func TestDeadlineTooShortPacksTheRest(t *testing.T) {
	e := setup(t)
	id, node := e.submit(",SMALL_FILES=3000")
	e.startController("--rescue-concurrency", "1")
	e.send(warning(e.Instances[node], time.Now().Add(-100*time.Second)))
	rec := e.record(id, 0, state.Done, 60*time.Second)
	m, err := rescue.ReadManifest(context.Background(), e.S3(), "spotrescue-lab", fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node))
	if err != nil || !m.Complete || len(m.Skipped) != 0 {
		t.Fatalf("manifest complete=%v skipped=%d err=%v", m != nil && m.Complete, len(m.Skipped), err)
	}
	packed, single := 0, 0
	for _, f := range m.Files {
		switch {
		case f.Type != rescue.TypeFile:
		case f.Pack != "":
			packed++
		default:
			single++
		}
	}
	if packed == 0 || rec.Outcome != state.OutcomeComplete {
		t.Fatalf("outcome %s, %d files packed, %d one object each", rec.Outcome, packed, single)
	}
	t.Logf("%d files packed after %d saved one object each", packed, single)
	out := e.waitResumed(id, 60*time.Second)
	if !strings.Contains(envLine(out), "status=complete") {
		t.Errorf("resumed env %q, want status=complete", envLine(out))
	}
}

func (e *env) queueCount(url string) int {
	out, err := e.SQS().GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		e.t.Fatal(err)
	}
	var n, m int
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &n)
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessagesNotVisible"], &m)
	return n + m
}

// terminate tells ssmlocal the instance is gone: its agent dies mid-upload.
func (e *env) terminate(instance string) {
	resp, err := httpPost(e.Env["AWS_ENDPOINT_URL_SSM"] + "/_lab/instances/" + instance + "/terminate")
	if err != nil || resp != 200 {
		e.t.Fatalf("terminate %s: %d %v", instance, resp, err)
	}
	// The node gets a new instance later; in the lab it keeps the same id.
	e.t.Cleanup(func() { httpPost(e.Env["AWS_ENDPOINT_URL_SSM"] + "/_lab/instances/" + instance + "/start") })
}

func httpPost(url string) (int, error) {
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A Rebalance Recommendation pre-syncs the job's scratch; the warning that
// follows moves only the file that changed since, and S3 ends up with the
// current bytes of every file.
func TestRebalancePresyncThenWarning(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, node := e.submit("")
	dir := filepath.Join(e.Scratch(node), id)
	instance := e.Instances[node]
	c := e.startController()
	e.send(envelope("EC2 Instance Rebalance Recommendation", instance, time.Now(), map[string]any{}))
	var command string
	lab.Eventually(t, 30*time.Second, "the pre-sync to start", func() bool {
		_, after, ok := strings.Cut(c.log.String(), `"pre-sync started"`)
		if ok {
			_, after, ok = strings.Cut(after, `"command":"`)
			command, _, _ = strings.Cut(after, `"`)
		}
		return ok
	})
	lab.Eventually(t, 60*time.Second, "the pre-sync to finish", func() bool {
		out, err := e.SSM().GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(command), InstanceId: aws.String(instance)})
		return err == nil && out.Status == ssmtypes.CommandInvocationStatusSuccess
	})
	prefix := fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node)
	pre, err := rescue.ReadManifest(ctx, e.S3(), "spotrescue-lab", prefix)
	if err != nil || !pre.Presync || pre.Uploaded == 0 {
		t.Fatalf("pre-sync manifest %+v, %v", pre, err)
	}

	changed := filepath.Join(dir, "ckpt", "state.txt")
	f, err := os.OpenFile(changed, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("step 8 of 10\n"), 300))
	f.Close()
	now, _ := os.ReadFile(changed)

	e.send(warning(instance, time.Now()))
	rec := e.record(id, 0, state.Done, 90*time.Second)
	m, err := rescue.ReadManifest(ctx, e.S3(), "spotrescue-lab", prefix)
	if err != nil || !m.Complete || m.Presync {
		t.Fatalf("final manifest %+v, %v", m, err)
	}
	files := len(sums(t, dir)) + 1 // the regular files and "ready"; one changed
	if m.Uploaded != int64(len(now)) || m.Carried != files-1 {
		t.Errorf("final rescue uploaded %d bytes and carried %d files; want %d bytes (the changed file) and %d files",
			m.Uploaded, m.Carried, len(now), files-1)
	}
	obj, err := e.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("spotrescue-lab"), Key: aws.String(prefix + "ckpt/state.txt")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(obj.Body)
	if !bytes.Equal(got, now) {
		t.Errorf("S3 holds %d bytes of the changed file, want its current %d", len(got), len(now))
	}
	if rec.Outcome != state.OutcomeComplete {
		t.Errorf("record outcome %s, want complete", rec.Outcome)
	}
}

// An AWS Health scheduled change (here an instance retirement an hour
// ahead, in the shape AWS documents, naming one of ours and one foreign
// instance) is a rebalance recommendation for each instance of ours: the
// node is drained with the change and its time as the reason, the running
// job keeps running, and its scratch is pre-synced to S3.
func TestHealthScheduledChangeDrainsAndPresyncs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, node := e.submit("")
	c := e.startController()
	at := time.Now().Add(time.Hour).UTC()
	e.send(healthEvent(e.Instances[node], at, "i-0fe1e1e1e1e1e1e1e"))
	t.Cleanup(func() { e.store.DeleteSchedule(ctx, "lab", e.Instances[node]) })
	want := "AWS Health AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED at " + at.Format(time.RFC3339)
	lab.Eventually(t, 15*time.Second, node+" drained for the retirement", func() bool {
		return strings.HasPrefix(e.Run(t, "sinfo", "-h", "-n", node, "-o", "%t"), "dr") &&
			strings.Contains(e.Run(t, "sinfo", "-h", "-n", node, "-o", "%E"), want)
	})
	prefix := fmt.Sprintf("spotrescue/lab/%s/run-0/%s/", id, node)
	lab.Eventually(t, 60*time.Second, "the pre-sync's manifest", func() bool {
		pre, err := rescue.ReadManifest(ctx, e.S3(), "spotrescue-lab", prefix)
		return err == nil && pre.Presync && pre.Uploaded > 0
	})
	if e.JobField(t, id, "JobState") != "RUNNING" || e.JobField(t, id, "Restarts") != "0" {
		t.Errorf("job state %s restarts %s, want it left running", e.JobField(t, id, "JobState"), e.JobField(t, id, "Restarts"))
	}
	if c.metric(t, `spotrescue_events_received_total{kind="scheduled_change"}`) != 1 || c.metric(t, `spotrescue_events_ignored_total{reason="foreign_instance"}`) != 1 {
		t.Error("the scheduled change, or its foreign instance, not counted")
	}
	if scs, err := e.store.Schedules(ctx, "lab"); err != nil || len(scs) != 1 || !scs[0].Due.Equal(at.Truncate(time.Second)) {
		t.Errorf("schedules %+v, %v; want the retirement kept", scs, err)
	}
}

// When the scheduled change is two minutes away and the job still runs on
// the instance, it is rescued as from a Spot warning whose reclaim time is
// the change's: held, uploaded by the change's time less the margin,
// requeued, and the next run gets its data back.
func TestHealthScheduledChangeRescuesWhenDue(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	want := sums(t, filepath.Join(e.Scratch(node), id))
	e.startController()
	at := time.Now().Add(rescueLead + 5*time.Second).UTC().Truncate(time.Second)
	ev := healthEvent(e.Instances[node], at)
	e.send(ev)
	rec := e.record(id, 0, state.Done, 90*time.Second)
	if !strings.HasPrefix(rec.Event, "health:") || rec.Outcome != state.OutcomeComplete || rec.Requeue != "requeued" ||
		!rec.Deadline.Before(at) || rec.Deadline.Before(at.Add(-time.Minute)) {
		t.Errorf("record: event %q outcome %s requeue %q deadline %s; want the change's (%s) rescue, complete, requeued", rec.Event, rec.Outcome, rec.Requeue, rec.Deadline, at)
	}
	out := e.waitResumed(id, 60*time.Second)
	sameSums(t, want, resumedSums(out))
	if scs, _ := e.store.Schedules(context.Background(), "lab"); len(scs) != 0 {
		t.Errorf("schedules left after the rescue: %+v", scs)
	}
}

// rescueLead is how long before a scheduled change its rescue starts: a
// Spot warning's two minutes.
const rescueLead = 120 * time.Second

// healthEvent is an AWS Health scheduled retirement of the instances at
// start, in the shape AWS documents for EventBridge.
func healthEvent(instance string, start time.Time, others ...string) string {
	entities := []map[string]string{{"entityValue": instance}}
	for _, o := range others {
		entities = append(entities, map[string]string{"entityValue": o})
	}
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": uuid.NewString(), "detail-type": "AWS Health Event", "source": "aws.health",
		"account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": append([]string{instance}, others...),
		"detail": map[string]any{
			"eventArn": "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_1",
			"service":  "EC2", "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", "eventTypeCategory": "scheduledChange",
			"startTime":        start.Format(time.RFC1123),
			"eventDescription": []map[string]string{{"language": "en_US", "latestDescription": "retirement"}},
			"affectedEntities": entities,
		},
	})
	return string(body)
}
