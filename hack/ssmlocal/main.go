// Command ssmlocal is a local stand-in for AWS Systems Manager Run Command,
// for the spotrescue lab.
//
// No SSM emulator executes commands, so ssmlocal does: it speaks enough of
// the SSM API (AWS JSON 1.1: SendCommand, GetCommandInvocation,
// ListCommandInvocations, ListCommands, CancelCommand) for an unmodified
// aws-sdk-go-v2 ssm client pointed at it with BaseEndpoint or
// AWS_ENDPOINT_URL_SSM, and really runs each command's shell steps with
// /bin/bash as the lab node the target instance id maps to. Optionally it
// publishes the EventBridge "EC2 Command Invocation Status-change
// Notification" events to an SQS queue, as an EventBridge rule would.
//
// Requests are not authenticated (SigV4 signatures are ignored), so it only
// ever listens on a loopback address.
//
// Lab control endpoints, outside the SSM API:
//
//	GET  /_lab/healthz                   200 once serving
//	GET  /_lab/instances                 the mapping and which are terminated
//	POST /_lab/instances/{id}/terminate  terminate an instance
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const shutdownTimeout = 15 * time.Second

type flags struct {
	listen         string
	instances      string
	documents      string
	region         string
	account        string
	eventsQueueURL string
	outputLimit    int
	logLevel       string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("ssmlocal", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:4580", "loopback `address` to serve the SSM API on")
	fs.StringVar(&f.instances, "instances", "", "JSON `file` mapping instance ids to lab nodes (required)")
	fs.StringVar(&f.documents, "documents", "", "`dir` of SSM command documents (NAME.json, NAME.yaml, NAME.yml)")
	fs.StringVar(&f.region, "region", getenvOr("AWS_REGION", "us-east-1"), "AWS `region` reported in responses and events")
	fs.StringVar(&f.account, "account", "123456789012", "AWS `account` id reported in errors and events")
	fs.StringVar(&f.eventsQueueURL, "events-queue-url", "", "SQS queue `URL` to publish invocation status-change events to")
	fs.IntVar(&f.outputLimit, "output-limit", 24000, "characters of stdout and of stderr kept per step")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	return f, f.validate()
}

func (f flags) validate() error {
	switch {
	case f.instances == "":
		return errors.New("-instances is required")
	case f.outputLimit < 1:
		return errors.New("-output-limit must be positive")
	case f.region == "":
		return errors.New("-region must not be empty")
	case len(f.account) != 12:
		return errors.New("-account must be a 12-digit account id")
	}
	return checkLoopback(f.listen)
}

// checkLoopback refuses non-loopback addresses: the API is unauthenticated
// and runs shell commands.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: host must be a loopback IP such as 127.0.0.1", addr)
	}
	return nil
}

func main() {
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssmlocal:", err)
		os.Exit(2)
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssmlocal:", err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()
	if err := run(f, log); err != nil {
		log.Error("ssmlocal failed", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil // a lab wants every status change in the log
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// run serves until SIGINT or SIGTERM, then stops accepting requests,
// cancels running invocations and flushes their events.
func run(f flags, log *zap.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := buildConfig(ctx, f, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newServer(cfg)
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("serving SSM API", zap.String("address", ln.Addr().String()),
		zap.Int("instances", len(cfg.instances)), zap.Int("documents", len(cfg.documents)))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if serr := httpSrv.Shutdown(shutdownCtx); serr != nil {
		log.Warn("http shutdown", zap.Error(serr))
	}
	srv.Close(shutdownCtx)
	return err
}

func buildConfig(ctx context.Context, f flags, log *zap.Logger) (config, error) {
	instances, err := loadInstances(f.instances)
	if err != nil {
		return config{}, err
	}
	docs, err := loadDocuments(f.documents)
	if err != nil {
		return config{}, err
	}
	cfg := config{region: f.region, account: f.account, outputLimit: f.outputLimit,
		documents: docs, instances: instances, log: log}
	if f.eventsQueueURL != "" {
		pub, err := newSQSPublisher(ctx, f.region, f.eventsQueueURL)
		if err != nil {
			return config{}, err
		}
		cfg.publisher = pub
	}
	return cfg, nil
}
