package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Runner runs a program with an argv, never through a shell, and returns
// its stdout. name is the program's path (the bin dir joined with "squeue",
// ...). A failed run returns an error whose text carries the program's
// stderr, since that is where Slurm says what went wrong.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (stdout []byte, err error)
}

// Option configures a Client.
type Option func(*Client)

// WithRunner replaces the exec Runner, for tests and for wrappers (sudo,
// ssh to the head node) that keep to the argv contract.
func WithRunner(r Runner) Option { return func(c *Client) { c.runner = r } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *zap.Logger) Option { return func(c *Client) { c.log = l } }

// WithTimeout bounds each attempt of a command (default 30s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithRetry sets how often a command is tried when slurmctld cannot be
// reached (default 4) and the first pause between tries (default 500ms),
// which doubles each time up to 8s.
func WithRetry(attempts int, firstDelay time.Duration) Option {
	return func(c *Client) { c.attempts, c.delay = attempts, firstDelay }
}

// WithObserver has f called with every command run (retries included), so
// a caller can count what it costs Slurm.
func WithObserver(f func(name string, args []string)) Option {
	return func(c *Client) { c.observe = f }
}

// Client runs the Slurm commands of one cluster. It is safe for concurrent
// use.
type Client struct {
	binDir   string
	runner   Runner
	log      *zap.Logger
	timeout  time.Duration
	attempts int
	delay    time.Duration
	maxDelay time.Duration
	observe  func(name string, args []string)

	mu          sync.Mutex
	version     Version
	haveVersion bool
	seen        targetCache
}

// New returns a Client that runs the Slurm commands found in binDir (for
// ParallelCluster, /opt/slurm/bin); an empty binDir looks them up in PATH.
func New(binDir string, opts ...Option) *Client {
	c := &Client{
		binDir:   binDir,
		runner:   execRunner{},
		log:      zap.NewNop(),
		timeout:  30 * time.Second,
		attempts: 4,
		delay:    500 * time.Millisecond,
		maxDelay: 8 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	if c.attempts < 1 {
		c.attempts = 1
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.seen.init()
	return c
}

func (c *Client) path(name string) string {
	if c.binDir == "" {
		return name
	}
	return filepath.Join(c.binDir, name)
}

// run runs a Slurm command, trying again with exponential backoff while the
// failure is transient (slurmctld unreachable, an attempt timed out) and the
// caller's context allows. The error is a *CommandError wrapped with the
// sentinel its text names, if any.
func (c *Client) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	delay := c.delay
	for attempt := 1; ; attempt++ {
		out, err := c.runOnce(ctx, name, args)
		if err == nil {
			return out, nil
		}
		if attempt >= c.attempts || !c.retryable(ctx, err) {
			return nil, classify(err)
		}
		c.log.Warn("slurm command failed, retrying", zap.String("cmd", name),
			zap.Strings("args", args), zap.Int("attempt", attempt), zap.Duration("delay", delay), zap.Error(err))
		if serr := sleep(ctx, delay); serr != nil {
			return nil, fmt.Errorf("%w (gave up: %w)", classify(err), serr)
		}
		delay = min(2*delay, c.maxDelay)
	}
}

func (c *Client) runOnce(ctx context.Context, name string, args []string) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	if c.observe != nil {
		c.observe(name, args)
	}
	out, err := c.runner.Run(actx, c.path(name), args...)
	c.log.Debug("slurm command", zap.String("cmd", name), zap.Strings("args", args),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if err == nil {
		return out, nil
	}
	var ce *CommandError
	if !errors.As(err, &ce) {
		err = &CommandError{Cmd: commandLine(name, args), Err: err}
	}
	if actx.Err() != nil && ctx.Err() == nil {
		err = &timeoutError{after: c.timeout, err: err}
	}
	return nil, err
}

// retryable: transient Slurm errors and attempts that timed out, as long as
// the caller's context is alive.
func (c *Client) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var te *timeoutError
	return errors.As(err, &te) || isTransient(err.Error())
}

// timeoutError is an attempt that ran out of time.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timed out after %s: %v", e.after, e.err)
}

func (e *timeoutError) Unwrap() error { return e.err }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func commandLine(name string, args []string) string {
	return strings.Join(append([]string{filepath.Base(name)}, args...), " ")
}

// maxStderr bounds the stderr kept in an error.
const maxStderr = 4096

// execRunner runs programs with os/exec.
type execRunner struct{}

func (execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Do not wait on a grandchild that inherited the pipes once the
	// command itself is gone.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{
			Cmd:    commandLine(name, args),
			Stderr: truncate(strings.TrimSpace(stderr.String()), maxStderr),
			Err:    err,
		}
	}
	return stdout.Bytes(), nil
}
