package controller

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/state"
)

// Queue is the part of SQS the controller uses.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// While a batch is handled its messages are kept invisible: at once, then
// every visibilityEvery, their visibility is set to visibilityExtend from
// then. A batch may take up to a minute and a half (a slow slurmctld,
// retries), longer than the queue's 30 s: without this, SQS would hand the
// same warnings to another receiver mid-handling. The first extension is
// immediate so that a queue with a shorter timeout is covered too.
const (
	visibilityEvery  = 10 * time.Second
	visibilityExtend = 45 // seconds
)

// intake receives the queue's messages, parses them, hands each event to
// its handler (warnings.go for interruption warnings, a batch at a time;
// events.go for the rest) and deletes what was handled. A message it
// cannot handle now is left to come back; one it cannot parse goes to the
// DLQ.
type intake struct {
	scheduled chan struct{} // a scheduled change was recorded: look again
	opts      Options
	queue     Queue
	slurm     Slurm
	nodes     Nodes
	records   *records
	steps     *steps
	commands  *commands
	presync   *presyncer
	load      *intakeLoad
	inFlight  inFlight // instances whose warnings a receiver is handling
	health    *health
	enqueue   func(keys ...state.Key) // queues records to reconcile
	deposed   *atomic.Bool            // the lease was lost: hand messages back
	log       *zap.Logger
	metrics   *Metrics
	now       func() time.Time
}

// invalidRetry is how soon a message we cannot parse is received again, so
// the queue's redrive policy moves it to the DLQ promptly, intact.
const invalidRetry = 1

// receive long-polls the queue until ctx is cancelled. A poll in flight is
// not cancelled: SQS would hand its messages to nobody until their
// visibility timeout, delaying a rescue by that much. Instead no new poll
// starts, and what the last one brings is handled.
func (in *intake) receive(ctx context.Context) {
	poll := context.WithoutCancel(ctx)
	backoff := time.Second
	full := false
	defer func() { in.load.receiverFull(full, false) }()
	for ctx.Err() == nil {
		out, err := in.queue.ReceiveMessage(poll, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(in.opts.QueueURL),
			MaxNumberOfMessages:         10,
			WaitTimeSeconds:             20,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		in.health.polled()
		if err != nil {
			in.metrics.awsError("sqs", "ReceiveMessage")
			in.log.Warn("receive failed", zap.Error(err), zap.Duration("retry_in", backoff))
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		if in.deposed.Load() {
			in.giveBack(poll, out.Messages) // the new lease holder handles them
			return
		}
		// A full batch says the queue has more: a burst is under way.
		full = in.load.receiverFull(full, len(out.Messages) == 10)
		if len(out.Messages) == 0 {
			continue
		}
		hctx, cancel := context.WithTimeout(poll, 90*time.Second)
		in.handle(hctx, out.Messages, in.now())
		cancel()
	}
}

// handle parses a batch, acts on each event and deletes what was handled.
func (in *intake) handle(ctx context.Context, msgs []sqstypes.Message, received time.Time) {
	var handled []sqstypes.Message
	var events []event.Event
	var evMsgs []sqstypes.Message
	for _, m := range msgs {
		e, err := event.Parse([]byte(aws.ToString(m.Body)))
		switch {
		case errors.Is(err, event.ErrUnsupported):
			in.metrics.ignored("unsupported_kind")
			in.log.Info("ignoring event of an unsupported kind", zap.String("message", aws.ToString(m.MessageId)), zap.Error(err))
			handled = append(handled, m)
		case err != nil:
			in.invalid(ctx, m, err)
		default:
			in.metrics.received(e.Kind)
			events, evMsgs = append(events, e), append(evMsgs, m)
		}
	}
	defer in.keepInvisible(ctx, evMsgs)()
	// The batch's warnings are handled together: one Slurm listing, one
	// hold and one drain for all of them. Other events one by one.
	var warnings []event.Event
	var warnMsgs []sqstypes.Message
	for i, e := range events {
		if e.Kind == event.SpotInterruption && e.Region == in.opts.Region {
			warnings, warnMsgs = append(warnings, e), append(warnMsgs, evMsgs[i])
			continue
		}
		if err := in.handleEvent(ctx, e); err != nil {
			in.log.Warn("event not handled; it will be redelivered", eventFields(e, zap.Error(err))...)
			continue
		}
		handled = append(handled, evMsgs[i])
	}
	if len(warnings) > 0 {
		in.load.started()
		defer in.load.done()
		for i, err := range in.onWarnings(ctx, warnings, received) {
			if err != nil {
				in.log.Warn("warning not handled; it will be redelivered", eventFields(warnings[i], zap.Error(err))...)
				continue
			}
			handled = append(handled, warnMsgs[i])
		}
	}
	in.delete(ctx, handled)
}

// keepInvisible extends the messages' visibility while they are handled,
// until the returned stop is called.
func (in *intake) keepInvisible(ctx context.Context, msgs []sqstypes.Message) (stop func()) {
	if len(msgs) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(visibilityEvery)
		defer t.Stop()
		in.extendVisibility(ctx, msgs)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				in.extendVisibility(ctx, msgs)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (in *intake) extendVisibility(ctx context.Context, msgs []sqstypes.Message) {
	entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: visibilityExtend}
	}
	out, err := in.queue.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(in.opts.QueueURL), Entries: entries})
	if err == nil && len(out.Failed) > 0 {
		err = errors.New(aws.ToString(out.Failed[0].Message))
	}
	if err != nil {
		in.metrics.awsError("sqs", "ChangeMessageVisibilityBatch")
		in.log.Warn("cannot keep the messages being handled invisible; they may be delivered again", zap.Error(err))
	}
}

// invalid counts a message we cannot parse and leaves it for the DLQ:
// evidence is never destroyed.
func (in *intake) invalid(ctx context.Context, m sqstypes.Message, err error) {
	in.metrics.invalidMessages.Inc()
	receives, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	in.log.Error("message is not a usable event; leaving it for the dead-letter queue",
		zap.String("message", aws.ToString(m.MessageId)), zap.Int("receives", receives), zap.Error(err))
	_, verr := in.queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(in.opts.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: invalidRetry,
	})
	if verr != nil {
		in.metrics.awsError("sqs", "ChangeMessageVisibility")
	}
}

// giveBack makes messages visible again at once, for another controller.
func (in *intake) giveBack(ctx context.Context, msgs []sqstypes.Message) {
	for _, m := range msgs {
		_, err := in.queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(in.opts.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		})
		if err != nil {
			in.metrics.awsError("sqs", "ChangeMessageVisibility")
		}
	}
}

func (in *intake) delete(ctx context.Context, msgs []sqstypes.Message) {
	if len(msgs) == 0 {
		return
	}
	entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	out, err := in.queue.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(in.opts.QueueURL), Entries: entries})
	if err != nil {
		// Handled messages come back after the visibility timeout; handling is idempotent.
		in.metrics.awsError("sqs", "DeleteMessageBatch")
		in.log.Warn("delete failed; messages will be redelivered", zap.Error(err))
		return
	}
	for _, f := range out.Failed {
		in.metrics.awsError("sqs", "DeleteMessageBatch")
		in.log.Warn("delete failed for a message", zap.String("code", aws.ToString(f.Code)), zap.String("reason", aws.ToString(f.Message)))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func eventFields(e event.Event, extra ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("event", e.ID), zap.String("kind", string(e.Kind)), zap.String("instance", e.Instance)}, extra...)
}
