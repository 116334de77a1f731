package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spotrescue/spotrescue/hack/lab"
)

// s3Endpoint is the S3 the benchmark runs against, and the process that
// serves it, whose CPU time is measured.
type s3Endpoint struct {
	url  string
	pid  int
	stop func()
}

// privateS3 starts a moto_server of its own, the same program the lab
// runs: the lab's is shared with other tests, whose load would move the
// numbers and which the benchmark's gigabytes would slow down in turn.
func privateS3(work string) (*s3Endpoint, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, "moto.log"))
	if err != nil {
		return nil, err
	}
	// moto spills every object over 5 MiB to a temporary file: on tmpfs
	// the benchmark measures the emulator's CPU, not the VM's disk.
	tmp, err := os.MkdirTemp(shm(), "spotrescue-bench-moto-")
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd := exec.Command("moto_server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	e := &s3Endpoint{url: fmt.Sprintf("http://127.0.0.1:%d", port), pid: cmd.Process.Pid, stop: func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		os.RemoveAll(tmp)
	}}
	if err := waitPort(port, 15*time.Second); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// labS3 is the lab's own moto_server.
func labS3(l *lab.Lab) (*s3Endpoint, error) {
	url := l.Env["AWS_ENDPOINT_URL"]
	if url == "" {
		return nil, fmt.Errorf("AWS_ENDPOINT_URL is not set in %s/lab.env", l.Dir)
	}
	e := &s3Endpoint{url: url, stop: func() {}}
	if pid, err := os.ReadFile(filepath.Join(l.Dir, "run", "moto.pid")); err == nil {
		e.pid, _ = strconv.Atoi(strings.TrimSpace(string(pid)))
	}
	return e, nil
}

func shm() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("moto_server is not listening on port %d after %s", port, timeout)
}

// s3Client addresses the endpoint path-style, as the agent does.
func s3Client(ctx context.Context, url string) (*s3.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(url)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}
