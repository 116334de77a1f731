package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// Publisher is the part of the SNS client a topic sink uses.
type Publisher interface {
	Publish(ctx context.Context, in *sns.PublishInput, optFns ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Topic publishes notices to an SNS topic: the summary as the subject,
// the notice as JSON for programs, with the outcome as a message attribute
// that subscriptions can filter on.
type Topic struct {
	SNS Publisher
	ARN string
}

func (t *Topic) Name() string { return "sns" }

func (t *Topic) Send(ctx context.Context, n Notice) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	subject := fmt.Sprintf("spotrescue: job %s rescue %s", n.Job, n.Outcome)
	_, err = t.SNS.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(t.ARN), Subject: aws.String(truncate(subject, 100)), Message: aws.String(string(body)),
		MessageAttributes: map[string]types.MessageAttributeValue{"outcome": {DataType: aws.String("String"), StringValue: aws.String(n.Outcome)}},
	})
	return err
}

// Webhook posts notices as JSON to an HTTPS endpoint: "text" is the
// summary, which is what a Slack incoming webhook shows; "spotrescue" is the
// notice for programs. Any 2xx answer takes it.
type Webhook struct {
	URL    string
	Client *http.Client
}

func (w *Webhook) Name() string { return "webhook" }

func (w *Webhook) Send(ctx context.Context, n Notice) error {
	body, err := json.Marshal(struct {
		Text       string `json:"text"`
		SpotRescue Notice `json:"spotrescue"`
	}{n.Text(), n})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("webhook answered %s: %q", resp.Status, msg)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
