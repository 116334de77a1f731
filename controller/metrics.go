package controller

import (
	"context"
	"sync/atomic"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spotrescue/spotrescue/controller/event"
)

// Metrics are the controller's Prometheus series. Labels take values from
// small fixed sets: never a job id, node or instance.
type Metrics struct {
	events          *prometheus.CounterVec
	ignoredEvents   *prometheus.CounterVec
	invalidMessages prometheus.Counter
	rescues         *prometheus.CounterVec
	rescueDuration  prometheus.Histogram
	rescuedBytes    prometheus.Counter
	deadlineSlack   prometheus.Histogram
	requeues        *prometheus.CounterVec
	dispatchLatency prometheus.Histogram
	queueDepth      prometheus.Gauge
	awsErrors       *prometheus.CounterVec
	slurmErrors     *prometheus.CounterVec
	stepErrors      *prometheus.CounterVec
	awsCalls        *prometheus.CounterVec
	slurmCalls      *prometheus.CounterVec
	yields          prometheus.Counter
	awsDuration     *prometheus.HistogramVec
	leader          prometheus.Gauge
	overdue         atomic.Pointer[func() int]
	spoolRemoved    *prometheus.CounterVec
	steers          *prometheus.CounterVec
	savedCPU        prometheus.Counter
	savedGPU        prometheus.Counter
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_events_received_total", Help: "EventBridge events received, by kind.",
		}, []string{"kind"}),
		ignoredEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_events_ignored_total", Help: "Events deleted without action, by reason (foreign_instance, duplicate, unsupported_kind, other_region, expired, ...).",
		}, []string{"reason"}),
		invalidMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotrescue_messages_invalid_total", Help: "Messages that could not be parsed; left for the queue's dead-letter queue, never deleted.",
		}),
		rescues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_rescues_total", Help: "Job runs whose rescue finished, by outcome (complete, partial, failed, skipped).",
		}, []string{"outcome"}),
		rescueDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spotrescue_rescue_duration_seconds", Help: "Time from receiving the warning to knowing the upload's outcome.",
			Buckets: []float64{5, 10, 20, 30, 45, 60, 75, 90, 105, 120, 150},
		}),
		rescuedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotrescue_rescued_bytes_total", Help: "Bytes of scratch data saved to S3.",
		}),
		deadlineSlack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spotrescue_deadline_slack_seconds", Help: "Time left before the deadline when a node's upload completed.",
			Buckets: []float64{0, 5, 10, 20, 40, 60, 80, 100},
		}),
		requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_requeues_total", Help: "Requeue decisions, by result (requeued, job_ended, not_requeueable, abandoned).",
		}, []string{"result"}),
		dispatchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spotrescue_dispatch_latency_seconds", Help: "Time from receiving the warning to the agent's SSM command being sent.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spotrescue_workqueue_depth", Help: "Records waiting to be reconciled.",
		}),
		awsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_aws_errors_total", Help: "Failed AWS API calls, by service and operation.",
		}, []string{"service", "operation"}),
		slurmErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_slurm_errors_total", Help: "Failed Slurm commands, by command.",
		}, []string{"command"}),
		stepErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotrescue_reconcile_errors_total", Help: "Failed reconcile steps (retried with backoff), by phase.",
		}, []string{"phase"}),
		yields: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotrescue_reconcile_yields_total", Help: "Times a dispatched record's reconcile waited for the intake of new warnings.",
		}),
	}
	m.awsCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spotrescue_aws_calls_total", Help: "AWS API calls made (each SDK call once, whatever its retries), by service and operation.",
	}, []string{"service", "operation"})
	m.spoolRemoved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spotrescue_spool_removed_total", Help: "Files removed from the spool directory after controller.spool_retention, by kind (plan, env).",
	}, []string{"kind"})
	m.steers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spotrescue_steers_total", Help: "Requeued jobs kept off a reclaimed compute resource (steered), not (skipped: nothing else could run them), and exclusions given back (lifted).",
	}, []string{"result"})
	for _, r := range []string{"steered", "skipped", "lifted"} {
		m.steers.WithLabelValues(r)
	}
	m.savedCPU = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "spotrescue_saved_cpu_seconds_total", Help: "CPU time that later runs were spared by starting from rescued data: the interrupted run's time up to the upload times its CPUs.",
	})
	m.savedGPU = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "spotrescue_saved_gpu_seconds_total", Help: "GPU time that later runs were spared by starting from rescued data (for jobs Slurm allocated GPUs).",
	})
	m.spoolRemoved.WithLabelValues("plan")
	m.spoolRemoved.WithLabelValues("env")
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spotrescue_leader", Help: "1 while this controller holds the cluster's lease and acts, 0 while it stands by (with controller.lease_ttl).",
	})
	m.awsDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "spotrescue_aws_call_duration_seconds", Help: "Time an AWS API call took, retries included, by service and operation.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"service", "operation"})
	m.slurmCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spotrescue_slurm_calls_total", Help: "Slurm commands run, by command (squeue, scontrol show, scontrol hold, ...).",
	}, []string{"command"})
	// Known label values start at 0, so rate() and absent() work from the
	// first scrape instead of from the first interruption.
	for _, k := range []event.Kind{event.SpotInterruption, event.Rebalance, event.StateChange, event.CommandStatus} {
		m.events.WithLabelValues(string(k))
	}
	for _, o := range []string{"complete", "partial", "failed", "skipped"} {
		m.rescues.WithLabelValues(o)
	}
	for _, r := range []string{"requeued", "job_ended", "not_requeueable", "abandoned"} {
		m.requeues.WithLabelValues(r)
	}
	for _, r := range []string{"foreign_instance", "duplicate", "unsupported_kind", "other_region", "expired"} {
		m.ignoredEvents.WithLabelValues(r)
	}
	overdue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spotrescue_records_overdue", Help: "Rescue records not finished although deadline.give_up_after has passed since their deadline.",
	}, func() float64 {
		if f := m.overdue.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	reg.MustRegister(overdue, m.spoolRemoved, m.steers, m.savedCPU, m.savedGPU)
	reg.MustRegister(m.events, m.ignoredEvents, m.invalidMessages, m.rescues, m.rescueDuration, m.rescuedBytes,
		m.deadlineSlack, m.requeues, m.dispatchLatency, m.queueDepth, m.awsErrors, m.slurmErrors, m.stepErrors, m.awsCalls, m.slurmCalls, m.yields, m.awsDuration, m.leader)
	return m
}

// countOverdue makes spotrescue_records_overdue report what f counts.
func (m *Metrics) countOverdue(f func() int) { m.overdue.Store(&f) }

func (m *Metrics) received(k event.Kind)       { m.events.WithLabelValues(string(k)).Inc() }
func (m *Metrics) ignored(reason string)       { m.ignoredEvents.WithLabelValues(reason).Inc() }
func (m *Metrics) awsError(service, op string) { m.awsErrors.WithLabelValues(service, op).Inc() }
func (m *Metrics) slurmError(command string)   { m.slurmErrors.WithLabelValues(command).Inc() }

// CountAWSCalls is an SDK API option that counts and times every call by
// service and operation: what a mass reclaim costs in API calls is
// measured, not estimated, and a slow or throttling service shows.
func (m *Metrics) CountAWSCalls(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("spotrescueCallCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			service, op := awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)
			m.awsCalls.WithLabelValues(service, op).Inc()
			start := time.Now()
			out, md, err := next.HandleInitialize(ctx, in)
			m.awsDuration.WithLabelValues(service, op).Observe(time.Since(start).Seconds())
			return out, md, err
		}), middleware.After)
}

// CountSlurmCall counts one Slurm command, for slurm.WithObserver.
func (m *Metrics) CountSlurmCall(name string, args []string) {
	cmd := name
	if name == "scontrol" && len(args) > 0 {
		cmd += " " + args[0]
		if args[0] == "--json" && len(args) > 1 || args[0] == "show" && len(args) > 1 {
			cmd = "scontrol show " + args[len(args)-2]
		}
	}
	m.slurmCalls.WithLabelValues(cmd).Inc()
}
