package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller"
	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/controller/notify"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

func newControllerCommand(g *globals) *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the rescue controller (the head node daemon)",
		Long: `Receives interruption events from SQS, holds the affected Slurm jobs, has their
nodes upload the jobs' scratch data to S3 through SSM Run Command, records every
step in DynamoDB and requeues the jobs. Serves /metrics, /healthz and /readyz.
Stops gracefully on SIGTERM; unfinished rescues resume on the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleController)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			if profile != "" {
				stop, err := startCPUProfile(profile)
				if err != nil {
					return err
				}
				defer stop()
			}
			return runController(cmd, cfg, log)
		},
	}
	withConfig(cmd)
	// For hack/burst and developers chasing CPU in a mass reclaim; not an
	// operator setting.
	cmd.Flags().StringVar(&profile, "cpu-profile", "", "write a pprof CPU profile to this file until the controller stops")
	_ = cmd.Flags().MarkHidden("cpu-profile")
	return cmd
}

func runController(cmd *cobra.Command, cfg *config.Config, log *zap.Logger) error {
	ctx := cmd.Context()
	awsCfg, err := rescue.AWSConfig(ctx, cfg.Region)
	if err != nil {
		return err
	}
	layout := rescue.Layout{Bucket: cfg.Bucket, Prefix: cfg.Prefix, Cluster: cfg.Cluster, Spool: cfg.SpoolDir}
	if err := prepareSpool(cfg.SpoolDir); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
	metrics := controller.NewMetrics(reg)
	awsCfg.APIOptions = append(awsCfg.APIOptions, metrics.CountAWSCalls)
	db := dynamodb.NewFromConfig(awsCfg)
	s3c := rescue.NewS3(awsCfg)
	nodes := &controller.NodeTable{DB: db, Table: cfg.NodeTable}
	// Knowing every node's instance up front saves a lookup per instance
	// in a mass reclaim; without Scan permission it looks them up one by one.
	if n, err := nodes.Load(ctx); err != nil {
		log.Warn("cannot read the whole node table; instances will be looked up one by one", zap.Error(err))
	} else {
		log.Info("node table read", zap.String("table", cfg.NodeTable), zap.Int("nodes", n))
	}
	// With a lease, records are written only through the lease's term
	// (controller.LeaseTerm.Records), each write fenced with its version:
	// such a controller gets no store of its own to write through.
	var store controller.Store
	var lease controller.Lease
	switch {
	case cfg.DryRun:
		// Rehearsed decisions must leave nothing a real controller would
		// resume or mistake for a duplicate.
		store = state.NewMemory()
		log.Warn("dry run: decisions are logged; Slurm, S3, SSM and the state table are left alone")
	case leaseTTL(cfg) > 0:
		lease = controller.StateLease{Table: state.New(db, cfg.StateTable)}
	default:
		store = state.New(db, cfg.StateTable)
	}
	notifier := newNotifier(cfg, awsCfg, log, reg)
	pack, packLate := cfg.Rescue.Packing()
	ctrl := controller.New(controller.Options{
		Cluster:         cfg.Cluster,
		Region:          cfg.Region,
		QueueURL:        cfg.QueueURL,
		Layout:          layout,
		ScratchTemplate: cfg.Scratch.PathTemplate,
		Margin:          cfg.Deadline.SafetyMargin.Std(),
		GiveUpAfter:     cfg.Deadline.GiveUpAfter.Std(),
		SpoolRetention:  cfg.Controller.SpoolRetention.Std(),
		Workers:         cfg.Controller.Workers,
		Receivers:       cfg.Controller.Receivers,
		Document:        cfg.SSM.Document,
		DryRun:          cfg.DryRun,
		LeaseTTL:        leaseTTL(cfg),
		Holder:          holder(),
		Policy: controller.Policy{
			States: cfg.Rescue.States, Signal: cfg.Rescue.CheckpointSignal, Grace: cfg.Rescue.CheckpointGrace.Std(),
			FallbackAfter: cfg.Fallback.After, FallbackPartition: cfg.Fallback.Partition, Presync: cfg.Rescue.PresyncOnRebalance,
			PresyncEvery: cfg.Rescue.PresyncEvery.Std(), AvoidFor: cfg.Steer.AvoidFor.Std(),
		},
	}, controller.Deps{
		Queue: sqs.NewFromConfig(awsCfg),
		// Few quick retries per command: the work queue retries the whole
		// step with backoff, and a failed step is recorded for operators.
		Slurm: controller.NewBatchedSlurm(slurm.New(cfg.Slurm.BinDir, slurm.WithLogger(log), slurm.WithRetry(2, time.Second),
			slurm.WithTimeout(20*time.Second), slurm.WithObserver(metrics.CountSlurmCall)), 20*time.Millisecond),
		Store: store,
		Nodes: nodes,
		Dispatcher: &agents.Dispatcher{
			SSM: ssm.NewFromConfig(awsCfg), Layout: layout, Region: cfg.Region, Document: cfg.SSM.Document,
			Window: 50 * time.Millisecond, Log: log, DryRun: cfg.DryRun,
			Priority: cfg.Rescue.Priority, Checksum: cfg.Rescue.Checksum, Pack: pack, PackLate: packLate,
		},
		Manifests: rescue.S3Manifests{Client: s3c, Bucket: cfg.Bucket},
		Lease:     lease,
		Notifier:  notifier,
		Log:       log,
		Metrics:   metrics,
	})
	// A metrics listener that cannot start stops the controller too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go notifier.Run(ctx)
	serveErr := make(chan error, 1)
	go func() {
		if err := ctrl.Serve(ctx, cfg.Metrics.Listen, reg); err != nil {
			serveErr <- err
			cancel()
		}
	}()
	// A standby is up too: systemd hears READY from it, /readyz answers 503.
	go notifySystemd(ctx, log, func() bool { return ctrl.Ready() || ctrl.Standby() }, ctrl.Healthy)
	err = ctrl.Run(ctx)
	select {
	case serr := <-serveErr:
		return fmt.Errorf("metrics listener: %w", serr)
	default:
		return err
	}
}

// newNotifier sends a notice of each finished rescue to the configured SNS
// topic and webhook; with neither it drops them.
func newNotifier(cfg *config.Config, awsCfg aws.Config, log *zap.Logger, reg prometheus.Registerer) *notify.Notifier {
	var sinks []notify.Sink
	if cfg.Notify.SNSTopic != "" {
		sinks = append(sinks, &notify.Topic{SNS: sns.NewFromConfig(awsCfg), ARN: cfg.Notify.SNSTopic})
	}
	if cfg.Notify.WebhookURL != "" {
		sinks = append(sinks, &notify.Webhook{URL: cfg.Notify.WebhookURL})
	}
	return notify.New(notify.Options{Outcomes: cfg.Notify.Outcomes}, sinks, log, reg)
}

// prepareSpool creates the shared directories: plans are root's alone; job
// env files are opened by name by their owners, who cannot list the others.
func prepareSpool(dir string) error {
	for sub, mode := range map[string]os.FileMode{"plans": 0o700, "jobs": 0o711} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, mode); err != nil {
			return fmt.Errorf("spool dir: %w", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("spool dir: %w", err)
		}
	}
	return nil
}

func buildInfoGauge() prometheus.Collector {
	v, commit, goVersion := buildInfo()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spotrescue_build_info", Help: "Build of the running controller; always 1."}, []string{"version", "commit", "goversion"})
	g.WithLabelValues(v, commit, goVersion).Set(1)
	return g
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// leaseTTL is the lease's TTL; a dry run takes no lease, since it acts on
// nothing another controller could be acting on.
func leaseTTL(cfg *config.Config) time.Duration {
	if cfg.DryRun {
		return 0
	}
	return cfg.Controller.LeaseTTL.Std()
}

// holder names this controller in the lease: host and process, so two
// controllers on one host (or a restarted one) are told apart.
func holder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
