//go:build lab

package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/controller/notify"
	"github.com/spotrescue/spotrescue/hack/lab"
)

// A notice reaches the people subscribed to the SNS topic (moto's SNS,
// delivering to a subscribed SQS queue), with its outcome as a message
// attribute subscriptions can filter on.
func TestTopicDeliversToSubscribers(t *testing.T) {
	ctx := context.Background()
	l := lab.Get(t)
	name := fmt.Sprintf("notices-%d", time.Now().UnixNano())
	snsc := sns.NewFromConfig(l.AWS)
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := l.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	qarn := "arn:aws:sqs:" + l.AWS.Region + ":123456789012:" + name
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(qarn),
		Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		t.Fatal(err)
	}
	n := notify.New(notify.Options{Outcomes: []string{"failed"}}, []notify.Sink{&notify.Topic{SNS: snsc, ARN: *topic.TopicArn}}, zaptest.NewLogger(t), nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		n.Run(rctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	want := notify.Notice{Cluster: "lab", Job: "77_3", Run: 2, User: "alice", Outcome: "failed", Requeue: "requeued", Errors: []string{"upload: no space"}}
	n.Notify(notify.Notice{Cluster: "lab", Job: "76", Outcome: "complete"}) // not told
	n.Notify(want)

	var got []notify.Notice
	lab.Eventually(t, 20*time.Second, "the notice on the subscribed queue", func() bool {
		out, err := l.SQS().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			var n notify.Notice
			if err := json.Unmarshal([]byte(*m.Body), &n); err != nil {
				t.Fatalf("not a notice: %q", *m.Body)
			}
			got = append(got, n)
		}
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Job != "77_3" || got[0].Outcome != "failed" || got[0].Errors[0] != "upload: no space" {
		t.Errorf("subscribers got %+v, want only %+v", got, want)
	}
}
