// Package notify tells people about finished rescues, on the head node:
// an SNS topic, an HTTPS webhook (Slack-compatible JSON), or both.
//
// A notice never delays a rescue. Notify only puts it on a bounded queue;
// one sender goroutine delivers each notice to every sink, retrying a
// failed delivery with backoff; when the queue is full, the notice is
// dropped, counted and logged, as a rescue matters more than its report.
package notify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Notice is what a notification says about one finished job run.
type Notice struct {
	Cluster string    `json:"cluster"`
	Job     string    `json:"job"` // as users see it: 123_4 for an array task
	Run     int       `json:"run"` // the restart count of the rescued run
	Name    string    `json:"name,omitempty"`
	User    string    `json:"user,omitempty"`
	Outcome string    `json:"outcome"` // complete, partial, failed, skipped
	Requeue string    `json:"requeue,omitempty"`
	URI     string    `json:"uri,omitempty"`
	Files   int64     `json:"files"`
	Bytes   int64     `json:"bytes"`
	Nodes   []string  `json:"nodes,omitempty"`
	Errors  []string  `json:"errors,omitempty"`
	Drill   bool      `json:"drill,omitempty"`
	Time    time.Time `json:"time"` // when the rescue finished
}

// Text is the one-line summary people read first.
func (n Notice) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spotrescue %s: job %s (run %d", n.Cluster, n.Job, n.Run)
	if n.User != "" {
		fmt.Fprintf(&b, ", user %s", n.User)
	}
	fmt.Fprintf(&b, ") rescue %s: %d files, %d bytes", n.Outcome, n.Files, n.Bytes)
	if n.URI != "" {
		fmt.Fprintf(&b, " at %s", n.URI)
	}
	if n.Requeue != "" {
		fmt.Fprintf(&b, "; %s", n.Requeue)
	}
	if len(n.Errors) > 0 {
		fmt.Fprintf(&b, "; last error: %s", n.Errors[len(n.Errors)-1])
	}
	if n.Drill {
		b.WriteString(" (drill)")
	}
	return b.String()
}

// Sink delivers one notice somewhere.
type Sink interface {
	Name() string
	Send(ctx context.Context, n Notice) error
}

// Options tune the sender; zero values take the defaults.
type Options struct {
	Outcomes   []string      // the outcomes to notify about; all when empty
	QueueSize  int           // notices waiting at most (default 1000)
	Attempts   int           // deliveries tried per sink (default 5)
	Backoff    time.Duration // before the second attempt, doubling (default 1 s)
	MaxBackoff time.Duration // longest wait between attempts (default 30 s)
	Timeout    time.Duration // one attempt (default 10 s)
}

// Notifier queues notices and sends them to its sinks in the background.
type Notifier struct {
	opts    Options
	sinks   []Sink
	queue   chan Notice
	log     *zap.Logger
	metrics *prometheus.CounterVec
	sleep   func(context.Context, time.Duration) bool
}

// New returns a Notifier for sinks; Run sends. A Notifier without sinks
// accepts and drops everything, so callers need not check.
func New(opts Options, sinks []Sink, log *zap.Logger, reg prometheus.Registerer) *Notifier {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1000
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	n := &Notifier{
		opts: opts, sinks: sinks, queue: make(chan Notice, opts.QueueSize), log: log, sleep: sleepCtx,
		metrics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_notifications_total",
			Help: "Notifications of finished rescues, by sink and result (sent, failed after every attempt, dropped with the queue full).",
		}, []string{"sink", "result"}),
	}
	if reg != nil {
		reg.MustRegister(n.metrics)
	}
	return n
}

// Notify queues a notice if its outcome is one to tell; it never blocks.
func (n *Notifier) Notify(notice Notice) {
	if n == nil || len(n.sinks) == 0 || (len(n.opts.Outcomes) > 0 && !slices.Contains(n.opts.Outcomes, notice.Outcome)) {
		return
	}
	select {
	case n.queue <- notice:
	default:
		for _, s := range n.sinks {
			n.metrics.WithLabelValues(s.Name(), "dropped").Inc()
		}
		n.log.Warn("notification dropped: the queue is full", zap.String("job", notice.Job), zap.Int("run", notice.Run), zap.Int("queue", cap(n.queue)))
	}
}

// Run sends queued notices until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case notice := <-n.queue:
			for _, s := range n.sinks {
				n.deliver(ctx, s, notice)
			}
		}
	}
}

// deliver tries one sink until it takes the notice or the attempts run out.
func (n *Notifier) deliver(ctx context.Context, s Sink, notice Notice) {
	log := n.log.With(zap.String("sink", s.Name()), zap.String("job", notice.Job), zap.Int("run", notice.Run))
	wait := n.opts.Backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
		err := s.Send(actx, notice)
		cancel()
		if err == nil {
			n.metrics.WithLabelValues(s.Name(), "sent").Inc()
			log.Info("notification sent", zap.String("outcome", notice.Outcome), zap.Int("attempt", attempt))
			return
		}
		if attempt >= n.opts.Attempts || !n.sleep(ctx, wait) {
			n.metrics.WithLabelValues(s.Name(), "failed").Inc()
			log.Error("notification not sent", zap.Int("attempts", attempt), zap.Error(err))
			return
		}
		log.Warn("notification failed; trying again", zap.Int("attempt", attempt), zap.Duration("in", wait), zap.Error(err))
		wait = min(2*wait, n.opts.MaxBackoff)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
