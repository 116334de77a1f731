//go:build lab

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// Two controllers on one table and queue: the lease holder acts, the other
// stands by and touches nothing; when the holder is killed, the standby
// takes over within the lease's TTL and rescues the next warning.
func TestHighAvailability(t *testing.T) {
	e := setup(t)
	const ttl = 6 * time.Second
	first, firstNode := e.submit("")
	second, secondNode := e.submit("", "--exclude", firstNode)

	a := e.startController("--controller-lease-ttl", ttl.String())
	b := e.launchController(nil, "--controller-lease-ttl", ttl.String())
	lab.Eventually(t, 20*time.Second, "the second controller standing by", func() bool {
		code, body := b.readyz()
		return code == 503 && strings.Contains(body, "standing by")
	})
	if a.metric(t, "spotrescue_leader") != 1 || b.metric(t, "spotrescue_leader") != 0 {
		t.Fatalf("leader gauges: a %v, b %v", a.metric(t, "spotrescue_leader"), b.metric(t, "spotrescue_leader"))
	}

	e.send(warning(e.Instances[firstNode], time.Now()))
	e.record(first, 0, state.Done, 90*time.Second)
	// Only the holder received, dispatched and wrote anything.
	for _, op := range []string{"ReceiveMessage", "SendCommand", "PutItem"} {
		if n := b.metric(t, `spotrescue_aws_calls_total{operation="`+op+`",service="`+service(op)+`"}`); n != 0 {
			t.Errorf("the standby made %v %s calls", n, op)
		}
		if n := a.metric(t, `spotrescue_aws_calls_total{operation="`+op+`",service="`+service(op)+`"}`); n == 0 {
			t.Errorf("the holder made no %s call", op)
		}
	}

	a.kill9()
	killed := time.Now()
	lab.Eventually(t, 2*ttl, "the standby taking over", func() bool {
		code, _ := b.readyz()
		return code == 200
	})
	// The lease ran out at most ttl after the last renewal, which was before
	// the kill; the standby tries every ttl/5 (at most 2 s).
	took := time.Since(killed)
	t.Logf("the standby took over %v after the holder was killed (TTL %v)", took.Round(time.Millisecond), ttl)
	if took > ttl+2*time.Second {
		t.Errorf("the standby took over %v after the kill, want within the %v TTL and one try", took, ttl)
	}
	e.send(warning(e.Instances[secondNode], time.Now()))
	rec := e.record(second, 0, state.Done, 90*time.Second)
	if rec.Outcome != state.OutcomeComplete || e.JobField(t, second, "Restarts") != "1" {
		t.Errorf("after the takeover: record %s/%s, restarts %s", rec.Phase, rec.Outcome, e.JobField(t, second, "Restarts"))
	}
	if e.JobField(t, first, "Restarts") != "1" {
		t.Errorf("the first job was requeued %s times, want once", e.JobField(t, first, "Restarts"))
	}
}

func service(op string) string {
	switch op {
	case "ReceiveMessage":
		return "SQS"
	case "SendCommand":
		return "SSM"
	}
	return "DynamoDB"
}
