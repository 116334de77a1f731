package main

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"go.uber.org/zap/zaptest"
)

// Test instance ids, all in the default mapping.
const (
	inst1 = "i-0000000000000000a"
	inst2 = "i-0000000000000000b"
	inst3 = "i-0000000000000000c"
)

// testDocYAML declares a parameter with an allowedPattern and echoes what
// the script sees.
const testDocYAML = `
schemaVersion: "2.2"
description: test document
parameters:
  Message:
    type: String
    allowedPattern: "^[a-zA-Z0-9 ]+$"
  Color:
    type: String
    default: blue
    allowedValues: [red, blue]
mainSteps:
  - action: aws:runShellScript
    name: echo
    inputs:
      runCommand:
        - echo "message={{ Message }}"
        - echo "color={{Color}}"
        - echo "id=$AWS_SSM_INSTANCE_ID region=$AWS_SSM_REGION_NAME"
        - echo "lab=$LAB_NODE"
        - echo "pwd=$(pwd)"
`

const twoStepDocJSON = `{
  "schemaVersion": "2.2",
  "mainSteps": [
    {"action": "aws:runShellScript", "name": "first", "inputs": {"runCommand": ["echo one", "exit 4"]}},
    {"action": "aws:runShellScript", "name": "second", "inputs": {"runCommand": ["echo two"]}}
  ]
}`

// fixture is a running ssmlocal with an SDK client pointed at it.
type fixture struct {
	t       *testing.T
	srv     *server
	url     string
	client  *ssm.Client
	workdir string // inst1's mapped workdir
}

type labOption func(*config)

func withOutputLimit(n int) labOption { return func(c *config) { c.outputLimit = n } }

func withPublisher(p publisher) labOption { return func(c *config) { c.publisher = p } }

func newLab(t *testing.T, opts ...labOption) *fixture {
	t.Helper()
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs")
	workdir := filepath.Join(dir, "node1")
	for _, d := range []string{docs, workdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The script's pwd reports the physical path.
	workdir, err := filepath.EvalSymlinks(workdir)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(docs, "Test-Doc.yaml"), testDocYAML)
	writeFile(t, filepath.Join(docs, "Two-Steps.json"), twoStepDocJSON)
	documents, err := loadDocuments(docs)
	if err != nil {
		t.Fatalf("loadDocuments: %v", err)
	}
	instances, err := indexInstances([]*instance{
		{ID: inst1, Node: "compute-1", Workdir: workdir, Env: map[string]string{"LAB_NODE": "compute-1"}},
		{ID: inst2, Node: "compute-2"},
		{ID: inst3, Node: "compute-3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{region: "eu-west-1", account: "123456789012", outputLimit: 24000,
		documents: documents, instances: instances, log: zaptest.NewLogger(t)}
	for _, o := range opts {
		o(&cfg)
	}
	srv := newServer(cfg)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	client := ssm.New(ssm.Options{
		Region:           "eu-west-1",
		BaseEndpoint:     aws.String(ts.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDLAB", "secret", ""),
		RetryMaxAttempts: 1,
	})
	return &fixture{t: t, srv: srv, url: ts.URL, client: client, workdir: workdir}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *fixture) send(doc string, params map[string][]string, ids ...string) (*types.Command, error) {
	out, err := l.client.SendCommand(context.Background(), &ssm.SendCommandInput{
		DocumentName: aws.String(doc),
		InstanceIds:  ids,
		Parameters:   params,
	})
	if err != nil {
		return nil, err
	}
	return out.Command, nil
}

// shell sends AWS-RunShellScript and fails the test if SSM refuses it.
func (l *fixture) shell(timeout string, script string, ids ...string) string {
	l.t.Helper()
	params := map[string][]string{"commands": {script}}
	if timeout != "" {
		params["executionTimeout"] = []string{timeout}
	}
	cmd, err := l.send("AWS-RunShellScript", params, ids...)
	if err != nil {
		l.t.Fatalf("SendCommand: %v", err)
	}
	return aws.ToString(cmd.CommandId)
}

func (l *fixture) invocation(commandID, instanceID string) *ssm.GetCommandInvocationOutput {
	l.t.Helper()
	out, err := l.client.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{
		CommandId: aws.String(commandID), InstanceId: aws.String(instanceID),
	})
	if err != nil {
		l.t.Fatalf("GetCommandInvocation: %v", err)
	}
	return out
}

// waitFor polls GetCommandInvocation until cond holds.
func (l *fixture) waitFor(commandID, instanceID string, cond func(*ssm.GetCommandInvocationOutput) bool) *ssm.GetCommandInvocationOutput {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := l.invocation(commandID, instanceID)
		if cond(out) {
			return out
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("invocation %s/%s stuck in %s", commandID, instanceID, out.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *fixture) waitTerminal(commandID, instanceID string) *ssm.GetCommandInvocationOutput {
	l.t.Helper()
	return l.waitFor(commandID, instanceID, func(o *ssm.GetCommandInvocationOutput) bool { return isTerminal(string(o.Status)) })
}

func (l *fixture) waitStatus(commandID, instanceID string, want types.CommandInvocationStatus) *ssm.GetCommandInvocationOutput {
	l.t.Helper()
	return l.waitFor(commandID, instanceID, func(o *ssm.GetCommandInvocationOutput) bool { return o.Status == want })
}

func (l *fixture) command(commandID string) types.Command {
	l.t.Helper()
	out, err := l.client.ListCommands(context.Background(), &ssm.ListCommandsInput{CommandId: aws.String(commandID)})
	if err != nil {
		l.t.Fatalf("ListCommands: %v", err)
	}
	if len(out.Commands) != 1 {
		l.t.Fatalf("ListCommands returned %d commands, want 1", len(out.Commands))
	}
	return out.Commands[0]
}

// readPIDs waits for a script to write its pids, one per line, to path.
func readPIDs(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		lines := strings.Fields(string(data))
		if len(lines) >= n {
			pids := make([]int, n)
			for i := range pids {
				pid, err := strconv.Atoi(lines[i])
				if err != nil {
					t.Fatalf("pid file %s: %v", path, err)
				}
				pids[i] = pid
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s has %d pids, want %d", path, len(lines), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGone fails unless every pid exits (or is a zombie) shortly.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d is still running", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// processAlive treats zombies as dead: a container's init may never reap
// the orphans we kill.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// fakePublisher records envelopes and can be told to fail.
type fakePublisher struct {
	mu     sync.Mutex
	bodies [][]byte
	fail   bool
}

func (p *fakePublisher) Publish(_ context.Context, body []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("queue unavailable")
	}
	p.bodies = append(p.bodies, body)
	return nil
}

func (p *fakePublisher) snapshot() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.bodies...)
}
