package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"
)

const (
	// eventQueueSize bounds the events waiting for a slow publisher; beyond
	// it events are dropped (and logged) rather than stalling invocations.
	eventQueueSize = 1024
	publishTimeout = 10 * time.Second
	// fifoMessageGroup is the fixed group an EventBridge rule would name in
	// its SQS target's SqsParameters for a FIFO queue.
	fifoMessageGroup = "ssmlocal"
)

// publisher delivers one EventBridge envelope (JSON) to wherever the
// controller reads events from.
type publisher interface {
	Publish(ctx context.Context, body []byte) error
}

// statusEvent is an invocation status change to publish.
type statusEvent struct {
	commandID    string
	documentName string
	instanceID   string
	requested    time.Time
	status       string
}

// envelope is the EventBridge event as an SQS target receives it.
type envelope struct {
	Version    string         `json:"version"`
	ID         string         `json:"id"`
	DetailType string         `json:"detail-type"`
	Source     string         `json:"source"`
	Account    string         `json:"account"`
	Time       string         `json:"time"`
	Region     string         `json:"region"`
	Resources  []string       `json:"resources"`
	Detail     envelopeDetail `json:"detail"`
}

type envelopeDetail struct {
	CommandID         string `json:"command-id"`
	DocumentName      string `json:"document-name"`
	InstanceID        string `json:"instance-id"`
	RequestedDateTime string `json:"requested-date-time"`
	Status            string `json:"status"`
}

// newEnvelope builds the "EC2 Command Invocation Status-change
// Notification" EventBridge emits for an invocation.
func newEnvelope(region, account string, e statusEvent, now time.Time) envelope {
	return envelope{
		Version:    "0",
		ID:         newUUID(),
		DetailType: "EC2 Command Invocation Status-change Notification",
		Source:     "aws.ssm",
		Account:    account,
		Time:       now.UTC().Format(time.RFC3339),
		Region:     region,
		Resources:  []string{fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", region, account, e.instanceID)},
		Detail: envelopeDetail{
			CommandID:         e.commandID,
			DocumentName:      e.documentName,
			InstanceID:        e.instanceID,
			RequestedDateTime: e.requested.UTC().Format(ssmTimeLayout),
			Status:            e.status,
		},
	}
}

// eventDispatcher publishes events in order from one goroutine so a slow or
// failing publisher never blocks an invocation.
type eventDispatcher struct {
	pub     publisher
	log     *zap.Logger
	region  string
	account string
	queue   chan statusEvent
	done    chan struct{}
}

func newEventDispatcher(pub publisher, log *zap.Logger, region, account string) *eventDispatcher {
	d := &eventDispatcher{
		pub: pub, log: log, region: region, account: account,
		queue: make(chan statusEvent, eventQueueSize),
		done:  make(chan struct{}),
	}
	go d.run()
	return d
}

// enqueue never blocks. It must not be called after close.
func (d *eventDispatcher) enqueue(e statusEvent) {
	select {
	case d.queue <- e:
	default:
		d.log.Warn("event queue full, dropping status-change event",
			zap.String("command", e.commandID), zap.String("instance", e.instanceID), zap.String("status", e.status))
	}
}

func (d *eventDispatcher) run() {
	defer close(d.done)
	for e := range d.queue {
		d.publish(e)
	}
}

func (d *eventDispatcher) publish(e statusEvent) {
	fields := []zap.Field{zap.String("command", e.commandID), zap.String("instance", e.instanceID), zap.String("status", e.status)}
	body, err := json.Marshal(newEnvelope(d.region, d.account, e, time.Now()))
	if err != nil {
		d.log.Error("encode status-change event", append(fields, zap.Error(err))...)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := d.pub.Publish(ctx, body); err != nil {
		d.log.Warn("publish status-change event", append(fields, zap.Error(err))...)
		return
	}
	d.log.Debug("published status-change event", fields...)
}

// close stops accepting events and waits until the queue is flushed or ctx
// ends.
func (d *eventDispatcher) close(ctx context.Context) {
	close(d.queue)
	select {
	case <-d.done:
	case <-ctx.Done():
		d.log.Warn("gave up flushing status-change events", zap.Error(ctx.Err()))
	}
}

// sqsPublisher sends envelopes to an SQS queue, as an EventBridge rule with
// an SQS target would.
type sqsPublisher struct {
	client   *sqs.Client
	mu       sync.Mutex
	queueURL string
}

// Retarget sends later events to another queue, as editing the EventBridge
// rule's target would; tests give each test its own queue.
func (p *sqsPublisher) Retarget(queueURL string) {
	p.mu.Lock()
	p.queueURL = queueURL
	p.mu.Unlock()
}

// newSQSPublisher loads the default AWS config, so AWS_ENDPOINT_URL_SQS and
// AWS_ENDPOINT_URL can point it at a local SQS.
func newSQSPublisher(ctx context.Context, region, queueURL string) (*sqsPublisher, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("load AWS config for SQS: %w", err)
	}
	return &sqsPublisher{client: sqs.NewFromConfig(cfg), queueURL: queueURL}, nil
}

func (p *sqsPublisher) Publish(ctx context.Context, body []byte) error {
	p.mu.Lock()
	url := p.queueURL
	p.mu.Unlock()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(string(body))}
	if strings.HasSuffix(url, ".fifo") {
		// Hashing the body is what content-based deduplication would do.
		sum := sha256.Sum256(body)
		in.MessageGroupId = aws.String(fifoMessageGroup)
		in.MessageDeduplicationId = aws.String(hex.EncodeToString(sum[:]))
	}
	if _, err := p.client.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send message to %s: %w", url, err)
	}
	return nil
}
