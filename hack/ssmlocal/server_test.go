package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

func TestSendCommandRunsDocumentAsMappedNode(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cmd, err := l.send("Test-Doc", map[string][]string{"Message": {"hello world"}}, inst1)
	if err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	if cmd.Status != types.CommandStatusPending || cmd.TargetCount != 1 || cmd.RequestedDateTime == nil {
		t.Errorf("SendCommand returned status %q, target count %d, requested %v", cmd.Status, cmd.TargetCount, cmd.RequestedDateTime)
	}
	if got := cmd.Parameters["Message"]; len(got) != 1 || got[0] != "hello world" {
		t.Errorf("Command.Parameters[Message] = %q", got)
	}

	// The SDK's own waiter exercises the protocol the way a controller does.
	waiter := ssm.NewCommandExecutedWaiter(l.client, func(o *ssm.CommandExecutedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	})
	in := &ssm.GetCommandInvocationInput{CommandId: cmd.CommandId, InstanceId: aws.String(inst1)}
	out, err := waiter.WaitForOutput(context.Background(), in, 5*time.Second)
	if err != nil {
		t.Fatalf("waiting for command: %v", err)
	}
	for _, want := range []string{
		"message=hello world\n",
		"color=blue\n",
		"id=" + inst1 + " region=eu-west-1\n",
		"lab=compute-1\n",
		"pwd=" + l.workdir + "\n",
	} {
		if !strings.Contains(aws.ToString(out.StandardOutputContent), want) {
			t.Errorf("StandardOutputContent = %q, want it to contain %q", aws.ToString(out.StandardOutputContent), want)
		}
	}
	if out.ResponseCode != 0 || aws.ToString(out.PluginName) != "echo" || aws.ToString(out.DocumentName) != "Test-Doc" {
		t.Errorf("ResponseCode %d, PluginName %q, DocumentName %q", out.ResponseCode, aws.ToString(out.PluginName), aws.ToString(out.DocumentName))
	}
	for name, v := range map[string]*string{"ExecutionStartDateTime": out.ExecutionStartDateTime, "ExecutionEndDateTime": out.ExecutionEndDateTime} {
		if _, err := time.Parse(ssmTimeLayout, aws.ToString(v)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.HasPrefix(aws.ToString(out.ExecutionElapsedTime), "PT") {
		t.Errorf("ExecutionElapsedTime = %q", aws.ToString(out.ExecutionElapsedTime))
	}
	got := l.command(aws.ToString(cmd.CommandId))
	if got.Status != types.CommandStatusSuccess || got.CompletedCount != 1 || got.ErrorCount != 0 {
		t.Errorf("ListCommands: status %q, completed %d, errors %d", got.Status, got.CompletedCount, got.ErrorCount)
	}
}

func TestNonzeroExitFails(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	id := l.shell("", "echo partial\necho broken >&2\nexit 3", inst2)
	out := l.waitTerminal(id, inst2)
	if out.Status != types.CommandInvocationStatusFailed || out.ResponseCode != 3 {
		t.Errorf("status %q, response code %d; want Failed, 3", out.Status, out.ResponseCode)
	}
	if aws.ToString(out.StandardOutputContent) != "partial\n" || aws.ToString(out.StandardErrorContent) != "broken\n" {
		t.Errorf("stdout %q, stderr %q", aws.ToString(out.StandardOutputContent), aws.ToString(out.StandardErrorContent))
	}
	cmd := l.command(id)
	if cmd.Status != types.CommandStatusFailed || cmd.ErrorCount != 1 || cmd.CompletedCount != 1 {
		t.Errorf("ListCommands: status %q, errors %d, completed %d", cmd.Status, cmd.ErrorCount, cmd.CompletedCount)
	}
}

func TestExecutionTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	// The background sleep shares the group; the agent would wait for it.
	script := fmt.Sprintf("echo $$ > %[1]s\nsleep 30 &\necho $! >> %[1]s\nwait", pidFile)
	id := l.shell("1", script, inst2)
	pids := readPIDs(t, pidFile, 2)
	out := l.waitTerminal(id, inst2)
	if out.Status != types.CommandInvocationStatusTimedOut || aws.ToString(out.StatusDetails) != detailsExecutionTimedOut {
		t.Errorf("status %q (%s), want TimedOut (ExecutionTimedOut)", out.Status, aws.ToString(out.StatusDetails))
	}
	if out.ResponseCode != -1 {
		t.Errorf("ResponseCode = %d, want -1", out.ResponseCode)
	}
	waitGone(t, pids...)
	if cmd := l.command(id); cmd.Status != types.CommandStatusTimedOut {
		t.Errorf("command status %q, want TimedOut", cmd.Status)
	}
}

func TestBackgroundProcessHoldingOutputKeepsStepRunning(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	// bash exits at once, but the sleep holds stdout as in real SSM.
	id := l.shell("1", "sleep 30 &\necho started", inst2)
	out := l.waitTerminal(id, inst2)
	if out.Status != types.CommandInvocationStatusTimedOut {
		t.Errorf("status %q, want TimedOut", out.Status)
	}
	if got := aws.ToString(out.StandardOutputContent); got != "started\n" {
		t.Errorf("stdout %q, want output written before the timeout", got)
	}
}

func TestCancelCommand(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	id := l.shell("", fmt.Sprintf("echo $$ > %s\nexec sleep 30", pidFile), inst1, inst2)
	pids := readPIDs(t, pidFile, 1)
	l.waitStatus(id, inst1, types.CommandInvocationStatusInProgress)
	if _, err := l.client.CancelCommand(context.Background(), &ssm.CancelCommandInput{CommandId: aws.String(id)}); err != nil {
		t.Fatalf("CancelCommand: %v", err)
	}
	for _, inst := range []string{inst1, inst2} {
		if out := l.waitTerminal(id, inst); out.Status != types.CommandInvocationStatusCancelled {
			t.Errorf("%s: status %q, want Cancelled", inst, out.Status)
		}
	}
	waitGone(t, pids...)
	if cmd := l.command(id); cmd.Status != types.CommandStatusCancelled || cmd.CompletedCount != 2 {
		t.Errorf("command status %q, completed %d; want Cancelled, 2", cmd.Status, cmd.CompletedCount)
	}
	_, err := l.client.CancelCommand(context.Background(), &ssm.CancelCommandInput{CommandId: aws.String(newUUID())})
	var invalid *types.InvalidCommandId
	if !errors.As(err, &invalid) {
		t.Errorf("CancelCommand of an unknown command: %v, want InvalidCommandId", err)
	}
}

func TestSendCommandRejectsBadParameters(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	tests := []struct {
		name   string
		params map[string][]string
		want   string // in the message
	}{
		{"pattern", map[string][]string{"Message": {"rm -rf /; echo"}}, `"Message"`},
		{"allowedValues", map[string][]string{"Message": {"hi"}, "Color": {"green"}}, `"Color"`},
		{"undeclared", map[string][]string{"Message": {"hi"}, "Bogus": {"x"}}, `"Bogus"`},
		{"required", map[string][]string{}, `"Message"`},
		{"two values for a String", map[string][]string{"Message": {"a", "b"}}, `"Message"`},
	}
	for _, tc := range tests {
		_, err := l.send("Test-Doc", tc.params, inst1)
		var invalid *types.InvalidParameters
		if !errors.As(err, &invalid) {
			t.Errorf("%s: error %v, want InvalidParameters", tc.name, err)
			continue
		}
		if !strings.Contains(invalid.ErrorMessage(), tc.want) {
			t.Errorf("%s: message %q does not name %s", tc.name, invalid.ErrorMessage(), tc.want)
		}
	}
	out, err := l.client.ListCommands(context.Background(), &ssm.ListCommandsInput{})
	if err != nil || len(out.Commands) != 0 {
		t.Errorf("ListCommands after rejected sends: %d commands, %v; want none", len(out.Commands), err)
	}
}

func TestSendCommandRejectsBadTargets(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf("i-%017x", i)
	}
	var (
		invalidInstance *types.InvalidInstanceId
		validation      *types.ValidationException
		duplicate       *types.DuplicateInstanceId
		invalidDoc      *types.InvalidDocument
	)
	check := func(name string, err error, target any) {
		t.Helper()
		if !errors.As(err, target) {
			t.Errorf("%s: error %v, want %T", name, err, target)
		}
	}
	_, err := l.send("AWS-RunShellScript", map[string][]string{"commands": {"true"}}, "i-0123456789abcdef0")
	check("unknown instance", err, &invalidInstance)
	_, err = l.send("AWS-RunShellScript", map[string][]string{"commands": {"true"}}, many...)
	check("51 instances", err, &validation)
	_, err = l.send("AWS-RunShellScript", map[string][]string{"commands": {"true"}}, inst1, inst1)
	check("duplicate instance", err, &duplicate)
	_, err = l.send("No-Such-Doc", nil, inst1)
	check("unknown document", err, &invalidDoc)
	_, err = l.client.SendCommand(context.Background(), &ssm.SendCommandInput{
		DocumentName: aws.String("AWS-RunShellScript"),
		Targets:      []types.Target{{Key: aws.String("tag:Role"), Values: []string{"compute"}}},
		Parameters:   map[string][]string{"commands": {"true"}},
	})
	check("targets", err, &validation)
	if validation != nil && !strings.Contains(validation.ErrorMessage(), "Targets") {
		t.Errorf("Targets rejection %q does not say why", validation.ErrorMessage())
	}
}

func TestSendCommandAcceptsDocumentARN(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cmd, err := l.send("arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", map[string][]string{"commands": {"echo arn"}}, inst2)
	if err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	if out := l.waitTerminal(aws.ToString(cmd.CommandId), inst2); out.Status != types.CommandInvocationStatusSuccess {
		t.Errorf("status %q, want Success", out.Status)
	}
}

func TestGetCommandInvocationUnknown(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	id := l.shell("", "true", inst1)
	for _, tc := range []struct{ command, instance string }{{newUUID(), inst1}, {id, inst2}} {
		_, err := l.client.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{
			CommandId: aws.String(tc.command), InstanceId: aws.String(tc.instance),
		})
		var missing *types.InvocationDoesNotExist
		if !errors.As(err, &missing) {
			t.Errorf("GetCommandInvocation(%s, %s): %v, want InvocationDoesNotExist", tc.command, tc.instance, err)
		}
	}
}

func TestMultiStepDocument(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cmd, err := l.send("Two-Steps", nil, inst3)
	if err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	id := aws.ToString(cmd.CommandId)
	get := func(plugin string) (*ssm.GetCommandInvocationOutput, error) {
		return l.client.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{
			CommandId: aws.String(id), InstanceId: aws.String(inst3), PluginName: aws.String(plugin),
		})
	}
	var second *ssm.GetCommandInvocationOutput
	deadline := time.Now().Add(5 * time.Second)
	for second == nil || !isTerminal(string(second.Status)) {
		if second, err = get("second"); err != nil || time.Now().After(deadline) {
			t.Fatalf("step second: %v, %+v", err, second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if second.Status != types.CommandInvocationStatusSuccess || aws.ToString(second.StandardOutputContent) != "two\n" {
		t.Errorf("second step: %q %q; want it to run after the first failed", second.Status, aws.ToString(second.StandardOutputContent))
	}
	if first, err := get("first"); err != nil || first.Status != types.CommandInvocationStatusFailed || first.ResponseCode != 4 {
		t.Errorf("first step: %+v, %v; want Failed with 4", first, err)
	}
	_, err = l.client.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{
		CommandId: aws.String(id), InstanceId: aws.String(inst3),
	})
	var badPlugin *types.InvalidPluginName
	if !errors.As(err, &badPlugin) {
		t.Errorf("GetCommandInvocation without PluginName: %v, want InvalidPluginName", err)
	}
	if cmd := l.command(id); cmd.Status != types.CommandStatusFailed {
		t.Errorf("command status %q, want Failed", cmd.Status)
	}
}

func TestListCommandInvocationsPagination(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	first := l.shell("", "echo first", inst1, inst2, inst3)
	second := l.shell("", "echo second", inst1, inst2)
	for _, inst := range []string{inst1, inst2, inst3} {
		l.waitTerminal(first, inst)
	}
	for _, inst := range []string{inst1, inst2} {
		l.waitTerminal(second, inst)
	}

	p := ssm.NewListCommandInvocationsPaginator(l.client, &ssm.ListCommandInvocationsInput{
		MaxResults: aws.Int32(2), Details: true,
	})
	var got []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
		for _, inv := range out.CommandInvocations {
			got = append(got, aws.ToString(inv.CommandId)+"/"+aws.ToString(inv.InstanceId))
			if len(inv.CommandPlugins) != 1 || !strings.HasPrefix(aws.ToString(inv.CommandPlugins[0].Output), "first") && !strings.HasPrefix(aws.ToString(inv.CommandPlugins[0].Output), "second") {
				t.Errorf("invocation %s: plugins %+v, want one with output", got[len(got)-1], inv.CommandPlugins)
			}
		}
	}
	want := []string{second + "/" + inst1, second + "/" + inst2, first + "/" + inst1, first + "/" + inst2, first + "/" + inst3}
	if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%d pages: %v\nwant 3 pages: %v", pages, got, want)
	}

	out, err := l.client.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(first)})
	if err != nil || len(out.CommandInvocations) != 3 || out.NextToken != nil {
		t.Fatalf("filtered by command: %d invocations, token %v, %v", len(out.CommandInvocations), out.NextToken, err)
	}
	if len(out.CommandInvocations[0].CommandPlugins) != 0 {
		t.Errorf("CommandPlugins without Details: %+v", out.CommandInvocations[0].CommandPlugins)
	}
	_, err = l.client.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{NextToken: aws.String("bogus")})
	var badToken *types.InvalidNextToken
	if !errors.As(err, &badToken) {
		t.Errorf("bogus NextToken: %v, want InvalidNextToken", err)
	}
	cmds, err := l.client.ListCommands(context.Background(), &ssm.ListCommandsInput{MaxResults: aws.Int32(1)})
	if err != nil || len(cmds.Commands) != 1 || aws.ToString(cmds.Commands[0].CommandId) != second || cmds.NextToken == nil {
		t.Errorf("ListCommands page 1: %+v, %v; want the newest command and a token", cmds, err)
	}
}

func TestOutputTruncation(t *testing.T) {
	t.Parallel()
	l := newLab(t, withOutputLimit(100))
	id := l.shell("", "head -c 5000 /dev/zero | tr '\\0' x\nfor i in $(seq 300); do printf 'é' >&2; done", inst2)
	out := l.waitTerminal(id, inst2)
	if got := aws.ToString(out.StandardOutputContent); got != strings.Repeat("x", 100) {
		t.Errorf("stdout has %d chars, want the first 100", len(got))
	}
	if got := aws.ToString(out.StandardErrorContent); got != strings.Repeat("é", 100) {
		t.Errorf("stderr has %d chars, want the first 100", utf8.RuneCountInString(got))
	}
}

func TestTerminateInstance(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	id := l.shell("", fmt.Sprintf("echo $$ > %s\nexec sleep 30", pidFile), inst3)
	pids := readPIDs(t, pidFile, 1)
	l.waitStatus(id, inst3, types.CommandInvocationStatusInProgress)

	if code, body := l.post("/_lab/instances/" + inst3 + "/terminate"); code != http.StatusOK || !strings.Contains(body, `"stoppedInvocations":1`) {
		t.Fatalf("terminate: %d %s", code, body)
	}
	out := l.waitTerminal(id, inst3)
	if out.Status != types.CommandInvocationStatusFailed || aws.ToString(out.StatusDetails) != detailsUndeliverable {
		t.Errorf("status %q (%s), want Failed (Undeliverable)", out.Status, aws.ToString(out.StatusDetails))
	}
	waitGone(t, pids...)

	_, err := l.send("AWS-RunShellScript", map[string][]string{"commands": {"true"}}, inst3)
	var invalid *types.InvalidInstanceId
	if !errors.As(err, &invalid) {
		t.Errorf("SendCommand to a terminated instance: %v, want InvalidInstanceId", err)
	}
	if code, _ := l.post("/_lab/instances/i-0123456789abcdef0/terminate"); code != http.StatusNotFound {
		t.Errorf("terminate of an unmapped instance: %d, want 404", code)
	}
	if code, body := l.get("/_lab/instances"); code != http.StatusOK || !strings.Contains(body, `{"id":"`+inst3+`","node":"compute-3","terminated":true}`) {
		t.Errorf("instances: %d %s", code, body)
	}
	// Started again, it takes commands again.
	if code, _ := l.post("/_lab/instances/" + inst3 + "/start"); code != http.StatusOK {
		t.Fatalf("start: %d", code)
	}
	cmd := l.shell("10", "echo back", inst3)
	if out := l.waitTerminal(cmd, inst3); !strings.Contains(aws.ToString(out.StandardOutputContent), "back") {
		t.Errorf("after start: %+v", out)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	if code, _ := l.get("/_lab/healthz"); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
}

func TestUnknownOperation(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	_, err := l.client.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{})
	if err == nil || !strings.Contains(err.Error(), codeUnknownOperation) {
		t.Errorf("DescribeInstanceInformation: %v, want %s", err, codeUnknownOperation)
	}
}

func TestCloseCancelsRunningInvocations(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{}
	l := newLab(t, withPublisher(pub))
	pidFile := filepath.Join(t.TempDir(), "pids")
	id := l.shell("", fmt.Sprintf("echo $$ > %s\nexec sleep 30", pidFile), inst1)
	pids := readPIDs(t, pidFile, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.srv.Close(ctx)
	waitGone(t, pids...)
	if out := l.invocation(id, inst1); out.Status != types.CommandInvocationStatusCancelled {
		t.Errorf("status after Close: %q, want Cancelled", out.Status)
	}
	if got := eventStatuses(t, pub.snapshot()); strings.Join(got, ",") != "InProgress,Cancelled" {
		t.Errorf("events %v, want the final Cancelled flushed", got)
	}
	_, err := l.send("AWS-RunShellScript", map[string][]string{"commands": {"true"}}, inst1)
	var internal *types.InternalServerError
	if !errors.As(err, &internal) {
		t.Errorf("SendCommand after Close: %v, want InternalServerError", err)
	}
}

func (l *fixture) get(path string) (int, string) {
	l.t.Helper()
	resp, err := http.Get(l.url + path)
	return l.read(resp, err)
}

func (l *fixture) post(path string) (int, string) {
	l.t.Helper()
	resp, err := http.Post(l.url+path, "application/json", nil)
	return l.read(resp, err)
}

func (l *fixture) read(resp *http.Response, err error) (int, string) {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		l.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
