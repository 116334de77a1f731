//go:build lab

package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/spotrescue/spotrescue/hack/lab"
)

// The lab's ssmlocal runs a command as lab node compute-3 would: with that
// node's identity and the lab's Slurm, and reports its status on the queue.
func TestRunsOnLabNode(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	inst := l.Instances["compute-3"]
	out, err := l.SSM().SendCommand(ctx, &ssm.SendCommandInput{
		DocumentName: aws.String("AWS-RunShellScript"),
		InstanceIds:  []string{inst},
		Parameters:   map[string][]string{"commands": {`echo "node=$SLURMD_NODENAME id=$AWS_SSM_INSTANCE_ID"`, `sinfo -h -n "$SLURMD_NODENAME" -o "partition=%R"`}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := aws.ToString(out.Command.CommandId)
	var inv *ssm.GetCommandInvocationOutput
	lab.Eventually(t, 20*time.Second, "command to finish", func() bool {
		inv, err = l.SSM().GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: &cmd, InstanceId: &inst})
		return err == nil && inv.Status == ssmtypes.CommandInvocationStatusSuccess
	})
	stdout := aws.ToString(inv.StandardOutputContent)
	for _, want := range []string{"node=compute-3 id=" + inst, "partition=spot"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %q", stdout, want)
		}
	}
	// EventBridge would deliver the status change to the interruption queue.
	lab.Eventually(t, 10*time.Second, "Success event on the queue", func() bool {
		msgs, err := l.SQS().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &l.QueueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range msgs.Messages {
			if strings.Contains(aws.ToString(m.Body), cmd) {
				l.SQS().DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &l.QueueURL, ReceiptHandle: m.ReceiptHandle})
				found = found || strings.Contains(aws.ToString(m.Body), `"status":"Success"`)
			}
		}
		return found
	})
}

// The spotrescue document accepts only a plan id: anything a shell could
// interpret is refused before anything runs.
func TestRescueDocumentRefusesBadPlanIDs(t *testing.T) {
	l := lab.Get(t)
	for _, plan := range []string{"x; reboot", "../../etc/passwd", "$(id)", ""} {
		_, err := l.SSM().SendCommand(context.Background(), &ssm.SendCommandInput{
			DocumentName: aws.String("SpotRescue-Rescue"),
			InstanceIds:  []string{l.Instances["compute-1"]},
			Parameters:   map[string][]string{"Plan": {plan}},
		})
		var bad *ssmtypes.InvalidParameters
		if !errors.As(err, &bad) {
			t.Errorf("plan %q: err = %v, want InvalidParameters", plan, err)
		}
	}
}
