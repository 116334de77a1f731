// Package lab connects integration tests to the local lab that hack/lab/up.sh
// runs: real Slurm, moto_server, AEMM and ssmlocal. Tests that use it carry
// the build tag "lab" and run under `make lab-test`, which brings the lab up.
package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// Lab is a running lab, as described by its lab.env.
type Lab struct {
	Dir       string
	Env       map[string]string
	QueueURL  string
	DLQURL    string
	Config    string // spotrescue config file
	Bin       string // directory with spotrescue, ssmlocal, labinit
	Instances map[string]string
	AWS       aws.Config
}

var (
	once    sync.Once
	current *Lab
	loadErr error
)

// Get returns the running lab, exporting its environment into the test
// process. A test that needs the lab fails (not skips) when it is down: the
// lab tag means "run against the lab".
func Get(t testing.TB) *Lab {
	t.Helper()
	l, err := Load()
	if err != nil {
		t.Fatalf("lab is not up (run `make lab-up`): %v", err)
	}
	return l
}

// Load reads the running lab's lab.env and exports it into this process.
func Load() (*Lab, error) {
	once.Do(func() { current, loadErr = load() })
	return current, loadErr
}

func load() (*Lab, error) {
	dir := os.Getenv("LAB_DIR")
	if dir == "" {
		dir = "/tmp/spotrescue-lab"
	}
	env, err := readEnv(filepath.Join(dir, "lab.env"))
	if err != nil {
		return nil, err
	}
	for k, v := range env {
		os.Setenv(k, v)
	}
	l := &Lab{Dir: dir, Env: env, QueueURL: env["LAB_QUEUE_URL"], DLQURL: env["LAB_DLQ_URL"], Config: env["SPOTRESCUE_CONFIG"], Bin: env["LAB_BIN"]}
	if l.Instances, err = readInstances(filepath.Join(dir, "etc", "instances.json")); err != nil {
		return nil, err
	}
	l.AWS, err = awsconfig.LoadDefaultConfig(context.Background())
	return l, err
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env, sc.Err()
}

func readInstances(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Instances []struct{ ID, Node string } `json:"instances"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	m := map[string]string{}
	for _, in := range doc.Instances {
		m[in.Node] = in.ID
	}
	return m, nil
}

// Nodes lists the lab's compute-N nodes (partitions spot and ondemand), in
// order; PCNodes the two named as ParallelCluster names nodes (partition pc).
func (l *Lab) Nodes() []string {
	var out []string
	for i := 1; ; i++ {
		n := fmt.Sprintf("compute-%d", i)
		if _, ok := l.Instances[n]; !ok {
			return out
		}
		out = append(out, n)
	}
}

// PCNodes are the lab's nodes of queue "pc": compute resource c5's, which
// Slurm fills first, then m5's.
func (l *Lab) PCNodes() []string { return []string{"pc-dy-c5-1", "pc-dy-m5-1"} }

// Scratch is node's scratch root, the lab's stand-in for that node's /scratch.
func (l *Lab) Scratch(node string) string { return filepath.Join(l.Dir, "nodes", node, "scratch") }

// SQS, DynamoDB, S3 and SSM return clients for the lab's endpoints.
func (l *Lab) SQS() *sqs.Client           { return sqs.NewFromConfig(l.AWS) }
func (l *Lab) DynamoDB() *dynamodb.Client { return dynamodb.NewFromConfig(l.AWS) }
func (l *Lab) SSM() *ssm.Client           { return ssm.NewFromConfig(l.AWS) }
func (l *Lab) S3() *s3.Client {
	return s3.NewFromConfig(l.AWS, func(o *s3.Options) {
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// Run runs a command with the lab's environment and returns its stdout.
func (l *Lab) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := l.Command(name, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// Command builds a command with the lab's environment.
func (l *Lab) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	return cmd
}

// Sbatch submits a batch job and returns its id; the job is cancelled when the test ends.
func (l *Lab) Sbatch(t testing.TB, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(l.Run(t, "sbatch", append([]string{"--parsable"}, args...)...))
	id, _, _ = strings.Cut(id, ";")
	t.Cleanup(func() { _ = l.Command("scancel", id).Run() })
	return id
}

// JobField returns one field (such as JobState or NodeList) of `scontrol show job`.
func (l *Lab) JobField(t testing.TB, id, field string) string {
	t.Helper()
	out := l.Run(t, "scontrol", "-o", "show", "job", id)
	for _, kv := range strings.Fields(out) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == field {
			return v
		}
	}
	return ""
}

// WaitJob waits until the job's state is one of states and returns it.
func (l *Lab) WaitJob(t testing.TB, id string, timeout time.Duration, states ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var st string
	for time.Now().Before(deadline) {
		st = l.JobField(t, id, "JobState")
		for _, s := range states {
			if st == s {
				return st
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("job %s: state %s after %s, want one of %v", id, st, timeout, states)
	return ""
}

// Eventually polls cond until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// StopSlurmctld stops the lab's slurmctld (by the PID it recorded) and
// waits until it is gone; jobs keep running on the slurmd nodes.
func (l *Lab) StopSlurmctld(t testing.TB) {
	t.Helper()
	pidFile := filepath.Join(l.Dir, "run", "slurmctld.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	proc, err := os.FindProcess(pid)
	if err != nil || proc.Signal(syscall.SIGTERM) != nil {
		t.Fatalf("stop slurmctld %d: %v", pid, err)
	}
	Eventually(t, 30*time.Second, "slurmctld to exit", func() bool { return proc.Signal(syscall.Signal(0)) != nil })
}

// StartSlurmctld starts slurmctld again from its saved state.
func (l *Lab) StartSlurmctld(t testing.TB) {
	t.Helper()
	l.Run(t, "slurmctld")
	Eventually(t, 30*time.Second, "slurmctld to answer", func() bool { return l.Command("scontrol", "ping").Run() == nil })
}
