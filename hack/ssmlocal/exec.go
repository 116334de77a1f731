package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// drainDelay bounds how long output is read after the process group was
// killed; only a process that left the group can keep the pipes open then.
const drainDelay = 2 * time.Second

// execSpec describes one script run.
type execSpec struct {
	script  string
	scratch string // holds the script file
	dir     string
	env     []string
	timeout time.Duration
	limit   int // characters kept of stdout and of stderr
}

// execResult is the outcome of one script run. exitCode is -1 unless the
// script exited on its own.
type execResult struct {
	exitCode  int
	stdout    string
	stderr    string
	timedOut  bool
	stopCause error // why ctx ended the run
	err       error // the script could not be started
}

// execute runs the script with /bin/bash in its own process group and waits
// until it exits and its output is closed, the timeout passes or ctx ends.
// Like the SSM agent, it waits for every holder of stdout/stderr, so a
// background process that keeps them open holds the step until timeout.
func execute(ctx context.Context, spec execSpec) execResult {
	path := filepath.Join(spec.scratch, "_script.sh")
	if err := os.WriteFile(path, []byte(spec.script), 0o700); err != nil {
		return execResult{exitCode: -1, err: fmt.Errorf("write script: %w", err)}
	}
	cmd := exec.Command("/bin/bash", path)
	cmd.Dir, cmd.Env = spec.dir, spec.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := startWithOutput(cmd, spec.limit)
	if err != nil {
		return execResult{exitCode: -1, err: err}
	}
	res := supervise(ctx, cmd, out, spec.timeout)
	res.stdout, res.stderr = out.stdout.String(), out.stderr.String()
	return res
}

// capture reads a process's stdout and stderr into capped buffers; done is
// closed once both reach EOF or are closed.
type capture struct {
	stdout, stderr *cappedBuffer
	readers        []*os.File
	done           chan struct{}
}

// startWithOutput starts cmd with pipes we read ourselves: exec's own
// copying would make Wait return only after the pipes close, and we must
// tell "process exited" and "output closed" apart.
func startWithOutput(cmd *exec.Cmd, limit int) (*capture, error) {
	c := &capture{stdout: newCappedBuffer(limit), stderr: newCappedBuffer(limit), done: make(chan struct{})}
	var writers []*os.File
	closeAll := func() {
		for _, f := range append(writers, c.readers...) {
			_ = f.Close()
		}
	}
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		c.readers, writers = append(c.readers, r), append(writers, w)
	}
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start script: %w", err)
	}
	for _, w := range writers {
		_ = w.Close() // the child holds its own copies
	}
	c.copy()
	return c, nil
}

func (c *capture) copy() {
	var wg sync.WaitGroup
	for i, dst := range []io.Writer{c.stdout, c.stderr} {
		wg.Go(func() {
			_, _ = io.Copy(dst, c.readers[i]) // errors only once we close it
			_ = c.readers[i].Close()
		})
	}
	go func() {
		wg.Wait()
		close(c.done)
	}()
}

// supervise waits for cmd to exit and its output to close, killing the
// whole process group on timeout or when ctx ends.
func supervise(ctx context.Context, cmd *exec.Cmd, out *capture, timeout time.Duration) execResult {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	var res execResult
	exitedCh, doneCh := exited, out.done
	for exitedCh != nil || doneCh != nil {
		select {
		case err := <-exitedCh:
			res.exitCode, exitedCh = exitCode(cmd, err), nil
		case <-doneCh:
			doneCh = nil
		case <-timer.C:
			res.timedOut = true
			return killAndDrain(cmd, out, exitedCh, res)
		case <-ctx.Done():
			res.stopCause = context.Cause(ctx)
			return killAndDrain(cmd, out, exitedCh, res)
		}
	}
	return res
}

// killAndDrain kills the process group and collects what is left. exited
// is nil if the process was already reaped.
func killAndDrain(cmd *exec.Cmd, out *capture, exited <-chan error, res execResult) execResult {
	// Setpgid made the script's pid its process group id. Our pid reaped or
	// not, the group lives on while any member does.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		res.err = fmt.Errorf("kill process group %d: %w", cmd.Process.Pid, err)
	}
	if exited != nil {
		<-exited
	}
	select {
	case <-out.done:
	case <-time.After(drainDelay):
		for _, r := range out.readers {
			_ = r.Close()
		}
		<-out.done
	}
	res.exitCode = -1
	return res
}

// exitCode is the script's exit status, or -1 if it died by a signal.
func exitCode(cmd *exec.Cmd, waitErr error) int {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.ExitCode()
	}
	if waitErr != nil {
		return -1
	}
	return 0
}

// cappedBuffer keeps the first limit characters written to it and discards
// the rest, as SSM keeps only the start of long output. It stores up to
// limit*UTFMax bytes so multi-byte characters count as one.
type cappedBuffer struct {
	limit int
	buf   []byte
}

func newCappedBuffer(limit int) *cappedBuffer { return &cappedBuffer{limit: limit} }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit*utf8.UTFMax - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string { return truncateChars(string(b.buf), b.limit) }

// truncateChars returns the first n characters of s.
func truncateChars(s string, n int) string {
	count := 0
	for i := range s {
		if count == n {
			return s[:i]
		}
		count++
	}
	return s
}
