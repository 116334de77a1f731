//go:build lab

package main

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// moto_sqs.py changes what moto's SQS costs, not what it answers: the same
// scenario (a queue with a dead-letter queue, a FIFO queue deduplicating by
// content, every attribute read) gives the same answers as moto_server.
func TestMotoSQSAnswersAsMoto(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	answers := map[bool][]string{}
	for _, fast := range []bool{false, true} {
		url, cmd, err := startMoto(dir, fmt.Sprint("sqs-", fast), fast)
		if err != nil {
			t.Fatal(err)
		}
		answers[fast] = sqsScenario(ctx, t, url)
		cmd.Process.Kill()
		cmd.Wait()
	}
	if !reflect.DeepEqual(answers[false], answers[true]) {
		t.Errorf("moto_sqs.py answers differently from moto_server:\n moto_server: %q\n moto_sqs.py: %q", answers[false], answers[true])
	}
	if len(answers[false]) < 10 {
		t.Errorf("scenario too short: %q", answers[false])
	}
}

func sqsScenario(ctx context.Context, t *testing.T, url string) []string {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "burst", SecretAccessKey: "burst"}, nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	c := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(url) })
	var out []string
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	attrs := func(q *string, names ...types.QueueAttributeName) {
		a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q, AttributeNames: names})
		must(err)
		delete(a.Attributes, "CreatedTimestamp")
		delete(a.Attributes, "LastModifiedTimestamp")
		out = append(out, fmt.Sprint(a.Attributes))
	}
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("dlq")})
	must(err)
	arn := "arn:aws:sqs:us-east-1:123456789012:dlq"
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("q"), Attributes: map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + arn + `","maxReceiveCount":"2"}`, "VisibilityTimeout": "5"}})
	must(err)
	fifo, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("f.fifo"), Attributes: map[string]string{
		"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	must(err)
	for i := range 3 {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(fmt.Sprint("m", i))})
		must(err)
		// The same body twice: deduplicated by content.
		_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: fifo.QueueUrl, MessageBody: aws.String("same"), MessageGroupId: aws.String("g")})
		must(err)
	}
	for _, u := range []*string{q.QueueUrl, fifo.QueueUrl, dlq.QueueUrl} {
		attrs(u, types.QueueAttributeNameAll)
		attrs(u, types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameMessageRetentionPeriod)
	}
	// Received twice and not deleted: the third receive moves them to the DLQ.
	for range 3 {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0})
		must(err)
		out = append(out, fmt.Sprint("received ", len(r.Messages)))
	}
	attrs(dlq.QueueUrl, types.QueueAttributeNameApproximateNumberOfMessages)
	attrs(q.QueueUrl, types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	return out
}
