//go:build lab

package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/hack/lab"
)

// A real batch job runs on a lab node, sees its node name and can write to
// that node's scratch directory.
func TestSlurmRunsAJob(t *testing.T) {
	l := lab.Get(t)
	out := filepath.Join(t.TempDir(), "job.out")
	os.Chmod(filepath.Dir(out), 0o777)
	id := l.Sbatch(t, "-o", out, "-w", "compute-2", "--wrap",
		`echo "node=$SLURMD_NODENAME"; echo data > "$LAB_DIR/nodes/$SLURMD_NODENAME/scratch/probe-$SLURM_JOB_ID"`)
	l.WaitJob(t, id, 30*time.Second, "COMPLETED")
	got, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(got), "node=compute-2") {
		t.Fatalf("job output %q, %v", got, err)
	}
	probe := filepath.Join(l.Scratch("compute-2"), "probe-"+id)
	if b, err := os.ReadFile(probe); err != nil || string(b) != "data\n" {
		t.Fatalf("scratch file %s: %q, %v", probe, b, err)
	}
	os.Remove(probe)
}

func TestEveryNodeIsUpAndMapped(t *testing.T) {
	l := lab.Get(t)
	// Other tests drain nodes on purpose; up means responding and not DOWN.
	out := l.Run(t, "sinfo", "-h", "-N", "-p", "spot", "-o", "%N %t")
	for _, node := range l.Nodes() {
		var state string
		for _, line := range strings.Split(out, "\n") {
			if n, st, _ := strings.Cut(line, " "); n == node {
				state = st
			}
		}
		if state == "" || strings.HasSuffix(state, "*") || strings.HasPrefix(state, "down") || state == "unk" {
			t.Errorf("node %s not up in sinfo (state %q):\n%s", node, state, out)
		}
		if !strings.HasPrefix(l.Instances[node], "i-") {
			t.Errorf("node %s has no instance id", node)
		}
	}
}

// The interruption queue delivers what is sent to it and redrives to the DLQ.
func TestQueueRoundTrip(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	q := l.SQS()
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &l.QueueURL, AttributeNames: []sqstypes.QueueAttributeName{"RedrivePolicy"}})
	if err != nil || !strings.Contains(attrs.Attributes["RedrivePolicy"], "dlq") {
		t.Fatalf("redrive policy %v, %v", attrs.Attributes, err)
	}
	body := `{"probe":"` + t.Name() + time.Now().Format(time.RFC3339Nano) + `"}`
	// A separate queue keeps this probe away from a controller that may be consuming the lab queue.
	probe, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("lab-probe")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: probe.QueueUrl, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
	got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: probe.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
	if err != nil || len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != body {
		t.Fatalf("received %+v, %v", got, err)
	}
	if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: probe.QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
}
