package slurm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"slurm 22.05.8\n":       {22, 5, 8},
		"slurm-wlm 22.05.8":     {22, 5, 8},
		"slurm 24.05.4":         {24, 5, 4},
		"slurm 23.11.10-1\n":    {23, 11, 10},
		"slurm 23.02.0-0rc1":    {23, 2, 0},
		"slurm-wlm 24.11.1-1ub": {24, 11, 1},
	} {
		got, err := ParseVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "slurm", "slurm 22", "version 1.2"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
	v := Version{23, 2, 7}
	if v.String() != "23.02.7" || !v.AtLeast(23, 2) || !v.AtLeast(22, 5) || v.AtLeast(23, 11) || v.AtLeast(24, 1) {
		t.Errorf("Version %v: String/AtLeast wrong", v)
	}
}

func TestVersionCachedAfterSuccess(t *testing.T) {
	n := 0
	f := &fakeRunner{handle: func(cmd string) ([]byte, error) {
		if n++; n == 1 {
			return nil, failed(cmd, "scontrol: error: Unable to contact slurm controller (connect failure)")
		}
		return []byte("slurm 23.11.4\n"), nil
	}}
	c := New("", WithRunner(f), WithRetry(1, time.Millisecond))
	if _, err := c.Version(context.Background()); err == nil {
		t.Fatal("first Version succeeded")
	}
	for range 3 {
		if v, err := c.Version(context.Background()); err != nil || v != (Version{23, 11, 4}) {
			t.Fatalf("Version = %v, %v", v, err)
		}
	}
	if n != 2 {
		t.Errorf("scontrol --version ran %d times, want 2", n)
	}
}

func TestValidation(t *testing.T) {
	for _, ok := range []string{"1", "125", "4294967293", "123_4", "123_0"} {
		if err := validTarget(ok); err != nil {
			t.Errorf("validTarget(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "0125", "12a", "-1", "1 2", "1;reboot", "4294967294", "99999999999",
		"123_", "_4", "123+1", "123_[1-3]", "$(id)", "１２"} {
		if err := validTarget(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("validTarget(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for _, ok := range []string{"compute-1", "queue1-dy-c5xlarge-12", "ip-10-0-0-1.ec2.internal", "a_b"} {
		if err := validNode(ok); err != nil {
			t.Errorf("validNode(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a b", "a,b", "a[1-2]", "a=b", strings.Repeat("a", 65), "a\n"} {
		if err := validNode(bad); err == nil {
			t.Errorf("validNode(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"USR1": "USR1", "SIGUSR1": "USR1", "term": "TERM", "sigterm": "TERM", "10": "10", "64": "64", "1": "1"} {
		if got, err := normalizeSignal(in); err != nil || got != want {
			t.Errorf("normalizeSignal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-9", "010", "BOGUS", "SIG", "USR1;id", "9 "} {
		if _, err := normalizeSignal(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("normalizeSignal(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	long := strings.Repeat("a,", maxListLen/2)
	long = long[:len(long)-1] + "a"
	for _, ok := range []string{"", "n1", "queue1-dy-c5xlarge-[1-3],queue2-st-m5-1", "a_b.c", "rack[1-2]-n[01-02]", long} {
		if err := validHostlist("excluded node list", ok); err != nil {
			t.Errorf("validHostlist(%q): %v", truncate(ok, 40), err)
		}
	}
	for _, bad := range []string{" n1", "n1 ", "n1 n2", "n1;reboot", "$(id)", "`id`", "n1\n", "n1\x00", "n=1", "ünï", "n[1-", "n1]",
		",n1", "n1,,n2", "n1,", "n[[1]]", "n[]", "n[3-1]", "-n1", ".n", strings.Repeat("a", 65), "n[1-999999999]", long + "a"} {
		err := validHostlist("excluded node list", bad)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "excluded node list") || !strings.Contains(err.Error(), "give node names") {
			t.Errorf("validHostlist(%q) = %v, want ErrInvalid naming the field and the fix", truncate(bad, 40), err)
		}
	}
	if err := validText("c", "rescue phase=held ✓ a=b  c", 100, false); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", " lead", "trail ", "new\nline", "tab\there", "nul\x00", "\xff", strings.Repeat("x", 101)} {
		if err := validText("c", bad, 100, false); !errors.Is(err, ErrInvalid) {
			t.Errorf("validText(%q) = %v", bad, err)
		}
	}
}

// Every encoding a number has had from v0.0.38 to v0.0.41.
func TestNumberEncodings(t *testing.T) {
	for in, want := range map[string]number{
		`5`:                    {5, true},
		`0`:                    {0, true},
		`null`:                 {},
		`"7"`:                  {7, true},
		`""`:                   {},
		`2.0`:                  {2, true},
		`true`:                 {1, true},
		`false`:                {0, true},
		`4294967294`:           {},
		`4294967295`:           {},
		`18446744073709551614`: {},
		`4294901759`:           {4294901759, true},
		`{"set":true,"infinite":false,"number":125}`:  {125, true},
		`{"set":false,"infinite":false,"number":0}`:   {},
		`{"set":true,"infinite":true,"number":0}`:     {},
		`{"set":true,"infinite":false,"number":"12"}`: {12, true},
		`{"number":3}`: {3, true},
	} {
		var n number
		if err := json.Unmarshal([]byte(in), &n); err != nil || n != want {
			t.Errorf("number %s = %+v, %v; want %+v", in, n, err, want)
		}
	}
	for _, bad := range []string{`"x"`, `[1]`, `{"number":"y"}`, `"NaN"`} {
		var n number
		if err := json.Unmarshal([]byte(bad), &n); err == nil {
			t.Errorf("number %s decoded", bad)
		}
	}
	for in, want := range map[string]bool{`true`: true, `false`: false, `1`: true, `0`: false, `null`: false, `"true"`: true} {
		var b flexBool
		if err := json.Unmarshal([]byte(in), &b); err != nil || bool(b) != want {
			t.Errorf("flexBool %s = %v, %v", in, b, err)
		}
	}
}

// One job in each historic encoding decodes to the same Job.
func TestJobEncodingsAgree(t *testing.T) {
	docs := []string{
		// v0.0.38 (22.05)
		`{"meta":{"plugin":{"type":"openapi/v0.0.38"}},"jobs":[{"job_id":9,"array_job_id":0,"array_task_id":null,"het_job_id":0,"het_job_offset":0,"job_state":"RUNNING","priority":17,"requeue":true,"batch_flag":true,"restart_cnt":1,"nodes":"n[1-2]","start_time":1700000100,"submit_time":1700000000,"name":"x","user_name":"u","user_id":5,"excluded_nodes":"n3","node_count":2,"cpus":4,"tres_req_str":"cpu=4,node=2,gres/gpu=8","tres_alloc_str":"cpu=4,node=2,gres/gpu=2"}]}`,
		// early v0.0.39: nulls and plain numbers, requeue as an integer
		`{"meta":{"plugin":{"data_parser":"v0.0.39"}},"jobs":[{"job_id":9,"array_job_id":0,"array_task_id":null,"het_job_id":null,"het_job_offset":null,"job_state":"RUNNING","priority":17,"requeue":1,"batch_flag":true,"restart_cnt":1,"nodes":"n[1-2]","start_time":1700000100,"submit_time":1700000000,"name":"x","user_name":"u","user_id":5,"excluded_nodes":"n3","node_count":2,"cpus":4,"tres_req_str":"cpu=4,node=2,gres/gpu=8","tres_alloc_str":"cpu=4,node=2,gres/gpu=2"}]}`,
		// v0.0.41 (24.05): objects and arrays
		`{"meta":{"plugin":{"data_parser":"data_parser/v0.0.41"}},"jobs":[{"job_id":9,"array_job_id":{"set":true,"infinite":false,"number":0},"array_task_id":{"set":false,"infinite":false,"number":0},"het_job_id":{"set":true,"infinite":false,"number":0},"het_job_offset":{"set":false,"infinite":false,"number":0},"job_state":["RUNNING"],"priority":{"set":true,"infinite":false,"number":17},"requeue":true,"batch_flag":true,"restart_cnt":1,"nodes":"n[1-2]","start_time":{"set":true,"infinite":false,"number":1700000100},"submit_time":{"set":true,"infinite":false,"number":1700000000},"name":"x","user_name":"u","user_id":5,"excluded_nodes":"n3","node_count":{"set":true,"infinite":false,"number":2},"cpus":{"set":true,"infinite":false,"number":4},"tres_req_str":"cpu=4,node=2,gres/gpu=8","tres_alloc_str":"cpu=4,node=2,gres/gpu=2"}]}`,
	}
	var first []Job
	for i, d := range docs {
		jobs, _, err := decodeJobs([]byte(d))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		if i == 0 {
			first = jobs
			if j := jobs[0]; j.ID != "9" || j.Display != "9" || j.Priority != 17 || !j.Requeue || j.Restarts != 1 ||
				!reflect.DeepEqual(j.Nodes, []string{"n1", "n2"}) || j.StartTime.Unix() != 1700000100 ||
				j.ExcNodes != "n3" || j.NodeCount != 2 || j.CPUs != 4 || j.GPUs != 2 {
				t.Fatalf("doc 0 decoded to %+v", j)
			}
			continue
		}
		if !reflect.DeepEqual(jobs, first) {
			t.Errorf("doc %d decoded to %+v, want %+v", i, jobs, first)
		}
	}
}

func TestDecodeJobsRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":          `squeue: error: Invalid job id`,
		"no jobs key":       `{"meta":{}}`,
		"errors only":       `{"errors":[{"error":"Invalid job id specified","error_number":2017}]}`,
		"job without id":    `{"jobs":[{"name":"x"}]}`,
		"bad node list":     `{"jobs":[{"job_id":1,"nodes":"n[1-"}]}`,
		"state is a number": `{"jobs":[{"job_id":1,"job_state":{"a":1}}]}`,
	} {
		if jobs, _, err := decodeJobs([]byte(doc)); err == nil {
			t.Errorf("%s: decoded %+v", name, jobs)
		}
	}
	_, _, err := decodeJobs([]byte(`{"errors":[{"error":"Invalid job id specified"}],"jobs":[]}`))
	if !errors.Is(classify(err), ErrNoJob) {
		t.Errorf("errors-only document: %v, want ErrNoJob", err)
	}
}

func TestJobStates(t *testing.T) {
	type preds struct{ active, finished, completing bool }
	for _, c := range []struct {
		states []string
		state  string
		flags  []string
		want   preds
	}{
		{[]string{"RUNNING"}, "RUNNING", nil, preds{true, false, false}},
		{[]string{"RUNNING", "COMPLETING"}, "RUNNING", []string{"COMPLETING"}, preds{true, false, true}},
		{[]string{"COMPLETING"}, "COMPLETING", []string{"COMPLETING"}, preds{true, false, true}},
		{[]string{"COMPLETED", "COMPLETING"}, "COMPLETED", []string{"COMPLETING"}, preds{true, false, true}},
		{[]string{"CANCELLED"}, "CANCELLED", nil, preds{false, true, false}},
		{[]string{"NODE_FAIL"}, "NODE_FAIL", nil, preds{false, true, false}},
		{[]string{"NODE_FAIL", "REQUEUED"}, "NODE_FAIL", []string{"REQUEUED"}, preds{false, false, false}},
		{[]string{"REQUEUED"}, "REQUEUED", []string{"REQUEUED"}, preds{false, false, false}},
		{[]string{"PENDING", "REQUEUED"}, "PENDING", []string{"REQUEUED"}, preds{false, false, false}},
		{[]string{"PENDING"}, "PENDING", nil, preds{false, false, false}},
		{[]string{"SUSPENDED"}, "SUSPENDED", nil, preds{true, false, false}},
		{[]string{"CONFIGURING"}, "CONFIGURING", []string{"CONFIGURING"}, preds{true, false, false}},
		{[]string{"RUNNING", "CONFIGURING"}, "RUNNING", []string{"CONFIGURING"}, preds{true, false, false}},
		{[]string{"OUT_OF_MEMORY"}, "OUT_OF_MEMORY", nil, preds{false, true, false}},
		{[]string{"TIMEOUT"}, "TIMEOUT", nil, preds{false, true, false}},
		{[]string{"DEADLINE"}, "DEADLINE", nil, preds{false, true, false}},
		{[]string{"BOOT_FAIL"}, "BOOT_FAIL", nil, preds{false, true, false}},
		{[]string{"FAILED", "REQUEUE_HOLD"}, "FAILED", []string{"REQUEUE_HOLD"}, preds{false, false, false}},
		{[]string{"cancelled+completing"}, "CANCELLED", []string{"COMPLETING"}, preds{true, false, true}},
		{nil, "", nil, preds{}},
	} {
		var j Job
		j.setState(c.states)
		got := preds{j.Active(), j.Finished(), j.Completing()}
		if j.State != c.state || !reflect.DeepEqual(j.Flags, c.flags) || got != c.want {
			t.Errorf("%q: state %q flags %q %+v; want %q %q %+v", c.states, j.State, j.Flags, got, c.state, c.flags, c.want)
		}
	}
}

func TestHeld(t *testing.T) {
	for _, c := range []struct {
		reason     string
		prio       int64
		user, held bool
	}{
		{"JobHeldUser", 0, true, true},
		{"JobHeldAdmin", 0, false, true},
		{"launch_failed_requeued_held", 0, false, true},
		{"launch failed requeued held", 0, false, true},
		{"None", 0, false, false}, // a suspended job has priority 0 too
		{"None", 5, false, false},
		{"held_by_someone", 5, false, false},
	} {
		j := Job{Reason: c.reason, Priority: c.prio}
		if j.HeldByUser() != c.user || j.Held() != c.held {
			t.Errorf("%q prio %d: HeldByUser %v Held %v", c.reason, c.prio, j.HeldByUser(), j.Held())
		}
	}
}

func TestNodeStates(t *testing.T) {
	for _, c := range []struct {
		in      []string
		state   string
		flags   []string
		drained bool
	}{
		{[]string{"MIXED", "DRAIN"}, "MIXED", []string{"DRAIN"}, true},
		{[]string{"mixed", "DRAIN"}, "MIXED", []string{"DRAIN"}, true},
		{[]string{"IDLE+DRAIN"}, "IDLE", []string{"DRAIN"}, true},
		{[]string{"DOWN*+DRAIN"}, "DOWN", []string{"NOT_RESPONDING", "DRAIN"}, true},
		{[]string{"IDLE+CLOUD+POWERED_DOWN"}, "IDLE", []string{"CLOUD", "POWERED_DOWN"}, false},
		{[]string{"drained"}, "DRAINED", []string{"DRAINED"}, true},
		{[]string{"ALLOCATED"}, "ALLOCATED", nil, false},
	} {
		var n Node
		n.setState(c.in)
		if n.State != c.state || !reflect.DeepEqual(n.Flags, c.flags) || n.Drained() != c.drained {
			t.Errorf("%q: %q %q %v", c.in, n.State, n.Flags, n.Drained())
		}
	}
}

// A name or comment that itself contains "Key=Value" pairs must not be
// read as fields.
func TestScontrolTextHostileValues(t *testing.T) {
	const rec = "JobId=42 JobName=x JobState=COMPLETED UserId=evil(0) NodeList=other\n" +
		"   UserId=alice(1001) GroupId=alice(1001) MCS_label=N/A\n" +
		"   Priority=99 Nice=0 Account=(null) QOS=(null)\n" +
		"   JobState=RUNNING Reason=None Dependency=(null)\n" +
		"   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0\n" +
		"   NodeList=n1\n" +
		"   AdminComment=JobState=PENDING NodeList=n9 Requeue=0 \n" +
		"   StdOut=/home/a b/out\n\n"
	jobs, err := parseJobsText(rec)
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if j.Name != "x JobState=COMPLETED UserId=evil(0) NodeList=other" || j.State != "RUNNING" || j.User != "alice" ||
		!reflect.DeepEqual(j.Nodes, []string{"n1"}) || !j.Requeue || j.AdminComment != "JobState=PENDING NodeList=n9 Requeue=0" {
		t.Errorf("parsed %+v", j)
	}
	// A newline in a name injecting a line of its own: refuse, do not guess.
	injected := "JobId=42 JobName=x\n   JobState=COMPLETED\n   JobState=RUNNING Reason=None\n"
	if _, err := parseJobsText(injected); err == nil {
		t.Error("duplicate JobState accepted")
	}
	for _, bad := range []string{"garbage\n", "   JobState=RUNNING\n", "JobId=abc JobName=x\n", "JobId=1 JobName=x\n   NodeList=n[\n"} {
		if jobs, err := parseJobsText(bad); err == nil {
			t.Errorf("parseJobsText(%q) = %+v", bad, jobs)
		}
	}
}

func TestSqueueTextRejectsBrokenRecords(t *testing.T) {
	good := strings.Join([]string{"7", "7", "N/A", "N/A", "N/A", "n", "u", "1", "RUNNING", "None", "5", "1", "0", "1",
		"h", "h", "p", "(null)", "N/A", "N/A", "(null)"}, unitSep) + recordSep + "\n"
	if jobs, err := parseSqueue(good); err != nil || len(jobs) != 1 || jobs[0].ID != "7" || jobs[0].Account != "" {
		t.Fatalf("good record: %+v, %v", jobs, err)
	}
	// A name holding the unit separator shifts the columns: refuse.
	shifted := strings.Replace(good, "\x1fn\x1f", "\x1fn\x1fx\x1f", 1)
	for name, bad := range map[string]string{"extra field": shifted, "truncated": good[:20], "bad id": "x" + good[1:]} {
		if jobs, err := parseSqueue(bad); err == nil {
			t.Errorf("%s: %+v", name, jobs)
		}
	}
	if jobs, err := parseSqueue(""); err != nil || len(jobs) != 0 {
		t.Errorf("empty output: %+v, %v", jobs, err)
	}
	// A name that carries a whole forged record for job 9 (COMPLETED, so
	// never requeued), with the column count kept right on every side.
	forged := func(id, state string) string {
		return strings.Join([]string{id, id, "N/A", "N/A", "N/A", "n", "u", "1", state, "None", "5", "1", "0", "1", "h", "h", "p", "a", "N/A", "N/A", "(null)"}, unitSep)
	}
	victim := forged("9", "RUNNING") + recordSep + "\n"
	head := strings.Split(forged("8", "RUNNING"), unitSep)
	name := strings.Join(head[5:], unitSep) + recordSep + "\n" + forged("9", "COMPLETED") + recordSep + "\n" + "10" + strings.Repeat(unitSep+"x", 5)
	attacker := strings.Join(append(head[:5], name), unitSep) + unitSep + strings.Join(head[6:], unitSep) + recordSep + "\n"
	if jobs, err := parseSqueue(attacker); err != nil || len(jobs) != 3 {
		t.Fatalf("the forgery does not parse as 3 records (%v, %v): the test would prove nothing", jobs, err)
	}
	if jobs, err := parseSqueue(victim + attacker); err == nil {
		t.Errorf("a forged second record for job 9 was accepted: %+v", jobs)
	}
}

// runnerFunc builds a Client on a scripted runner with fast retries.
func scripted(t *testing.T, version string, handle func(cmd string) ([]byte, error)) (*Client, *fakeRunner) {
	t.Helper()
	f := &fakeRunner{handle: func(cmd string) ([]byte, error) {
		if cmd == "scontrol --version" {
			return []byte(version), nil
		}
		return handle(cmd)
	}}
	return New("/opt/slurm/bin", WithRunner(f), WithRetry(4, time.Millisecond)), f
}

func TestRetryTransient(t *testing.T) {
	n := 0
	c, f := scripted(t, "slurm 23.11.4", func(cmd string) ([]byte, error) {
		if n++; n < 3 {
			return nil, failed(cmd, "scontrol: error: slurm_receive_msg: Socket timed out on send/recv operation")
		}
		return nil, nil
	})
	if err := c.Requeue(context.Background(), "17_1"); err != nil {
		t.Fatal(err)
	}
	if got := f.Calls(); len(got) != 3 || got[2] != "scontrol requeue 17_1" {
		t.Errorf("calls %q", got)
	}
}

func TestNoRetryOnDefinitiveErrors(t *testing.T) {
	for text, want := range map[string]error{
		"Invalid job id specified for job 17_1":                  ErrNoJob,
		"Job is pending execution for job 17_1":                  ErrAlreadyPending,
		"Requested operation is presently disabled for job 17_1": ErrNotRequeueable,
		"Only batch jobs are accepted or processed for job 17_1": ErrNotRequeueable,
		"Job not heterogeneous job leader for job 17_1":          ErrNotHetLeader,
		"Access/permission denied for job 17_1":                  ErrPermission,
	} {
		c, f := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) { return nil, failed(cmd, text) })
		err := c.Requeue(context.Background(), "17_1")
		if !errors.Is(err, want) || !strings.Contains(err.Error(), text) || !strings.Contains(err.Error(), "requeue job 17_1") {
			t.Errorf("%q: error %v, want %v", text, err, want)
		}
		if calls := f.Calls(); len(calls) != 1 {
			t.Errorf("%q: ran %d times", text, len(calls))
		}
	}
}

func TestRetryGivesUp(t *testing.T) {
	c, f := scripted(t, "slurm 23.02.7", func(cmd string) ([]byte, error) {
		return nil, failed(cmd, "squeue: error: Unable to contact slurm controller (connect failure)")
	})
	_, err := c.Jobs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Unable to contact") {
		t.Fatalf("error %v", err)
	}
	// 4 tries, and no text fallback: slurmctld is unreachable either way.
	if calls := f.Calls(); len(calls) != 5 || calls[4] != "squeue --json --states=all" {
		t.Errorf("calls %q", calls)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	n := 0
	slow := runnerFunc(func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if n++; n == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []byte("slurm 24.05.4\n"), nil
	})
	c := New("", WithRunner(slow), WithTimeout(5*time.Millisecond), WithRetry(3, time.Millisecond))
	if v, err := c.Version(context.Background()); err != nil || v.Major != 24 {
		t.Fatalf("Version = %v, %v", v, err)
	}
	if n != 2 {
		t.Errorf("ran %d times, want 2", n)
	}
}

func TestCallerCancelStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, f := scripted(t, "slurm 23.02.7", func(cmd string) ([]byte, error) {
		cancel()
		return nil, failed(cmd, "Socket timed out on send/recv operation")
	})
	c.delay = time.Hour
	if err := c.Requeue(ctx, "5_1"); err == nil {
		t.Fatal("no error")
	}
	if calls := f.Calls(); len(calls) != 1 {
		t.Errorf("calls %q", calls)
	}
}

type runnerFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

func (f runnerFunc) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return f(ctx, name, args...)
}

// The runner gets the bin dir's program and an argv: no shell, free text
// in one element.
func TestArgv(t *testing.T) {
	var got [][]string
	r := runnerFunc(func(ctx context.Context, name string, args ...string) ([]byte, error) {
		got = append(got, append([]string{name}, args...))
		if len(args) > 0 && args[0] == "--version" {
			return []byte("slurm 22.05.8"), nil
		}
		return nil, nil
	})
	c := New("/opt/slurm/bin", WithRunner(r))
	ctx := context.Background()
	comment := `rescue "phase"=held; $(reboot) ✓ a=b`
	if err := c.SetAdminComment(ctx, "12_3", comment); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, []string{"n1", "n2", "n1"}, "spot interruption = i-0abc ✓"); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(ctx, "12_3", "sigusr1"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPartition(ctx, "12_3", "ondemand"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetExcludedNodes(ctx, "12_3", "queue1-dy-c5xlarge-[1-3],queue2-st-m5-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetExcludedNodes(ctx, "12_3", ""); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"/opt/slurm/bin/scontrol", "update", "jobid=12_3", "admincomment=" + comment},
		{"/opt/slurm/bin/scontrol", "update", "nodename=n1,n2", "state=drain", "reason=spot interruption = i-0abc ✓"},
		{"/opt/slurm/bin/scancel", "--signal=USR1", "--full", "12_3"},
		{"/opt/slurm/bin/scontrol", "update", "jobid=12_3", "partition=ondemand"},
		{"/opt/slurm/bin/scontrol", "update", "jobid=12_3", "ExcNodeList=queue1-dy-c5xlarge-[1-3],queue2-st-m5-1"},
		{"/opt/slurm/bin/scontrol", "update", "jobid=12_3", "ExcNodeList="},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("argv\n got  %q\n want %q", got, want)
	}
}

func TestInvalidArgumentsRunNothing(t *testing.T) {
	c, f := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) { return nil, nil })
	ctx := context.Background()
	errs := []error{
		c.Hold(ctx, "1", "2;id"),
		c.Release(ctx, "0"),
		c.Requeue(ctx, "1 2"),
		c.Signal(ctx, "5", "KILL -9"),
		c.Signal(ctx, "x", "USR1"),
		c.SetAdminComment(ctx, "5", "two\nlines"),
		c.SetPartition(ctx, "5", "a b"),
		c.Drain(ctx, []string{"n1", "n[1-2]"}, "r"),
		c.Drain(ctx, []string{"n1"}, ""),
		c.SetExcludedNodes(ctx, "5", "n1 state=down"),
		c.SetExcludedNodes(ctx, "5", "n1\nn2"),
		c.SetExcludedNodes(ctx, "5", "n[1-"),
		c.SetExcludedNodes(ctx, "5", "n[1-999999999]"),
		c.SetExcludedNodes(ctx, "5 6", "n1"),
	}
	_, err := c.Job(ctx, "5;")
	errs = append(errs, err)
	_, err = c.Node(ctx, "n 1")
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("ran %q", calls)
	}
}

// The last task of an array shares its id with the array: commands given
// that id are rewritten so they do not act on every task. In 24.11's
// recording that record is the array's pending task 3 (tasks 1 and 2 run
// under ids of their own), in every format.
func TestArrayTaskTarget(t *testing.T) {
	ctx := context.Background()
	for _, r := range recordings {
		roles := recordedRoles(t, r)
		arr := roles["array"]
		for _, format := range r.formats {
			t.Run(r.dir+"/"+format, func(t *testing.T) {
				// The reads answer from the recording, the changes succeed.
				writesSucceed := func(cmd string) ([]byte, error, bool) {
					read := cmd == "scontrol --version" || strings.HasPrefix(cmd, "squeue ") || strings.Contains(cmd, " show ")
					return nil, nil, !read
				}
				// The reads: JSON, and the text after it for text/.
				reads := func(cmd ...string) []string {
					if format == "text" {
						return cmd
					}
					return slices.DeleteFunc(cmd, func(c string) bool { return !strings.Contains(c, "--json") })
				}
				c, f := recordedClientWith(t, r.dir, format, writesSucceed)
				if _, err := c.Jobs(ctx); err != nil {
					t.Fatal(err)
				}
				if err := c.Hold(ctx, arr, roles["array_1"], roles["plain"], roles["het"]); err != nil {
					t.Fatal(err)
				}
				if err := c.Requeue(ctx, arr); err != nil {
					t.Fatal(err)
				}
				if err := c.Signal(ctx, arr, "USR1"); err != nil {
					t.Fatal(err)
				}
				want := append(append([]string{"scontrol --version"}, reads("squeue --json --states=all", "squeue "+strings.Join(SqueueTextArgs(), " "))...),
					fmt.Sprintf("scontrol hold %s_3,%s_1,%s,%s", arr, arr, roles["plain"], roles["het"]),
					"scontrol requeue "+arr+"_3", "scancel --signal=USR1 --full "+arr+"_3")
				if got := f.Calls(); !reflect.DeepEqual(got, want) {
					t.Errorf("calls %q, want %q", got, want)
				}
				// Not read before: one lookup first.
				c, f = recordedClientWith(t, r.dir, format, writesSucceed)
				if err := c.Release(ctx, arr); err != nil {
					t.Fatal(err)
				}
				want = append(append([]string{"scontrol --version"}, reads("scontrol --json show job "+arr, "scontrol show job "+arr)...),
					"scontrol release "+arr+"_3")
				if got := f.Calls(); !reflect.DeepEqual(got, want) {
					t.Errorf("calls %q, want %q", got, want)
				}
				// A job slurmctld forgot keeps its id; scontrol reports it.
				c, f = recordedClientWith(t, r.dir, format, writesSucceed)
				if err := c.Requeue(ctx, "999"); err != nil {
					t.Fatal(err)
				}
				if got := f.Calls(); got[len(got)-1] != "scontrol requeue 999" {
					t.Errorf("calls %q", got)
				}
			})
		}
	}
}

func TestHoldPartialFailure(t *testing.T) {
	c, _ := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) {
		return nil, failed(cmd, "Invalid job id specified for job 999999\nslurm_suspend error: Invalid job id specified\n"+
			"Job has already finished for job 11\nslurm_suspend error: Job has already finished")
	})
	err := c.Hold(context.Background(), "4_5", "999999_1", "11_2")
	jes := JobErrors(err)
	if len(jes) != 2 || !errors.Is(err, ErrNoJob) || !errors.Is(err, ErrFinished) {
		t.Fatalf("error %v, job errors %+v", err, jes)
	}
	if jes[0].ID != "999999" || !errors.Is(jes[0], ErrNoJob) || jes[1].ID != "11" || !errors.Is(jes[1], ErrFinished) {
		t.Errorf("job errors %+v %+v", jes[0], jes[1])
	}
}

func TestHoldWholesaleFailureListsEveryJob(t *testing.T) {
	c, _ := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) {
		return nil, failed(cmd, "scontrol: error: Unable to contact slurm controller (connect failure)")
	})
	err := c.Hold(context.Background(), "1_1", "2_1")
	var ids []string
	for _, je := range JobErrors(err) {
		ids = append(ids, je.ID)
	}
	if !reflect.DeepEqual(ids, []string{"1_1", "2_1"}) {
		t.Errorf("failed ids %q (%v)", ids, err)
	}
}

func TestHoldChunks(t *testing.T) {
	var ids []string
	for i := range 1200 {
		ids = append(ids, strconv.Itoa(100000+i)+"_1")
	}
	c, f := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) { return nil, nil })
	if err := c.Hold(context.Background(), ids...); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, call := range f.Calls() {
		list, ok := strings.CutPrefix(call, "scontrol hold ")
		if !ok || len(list) > maxListLen {
			t.Fatalf("call %q (%d bytes)", call[:40], len(list))
		}
		seen = append(seen, strings.Split(list, ",")...)
	}
	if !slices.Equal(seen, ids) || len(f.Calls()) < 3 {
		t.Errorf("%d ids in %d calls", len(seen), len(f.Calls()))
	}
	if err := c.Hold(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestNodeNotFound(t *testing.T) {
	c, _ := scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) { return nil, failed(cmd, "Node nosuch not found") })
	if _, err := c.Node(context.Background(), "nosuch"); !errors.Is(err, ErrNoNode) {
		t.Errorf("error %v", err)
	}
	c, _ = scripted(t, "slurm 22.05.8", func(cmd string) ([]byte, error) {
		return nil, failed(cmd, "slurm_update error: Invalid node name specified")
	})
	if err := c.Drain(context.Background(), []string{"nosuch"}, "x"); !errors.Is(err, ErrNoNode) {
		t.Errorf("error %v", err)
	}
}

func TestJobsFallsBackWhenJSONIsBroken(t *testing.T) {
	c, f := fixtureClient(t, "22.05", func(cmd string) ([]byte, error, bool) {
		if cmd == "squeue --json --states=all" {
			return []byte(`{"meta":{},"jobs":[{"job_id":"what"`), nil, true
		}
		return nil, nil, false
	})
	jobs, err := c.Jobs(context.Background())
	if err != nil || len(jobs) != 14 {
		t.Fatalf("%d jobs, %v", len(jobs), err)
	}
	if calls := f.Calls(); calls[len(calls)-1] != "squeue -h -t all -O "+squeueFormat() {
		t.Errorf("calls %q", calls)
	}
}

func TestJobErrorsParsing(t *testing.T) {
	jes, ok := jobErrors("2_1-3: Invalid partition name specified\nInvalid job id specified for job 99\n")
	if !ok || len(jes) != 2 || jes[0].ID != "2_1-3" || jes[1].ID != "99" || !errors.Is(jes[1], ErrNoJob) {
		t.Errorf("%+v %v", jes, ok)
	}
	if _, ok := jobErrors("scontrol: error: Socket timed out on send/recv operation"); ok {
		t.Error("unattributable line attributed")
	}
}

// Output nobody can read is a clear error, and the raw text is in the
// debug log for the operator.
func TestUnreadableOutputIsLoggedRaw(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	f := &fakeRunner{handle: func(cmd string) ([]byte, error) {
		if cmd == "scontrol --version" {
			return []byte("slurm 22.05.8\n"), nil
		}
		return []byte(`{"meta": {}, "jobs": "surprise"}`), nil
	}}
	c := New("/opt/slurm/bin", WithRunner(f), WithLogger(zap.New(core)), WithRetry(1, time.Millisecond))
	_, err := c.Jobs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "squeue") {
		t.Fatalf("err = %v, want an error naming squeue", err)
	}
	found := false
	for _, e := range logs.FilterMessage("slurm output not understood").All() {
		found = found || strings.Contains(fmt.Sprint(e.ContextMap()["raw"]), "surprise")
	}
	if !found {
		t.Error("the raw output is not in the debug log")
	}
}

func TestGPUsOf(t *testing.T) {
	for in, want := range map[string]int{
		"":                                 0,
		"(null)":                           0,
		"cpu=4,mem=1000M,node=1,billing=4": 0,
		"cpu=4,mem=1000M,node=1,billing=4,gres/gpu=2": 2,
		"gres/gpu=1":                                          1,
		"cpu=8,gres/gpu:a100=2":                               2,
		"cpu=8,gres/gpu:a100=2,gres/gpu:t4=1":                 3,
		"cpu=8,gres/gpu=3,gres/gpu:a100=2,gres/gpu:t4=1":      3, // the total, not 6
		"gres/gpu:a100=2,gres/gpu=2":                          2,
		"gres/gpu=4,gres/gpumem=40G,gres/gpuutil=100":         4,
		"gres/gpumem=40G,gres/gpuutil=100,gres/gpu:a100=1":    1,
		"gres/shard=8,gres/mps=100,license/x=1":               0,
		"cpu=1, gres/gpu=2":                                   2,
		"gres/gpu=-3":                                         0,
		"gres/gpu=x":                                          0,
		"gres/gpu=":                                           0,
		"gres/gpu":                                            0,
		"gres/gpu=2K":                                         0,
		"gres/gpu=0x10":                                       0,
		"gres/gpu=99999999999":                                1 << 20,
		"gres/gpu=99999999999999999999999":                    0,
		"gres/gpu:a=1048576,gres/gpu:b=1048576,gres/gpu:c=9":  1 << 20,
		"gres/gpu=2,gres/gpu=5":                               2, // the first total
		"GRES/GPU=2":                                          0,
		"gres/gpu:a100=-1,gres/gpu:t4=2":                      2,
		",,,=,gres/gpu=1,":                                    1,
		strings.Repeat("gres/gpu:x=1048576,", 1000) + "cpu=1": 1 << 20,
	} {
		if got := gpusOf(in); got != want {
			t.Errorf("gpusOf(%q) = %d, want %d", truncate(in, 60), got, want)
		}
	}
}

// Counts are bounded and never negative, whatever their encoding.
func TestHostileCounts(t *testing.T) {
	for in, want := range map[string][2]int{
		`"node_count":-1,"cpus":-5`:                                          {0, 0},
		`"node_count":99999999999,"cpus":"4294967293"`:                       {1 << 20, 1 << 20},
		`"node_count":{"set":true,"infinite":true,"number":0},"cpus":null`:   {0, 0},
		`"node_count":4294967294,"cpus":{"set":false,"number":7}`:            {0, 0},
		`"node_count":{"set":true,"infinite":false,"number":"3"},"cpus":2.0`: {3, 2},
	} {
		jobs, _, err := decodeJobs([]byte(`{"jobs":[{"job_id":1,` + in + `}]}`))
		if err != nil || jobs[0].NodeCount != want[0] || jobs[0].CPUs != want[1] {
			t.Errorf("%s: %+v, %v; want %v", in, jobs, err, want)
		}
	}
	for in, want := range map[string]int{
		"1": 1, "2-2": 2, "1-4": 1, "": 0, "N/A": 0, "-1": 0, "x-3": 0, "3x": 0,
		"99999999999": 1 << 20, "99999999999999999999999": 0, "+4": 0,
	} {
		if got := firstCount(in); got != want {
			t.Errorf("firstCount(%q) = %d, want %d", in, got, want)
		}
	}
}

// Slurm changes a job's excluded nodes only while it is pending; its
// refusals are sentinels, never retried.
func TestSetExcludedNodesRefusals(t *testing.T) {
	for text, want := range map[string]error{
		"Job is no longer pending execution for job 17_1\nslurm_update error: Job is no longer pending execution": ErrNotPending,
		"Invalid node name specified for job 17_1":                                                                ErrNoNode,
		"Invalid job id specified for job 17_1":                                                                   ErrNoJob,
	} {
		c, f := scripted(t, "slurm 24.05.4", func(cmd string) ([]byte, error) { return nil, failed(cmd, text) })
		err := c.SetExcludedNodes(context.Background(), "17_1", "n1")
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "set excluded nodes of job 17_1") {
			t.Errorf("%q: error %v, want %v", text, err, want)
		}
		if errors.Is(err, ErrAlreadyPending) {
			t.Errorf("%q: ErrAlreadyPending", text)
		}
		if calls := f.Calls(); len(calls) != 1 || calls[0] != "scontrol update jobid=17_1 ExcNodeList=n1" {
			t.Errorf("%q: calls %q", text, calls)
		}
	}
}
