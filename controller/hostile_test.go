package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/controller/slurm"
)

// The hostile-input suite: messages and Slurm output an attacker, a
// misconfiguration or a bug could put in front of the controller, each
// with its documented outcome. testdata/HOSTILE.md is the same list for
// readers (TestHostileDocListsEveryCase keeps the two together).

// outcome is what the controller does with a message.
type outcome int

const (
	// dlq: not deleted, its visibility set to invalidRetry so the redrive
	// policy moves it to the DLQ intact; spotrescue_messages_invalid_total.
	dlq outcome = iota
	// ignored: deleted without action; spotrescue_events_ignored_total{reason}.
	ignored
	// acted: deleted after the event was recorded or applied;
	// spotrescue_events_received_total{kind}.
	acted
	// retried: not deleted and its visibility left alone, so SQS redelivers
	// it after the visibility timeout (and the redrive policy moves it to
	// the DLQ after maxReceiveCount); an error metric names the cause.
	retried
)

func (o outcome) String() string {
	return [...]string{"DLQ", "ignored", "acted on", "left for redelivery"}[o]
}

type hostileCase struct {
	name string
	// setup runs before the message, on a harness with job 101 (alice,
	// running on nodeA) and the node table of newHarness.
	setup func(t *testing.T, h *harness)
	body  func(at time.Time) string
	want  outcome
	// moves are the series that move, besides spotrescue_messages_invalid_total
	// for the DLQ: "ignored/<reason>" and "received/<kind>" (a parsed event
	// counts as received before it is ignored).
	moves []string
	// records is how many new records the message leaves (acted only).
	records int
	check   func(t *testing.T, h *harness)
}

// warningEnv is a Spot warning for instance built from raw JSON pieces, so
// that a case can put anything anywhere.
func rawWarning(id, at, instance string) string {
	return fmt.Sprintf(`{"version":"0","id":%s,"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2",`+
		`"account":"123456789012","time":%s,"region":%q,"resources":[],"detail":{"instance-id":%s,"instance-action":"terminate"}}`,
		id, at, testRegion, instance)
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

func stamp(at time.Time) string { return q(at.UTC().Format(time.RFC3339)) }

func warnWith(replace func(body string) string) func(time.Time) string {
	return func(at time.Time) string { return replace(warningBody("ev-hostile", instA, at)) }
}

// ign and rcv build the series a case moves.
func ign(reason string, kind ...string) []string {
	out := []string{"ignored/" + reason + "+1"}
	for _, k := range kind {
		out = append(out, "received/"+k+"+1")
	}
	slices.Sort(out)
	return out
}

func rcv(kind string) []string { return []string{"received/" + kind + "+1"} }

func hostileCases() []hostileCase {
	warnAt := func(d time.Duration) func(time.Time) string {
		return func(at time.Time) string { return warningBody("ev-hostile", instA, at.Add(d)) }
	}
	withInstance := func(inst string) func(time.Time) string {
		return func(at time.Time) string { return rawWarning(q("ev-hostile"), stamp(at), inst) }
	}
	firstWarning := func(t *testing.T, h *harness) {
		h.c.intake.handle(context.Background(), []sqstypes.Message{message("first", warningBody("ev-first", instA, h.clock.Now()))}, h.clock.Now())
		if !h.queue.wasDeleted("rh-first") || h.store.count() != 1 {
			t.Fatalf("first warning: deleted %v, %d records", h.queue.wasDeleted("rh-first"), h.store.count())
		}
	}
	return []hostileCase{
		// ---- not an EventBridge event: left for the DLQ ----
		{name: "empty body", body: func(time.Time) string { return "" }, want: dlq},
		{name: "not JSON", body: func(time.Time) string { return "hello; rm -rf /" }, want: dlq},
		{name: "truncated JSON", body: func(at time.Time) string { return warningBody("ev-hostile", instA, at)[:90] }, want: dlq},
		{name: "JSON array", body: func(time.Time) string { return `[{"source":"aws.ec2"}]` }, want: dlq},
		{name: "empty JSON object", body: func(time.Time) string { return `{}` }, want: dlq},
		{name: "SNS envelope around the event", body: func(at time.Time) string {
			b, _ := json.Marshal(map[string]string{"Type": "Notification", "Message": warningBody("ev-hostile", instA, at)})
			return string(b)
		}, want: dlq},
		{name: "body over 256 KiB", body: warnWith(func(b string) string {
			return strings.Replace(b, `"version"`, `"pad":"`+strings.Repeat("x", 256<<10)+`","version"`, 1)
		}), want: dlq},
		// ---- wrong types and missing fields ----
		{name: "detail is a string", body: warnWith(func(b string) string {
			return regexp.MustCompile(`"detail":\{[^}]*\}`).ReplaceAllString(b, `"detail":"i-0b662ef9931388ba0"`)
		}), want: dlq},
		{name: "instance id is a number", body: withInstance(`1234567890`), want: dlq},
		{name: "time is a number", body: func(at time.Time) string { return rawWarning(q("ev-hostile"), fmt.Sprint(at.Unix()), q(instA)) }, want: dlq},
		{name: "time without a zone", body: func(at time.Time) string {
			return rawWarning(q("ev-hostile"), q(at.Format("2006-01-02T15:04:05")), q(instA))
		}, want: dlq},
		{name: "no event id", body: func(at time.Time) string { return rawWarning(`""`, stamp(at), q(instA)) }, want: dlq},
		{name: "no instance id", body: withInstance(`""`), want: dlq},
		{name: "unknown instance-action", body: warnWith(func(b string) string { return strings.Replace(b, `"terminate"`, `"explode"`, 1) }), want: dlq},
		{name: "unknown instance state", body: func(at time.Time) string { return stateChangeBody("ev-hostile", instA, "exploded", at) }, want: dlq},
		{name: "SSM command id with shell", body: func(at time.Time) string {
			return commandStatusBody("ev-hostile", "$(reboot)", testDocument, instA, "Success", at)
		}, want: dlq},
		// ---- instance ids built to escape: left for the DLQ ----
		{name: "instance id with shell metacharacters", body: withInstance(q(instA + "; rm -rf /")), want: dlq},
		{name: "instance id with path separators", body: withInstance(q("i-0b662ef9/../../etc/passwd")), want: dlq},
		{name: "instance id with a trailing newline", body: withInstance(q(instA + "\n")), want: dlq},
		{name: "instance id in fullwidth unicode", body: withInstance(q("i-０b662ef9931388ba0")), want: dlq},
		// ---- event ids that would reach records, logs and terminals ----
		{name: "event id with a terminal escape", body: func(at time.Time) string { return rawWarning(q("\x1b]0;owned\x07"), stamp(at), q(instA)) }, want: dlq},
		{name: "event id of 300 bytes", body: func(at time.Time) string { return rawWarning(q(strings.Repeat("e", 300)), stamp(at), q(instA)) }, want: dlq},
		// ---- well-formed, but not for spotrescue: deleted and counted ----
		{name: "unknown detail-type", body: func(at time.Time) string {
			return envelope("ev-hostile", "aws.ec2", "EC2 Spot Instance Request Fulfillment", testRegion, at, map[string]string{"instance-id": instA})
		}, want: ignored, moves: ign("unsupported_kind")},
		{name: "unknown source", body: func(at time.Time) string {
			return envelope("ev-hostile", "custom.attacker", "EC2 Spot Instance Interruption Warning", testRegion, at,
				map[string]string{"instance-id": instA, "instance-action": "terminate"})
		}, want: ignored, moves: ign("unsupported_kind")},
		{name: "event from another region", body: func(at time.Time) string {
			return envelope("ev-hostile", "aws.ec2", "EC2 Spot Instance Interruption Warning", "us-east-1", at,
				map[string]string{"instance-id": instA, "instance-action": "terminate"})
		}, want: ignored, moves: ign("other_region", "spot_interruption")},
		{name: "warning 121 s old (expired)", body: warnAt(-Reclaim - time.Second), want: ignored, moves: ign("expired", "spot_interruption")},
		{name: "warning from 2001", body: func(time.Time) string {
			return warningBody("ev-hostile", instA, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
		}, want: ignored, moves: ign("expired", "spot_interruption")},
		{name: "rebalance recommendation 121 s old (expired)", body: func(at time.Time) string {
			return rebalanceBody("ev-hostile", instA, at.Add(-Reclaim-time.Second))
		}, want: ignored, moves: ign("expired", "rebalance_recommendation")},
		{name: "AWS Health scheduled change whose time has passed", body: func(at time.Time) string {
			return healthBody("ev-hostile", at, at.Add(-time.Minute), instA)
		}, want: ignored, moves: ign("expired", "scheduled_change")},
		{name: "AWS Health scheduled change of a foreign instance", body: func(at time.Time) string {
			return healthBody("ev-hostile", at, at.Add(time.Hour), foreignI)
		}, want: ignored, moves: ign("foreign_instance", "scheduled_change")},
		{name: "terminated state change 121 s old (expired)", setup: firstWarning, body: func(at time.Time) string {
			return stateChangeBody("ev-hostile", instA, "terminated", at.Add(-Reclaim-time.Second))
		}, want: ignored, moves: ign("expired", "state_change")},
		{name: "instance not in the node table", body: func(at time.Time) string { return warningBody("ev-hostile", foreignI, at) }, want: ignored, moves: ign("foreign_instance", "spot_interruption")},
		{name: "drill mark on a foreign instance", body: func(at time.Time) string {
			return strings.Replace(warningBody("ev-hostile", foreignI, at), `"version"`, `"spotrescue-drill":true,"version"`, 1)
		}, want: ignored, moves: ign("foreign_instance", "spot_interruption")},
		{name: "second warning for the instance, new event id", setup: firstWarning, body: warnAt(0), want: ignored, moves: ign("duplicate", "spot_interruption")},
		{name: "same event id, same instance, other content", setup: firstWarning, body: func(at time.Time) string {
			return strings.Replace(warningBody("ev-first", instA, at.Add(-5*time.Second)), `"terminate"`, `"stop"`, 1)
		}, want: ignored, moves: ign("duplicate", "spot_interruption")},
		{name: "state change to running", body: func(at time.Time) string { return stateChangeBody("ev-hostile", instA, "running", at) }, want: ignored, moves: ign("instance_state", "state_change")},
		{name: "terminated with no rescue in flight", body: func(at time.Time) string { return stateChangeBody("ev-hostile", instA, "terminated", at) }, want: ignored, moves: ign("no_rescue_in_flight", "state_change")},
		{name: "SSM status of another document", body: func(at time.Time) string {
			return commandStatusBody("ev-hostile", "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b", "AWS-RunShellScript", instA, "Success", at)
		}, want: ignored, moves: ign("other_document", "command_status")},
		// ---- accepted, by design ----
		{name: "event from another account", body: warnWith(func(b string) string {
			return strings.Replace(b, `"123456789012"`, `"999999999999"`, 1)
		}), want: acted, moves: rcv("spot_interruption"), records: 1},
		{name: "warning dated an hour ahead", body: warnAt(time.Hour), want: acted, moves: rcv("spot_interruption"), records: 1,
			check: func(t *testing.T, h *harness) {
				// A future time never stretches the deadline: it counts from
				// when the warning was received.
				r := h.store.record(t, key("101", 0))
				if want := h.clock.Now().Add(Reclaim - testMargin); !r.Deadline.Equal(want) {
					t.Errorf("deadline %s, want %s", r.Deadline, want)
				}
			}},
		{name: "warning dated 30 s ahead (clock skew)", body: warnAt(30 * time.Second), want: acted, moves: rcv("spot_interruption"), records: 1},
		{name: "unknown fields in envelope and detail", body: warnWith(func(b string) string {
			b = strings.Replace(b, `"version"`, `"zz-new":{"a":[1,null]},"version"`, 1)
			return strings.Replace(b, `"instance-action"`, `"zz":"x","instance-action"`, 1)
		}), want: acted, moves: rcv("spot_interruption"), records: 1},
		{name: "instance id given twice (last wins)", body: func(at time.Time) string {
			return strings.Replace(warningBody("ev-hostile", instA, at), `"instance-id"`, `"instance-id":"`+foreignI+`","instance-id"`, 1)
		}, want: acted, moves: rcv("spot_interruption"), records: 1},
		{name: "same event id reused for another instance", setup: firstWarning, body: func(at time.Time) string {
			return warningBody("ev-first", instB, at)
		}, want: acted, moves: rcv("spot_interruption"), records: 1, check: func(t *testing.T, h *harness) {
			if r := h.store.record(t, key("102", 0)); r.Event != "ev-first" {
				t.Errorf("record of job 102 has event %q", r.Event)
			}
		}},
		{name: "drill mark set by whoever can send to the queue", body: warnWith(func(b string) string {
			return strings.Replace(b, `"version"`, `"spotrescue-drill":true,"version"`, 1)
		}), want: acted, moves: rcv("spot_interruption"), records: 1, check: func(t *testing.T, h *harness) {
			if !h.store.record(t, key("101", 0)).Drill {
				t.Error("record not marked as a drill")
			}
		}},
		{name: "job name with .., newlines, shell and unicode", setup: func(t *testing.T, h *harness) {
			h.slurm.mutate("101", func(j *slurm.Job) { j.Name = hostileName })
		}, body: warnAt(0), want: acted, moves: rcv("spot_interruption"), records: 1, check: checkHostileName},
	}
}

// hostileName is a job name a user may choose.
const hostileName = "../../etc/passwd\n$(rm -rf /) `id` ünï ✓ \u202e\x1b[31m"

// checkHostileName: the name is kept verbatim in the record, for people,
// and reaches neither the scratch path nor an S3 key.
func checkHostileName(t *testing.T, h *harness) {
	t.Helper()
	k := key("101", 0)
	if r := h.store.record(t, k); r.Name != hostileName {
		t.Fatalf("record name %q", r.Name)
	}
	for i := 0; i < 5 && len(h.disp.requests()) == 0; i++ {
		h.reconcile(t, k)
	}
	reqs := h.disp.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d SSM requests", len(reqs))
	}
	job := reqs[0].Job
	if job.Dir != "/scratch/alice/101" || job.Prefix != h.layout.NodePrefix("101", 0, nodeA) {
		t.Errorf("plan dir %q prefix %q", job.Dir, job.Prefix)
	}
	if strings.Contains(fmt.Sprintf("%+v", reqs[0]), "passwd") {
		t.Errorf("the job name reached the request: %+v", reqs[0])
	}
}

type snapshot map[string]float64

func (h *harness) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{"invalid": h.metric(t, "spotrescue_messages_invalid_total")}
	for _, r := range []string{"unsupported_kind", "other_region", "expired", "foreign_instance", "duplicate", "instance_state", "no_rescue_in_flight", "other_document"} {
		s["ignored/"+r] = h.ignored(t, r)
	}
	for _, k := range []string{"spot_interruption", "rebalance_recommendation", "state_change", "command_status", "scheduled_change"} {
		s["received/"+k] = h.metric(t, "spotrescue_events_received_total", "kind="+k)
	}
	return s
}

// moved lists the series that changed, as "series+delta".
func (s snapshot) moved(after snapshot) []string {
	var out []string
	for k, v := range after {
		if d := v - s[k]; d != 0 {
			out = append(out, fmt.Sprintf("%s%+g", k, d))
		}
	}
	slices.Sort(out)
	return out
}

func TestHostileMessages(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 30 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := now()
			h := newHarness(t, start, nil, batchJob("101", nodeA), batchJob("102", nodeB))
			if tc.setup != nil {
				tc.setup(t, h)
			}
			records, drained, before := h.store.count(), h.slurm.drainedNodes(), h.snapshot(t)
			held := h.slurm.job("101").Reason
			h.queued()
			body := tc.body(h.clock.Now())
			h.c.intake.handle(context.Background(), []sqstypes.Message{message("m", body)}, h.clock.Now())

			deleted := h.queue.wasDeleted("rh-m")
			vis, visSet := h.queue.visibilityOf("rh-m")
			moved := before.moved(h.snapshot(t))
			want := tc.moves
			if tc.want == dlq {
				want = []string{"invalid+1"}
			}
			if tc.want == dlq || tc.want == retried {
				if deleted {
					t.Errorf("deleted: evidence destroyed")
				}
			} else if !deleted {
				t.Errorf("not deleted")
			}
			if (tc.want == dlq) != (visSet && vis == invalidRetry) {
				t.Errorf("visibility set %v to %d; want it set to %d only for the DLQ", visSet, vis, invalidRetry)
			}
			if !slices.Equal(moved, want) {
				t.Errorf("metrics moved %q, want %q", moved, want)
			}
			if n := h.store.count() - records; n != tc.records {
				t.Errorf("%d new records, want %d", n, tc.records)
			}
			if tc.want != acted {
				if d := h.slurm.drainedNodes(); len(d) != len(drained) {
					t.Errorf("drained %v", d)
				}
				if r := h.slurm.job("101").Reason; r != held {
					t.Errorf("job 101 reason %s, was %s: held", r, held)
				}
				// A duplicate may wake the records it duplicates; nothing
				// else is enqueued.
				if q := h.queued(); len(q) != 0 && tc.setup == nil {
					t.Errorf("enqueued %v", q)
				}
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

// ---- Slurm output, read by the real slurm.Client ----

// scriptRunner answers Slurm commands from a map of command lines, and
// records them.
type scriptRunner struct {
	mu      sync.Mutex
	answers map[string]string // command line (base name and args) -> stdout
	calls   []string
}

func (r *scriptRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	cmd := strings.Join(append([]string{name[strings.LastIndexByte(name, '/')+1:]}, args...), " ")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, cmd)
	for prefix, out := range r.answers {
		if cmd == prefix || strings.HasPrefix(prefix, "~") && strings.HasPrefix(cmd, prefix[1:]) {
			return []byte(out), nil
		}
	}
	return nil, &slurm.CommandError{Cmd: cmd, Stderr: "squeue: error: not scripted", Err: fmt.Errorf("exit status 1")}
}

func (r *scriptRunner) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// squeue2205 is `squeue --json` of Slurm 22.05 (data_parser v0.0.38) with
// job 101 on nodeA, plus extra.
func squeue2205(name, nodes string, unknown bool) string {
	job := map[string]any{
		"job_id": 101, "array_job_id": 0, "array_task_id": nil, "name": name, "user_name": "alice", "user_id": os.Getuid(),
		"job_state": "RUNNING", "state_reason": "None", "nodes": nodes, "batch_host": nodeA, "batch_flag": true,
		"requeue": true, "restart_cnt": 0, "priority": 1000, "partition": "spot", "account": "lab",
		"submit_time": 1764131705, "start_time": 1764131705,
	}
	doc := map[string]any{"meta": map[string]any{"plugin": map[string]any{"type": "openapi/v0.0.38"},
		"Slurm": map[string]any{"version": map[string]any{"major": 22, "minor": 5, "micro": 8}, "release": "22.05.8"}},
		"errors": []any{}, "jobs": []any{job}}
	if unknown {
		job["zz_new_field"] = map[string]any{"set": true, "number": 1}
		job["gres_detail"] = []any{"gpu:a100:8(IDX:0-7)"}
		doc["warnings"] = []any{map[string]any{"description": "added in a future release"}}
		doc["meta"].(map[string]any)["zz"] = "x"
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

// squeue2405 is the same job as Slurm 24.05 prints it (v0.0.41): numbers
// as {"set","infinite","number"} objects and the state as an array.
func squeue2405() string {
	num := func(v int) map[string]any {
		return map[string]any{"set": true, "infinite": false, "number": v, "zz": 0}
	}
	job := map[string]any{
		"job_id": 101, "array_job_id": num(0), "array_task_id": map[string]any{"set": false, "infinite": false, "number": 0},
		"name": "train", "user_name": "alice", "user_id": os.Getuid(), "job_state": []any{"RUNNING"}, "state_reason": "None",
		"nodes": nodeA, "batch_host": nodeA, "batch_flag": true, "requeue": true, "restart_cnt": 0, "priority": num(1000),
		"partition": "spot", "account": "lab", "submit_time": num(1764131705), "start_time": num(1764131705),
		"exit_code": map[string]any{"status": []any{"SUCCESS"}, "return_code": num(0)}, "zz_future": []any{map[string]any{}},
	}
	b, _ := json.Marshal(map[string]any{"meta": map[string]any{"plugin": map[string]any{"data_parser": "data_parser/v0.0.41"},
		"slurm": map[string]any{"version": map[string]any{"major": "24", "minor": "05", "micro": "4"}}},
		"errors": []any{}, "warnings": []any{}, "jobs": []any{job}})
	return string(b)
}

type slurmCase struct {
	name    string
	version string
	squeue  string            // squeue --json output
	nodes   map[string]string // node table override (instance -> node)
	want    outcome
	metric  string // for retried: the slurm_errors command label
	records int
	check   func(t *testing.T, h *harness, calls []string)
}

func slurmCases() []slurmCase {
	return []slurmCase{
		{name: "squeue 22.05 JSON with fields no release prints", version: "slurm 22.05.8", squeue: squeue2205("train", nodeA, true), want: acted, records: 1},
		{name: "squeue 24.05 JSON with fields no release prints", version: "slurm 24.05.4", squeue: squeue2405(), want: acted, records: 1},
		{name: "job name with newline and Key=Value text in squeue JSON", version: "slurm 22.05.8",
			squeue: squeue2205("x\n   ArrayJobId=5 ArrayTaskId=3\nJobId=7 JobName=../../etc", nodeA, false), want: acted, records: 1,
			check: func(t *testing.T, h *harness, calls []string) {
				if r := h.store.record(t, key("101", 0)); r.ArrayJobID != "" || r.Display != "101" {
					t.Errorf("record %+v", r)
				}
				for _, c := range calls {
					if strings.Contains(c, "5_3") || strings.Contains(c, " 7") {
						t.Errorf("command %q addresses another job", c)
					}
				}
			}},
		{name: "node list bomb in squeue output", version: "slurm 22.05.8", squeue: squeue2205("train", "n[1-999999999]", false),
			want: retried, metric: "squeue", check: func(t *testing.T, h *harness, calls []string) {
				for _, c := range calls {
					if strings.HasPrefix(c, "scontrol hold") || strings.HasPrefix(c, "scontrol update") {
						t.Errorf("ran %q", c)
					}
				}
			}},
		{name: "node table names a node ../../x", version: "slurm 22.05.8", squeue: squeue2205("train", nodeA, false),
			nodes: map[string]string{instA: "../../x"}, want: retried, metric: "scontrol update nodename",
			check: func(t *testing.T, h *harness, calls []string) {
				for _, c := range calls {
					if strings.Contains(c, "..") {
						t.Errorf("ran %q", c)
					}
				}
			}},
	}
}

// TestHostileSlurmOutput runs a warning through the controller with the
// real Slurm client reading scripted output.
func TestHostileSlurmOutput(t *testing.T) {
	for _, tc := range slurmCases() {
		t.Run(tc.name, func(t *testing.T) {
			start := now()
			h := newHarness(t, start, nil)
			if tc.nodes != nil {
				h.nodes.byInstance = tc.nodes
			}
			r := &scriptRunner{answers: map[string]string{
				"scontrol --version":         tc.version,
				"squeue --json --states=all": tc.squeue,
				"~scontrol hold ":            "",
				"~scontrol update nodename=": "",
				"~scontrol release ":         "",
				"~scancel --signal":          "",
				"~scontrol update jobid=":    "",
			}}
			h.deps.Slurm = slurm.New("/opt/slurm/bin", slurm.WithRunner(r), slurm.WithRetry(1, time.Millisecond))
			h.rebuild(t)
			before := h.snapshot(t)
			h.c.intake.handle(context.Background(), []sqstypes.Message{message("m", warningBody("ev-hostile", instA, start))}, start)

			deleted := h.queue.wasDeleted("rh-m")
			_, visSet := h.queue.visibilityOf("rh-m")
			switch tc.want {
			case acted:
				if !deleted || h.store.count() != tc.records {
					t.Errorf("deleted %v, %d records; want deleted and %d", deleted, h.store.count(), tc.records)
				}
			case retried:
				if deleted || visSet || h.store.count() != 0 {
					t.Errorf("deleted %v, visibility set %v, %d records; want it left for redelivery", deleted, visSet, h.store.count())
				}
				if got := h.metric(t, "spotrescue_slurm_errors_total", "command="+tc.metric); got != 1 {
					t.Errorf("slurm_errors{command=%q} = %v, want 1", tc.metric, got)
				}
			}
			if moved := before.moved(h.snapshot(t)); !slices.Equal(moved, []string{"received/spot_interruption+1"}) {
				t.Errorf("metrics moved %q", moved)
			}
			if tc.check != nil {
				tc.check(t, h, r.ran())
			}
		})
	}
}

// TestHostileDocListsEveryCase keeps testdata/HOSTILE.md, the table the
// security notes link to, in step with the cases above.
func TestHostileDocListsEveryCase(t *testing.T) {
	doc, err := os.ReadFile("testdata/HOSTILE.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range hostileCases() {
		row := fmt.Sprintf("| %s | %s |", tc.name, tc.want)
		if !strings.Contains(string(doc), row) {
			t.Errorf("HOSTILE.md has no row starting %q", row)
		}
	}
	for _, tc := range slurmCases() {
		row := fmt.Sprintf("| %s | %s |", tc.name, tc.want)
		if !strings.Contains(string(doc), row) {
			t.Errorf("HOSTILE.md has no row starting %q", row)
		}
	}
}
