package controller

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/state"
)

// Nodes of the lab cluster and the instances behind them.
const (
	nodeA    = "compute-dy-spot-1"
	instA    = "i-0b662ef9931388ba0"
	nodeB    = "compute-dy-spot-2"
	instB    = "i-0123456789abcdef0"
	nodeC    = "compute-dy-spot-3"
	instC    = "i-0fedcba987654321f"
	foreignI = "i-0aaaaaaaaaaaaaaaa"
)

// now is the start of most tests' fake clocks: a fixed instant, so that
// every decision under test reads the fake clock and no test depends on
// when it runs.
func now() time.Time { return time.Date(2026, 11, 20, 5, 12, 58, 0, time.UTC) }

func envelope(id, source, detailType, region string, at time.Time, detail any) string {
	d, err := json.Marshal(detail)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(map[string]any{
		"version": "0", "id": id, "detail-type": detailType, "source": source, "account": "123456789012",
		"time": at.UTC().Format(time.RFC3339), "region": region,
		"resources": []string{"arn:aws:ec2:" + region + ":123456789012:instance/i-0"}, "detail": json.RawMessage(d),
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func warningBody(eventID, instance string, at time.Time) string {
	return envelope(eventID, "aws.ec2", "EC2 Spot Instance Interruption Warning", testRegion, at,
		map[string]string{"instance-id": instance, "instance-action": "terminate"})
}

func rebalanceBody(eventID, instance string, at time.Time) string {
	return envelope(eventID, "aws.ec2", "EC2 Instance Rebalance Recommendation", testRegion, at,
		map[string]string{"instance-id": instance})
}

// healthBody is an AWS Health scheduled change of the instances at start.
func healthBody(eventID string, at, start time.Time, instances ...string) string {
	var entities []map[string]string
	for _, i := range instances {
		entities = append(entities, map[string]string{"entityValue": i})
	}
	return envelope(eventID, "aws.health", "AWS Health Event", testRegion, at, map[string]any{
		"service": "EC2", "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", "eventTypeCategory": "scheduledChange",
		"startTime": start.UTC().Format(time.RFC1123), "affectedEntities": entities,
	})
}

func stateChangeBody(eventID, instance, st string, at time.Time) string {
	return envelope(eventID, "aws.ec2", "EC2 Instance State-change Notification", testRegion, at,
		map[string]string{"instance-id": instance, "state": st})
}

func commandStatusBody(eventID, command, document, instance, status string, at time.Time) string {
	return envelope(eventID, "aws.ssm", "EC2 Command Invocation Status-change Notification", testRegion, at,
		map[string]string{"command-id": command, "document-name": document, "instance-id": instance, "status": status,
			"requested-date-time": at.UTC().Format(time.RFC3339)})
}

// message is an SQS message as ReceiveMessage returns it.
func message(id, body string) sqstypes.Message {
	return sqstypes.Message{
		MessageId: aws.String(id), ReceiptHandle: aws.String("rh-" + id), Body: aws.String(body),
		Attributes: map[string]string{"ApproximateReceiveCount": "1"},
	}
}

// batchJob is a running sbatch job of alice's, requeueable.
func batchJob(id string, nodes ...string) slurm.Job {
	return slurm.Job{
		ID: id, Display: id, Name: "train-" + id, User: "alice", UID: os.Getuid(), State: "RUNNING",
		Nodes: nodes, BatchHost: nodes[0], Batch: true, Requeue: true, Partition: "spot", Account: "lab",
	}
}

func key(jobID string, run int) state.Key {
	return state.Key{Cluster: testCluster, JobID: jobID, Run: run}
}

// warn delivers a Spot interruption warning for instance, sent at the
// current fake time, and returns the work queue's keys it produced.
func (h *harness) warn(t *testing.T, msgID, instance string) []string {
	t.Helper()
	h.c.intake.handle(context.Background(), []sqstypes.Message{message(msgID, warningBody("ev-"+msgID, instance, h.clock.Now()))}, h.clock.Now())
	if !h.queue.wasDeleted("rh-" + msgID) {
		t.Fatalf("warning %s was not deleted", msgID)
	}
	return h.queued()
}

// metric reads a counter, gauge or histogram count as a scrape would see
// it: the series of family name whose labels include labels ("k=v" pairs).
// A series that was never touched reads 0. (prometheus/testutil would need
// a go.mod requirement the module does not have.)
func (h *harness) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for _, kv := range labels {
				k, v, _ := strings.Cut(kv, "=")
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func (h *harness) ignored(t *testing.T, reason string) float64 {
	t.Helper()
	return h.metric(t, "spotrescue_events_ignored_total", "reason="+reason)
}
