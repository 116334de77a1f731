//go:build lab

package e2e

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

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

// fences reads every record item's version and fence from the test's
// table: what each write left.
func (e *env) fences() map[string][2]int64 {
	e.t.Helper()
	out := map[string][2]int64{}
	pages := dynamodb.NewScanPaginator(e.DynamoDB(), &dynamodb.ScanInput{TableName: aws.String(e.table)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, it := range page.Items {
			pk := it["PK"].(*ddbtypes.AttributeValueMemberS).Value
			if !strings.HasPrefix(pk, "JOB#") {
				continue
			}
			var v [2]int64
			for i, name := range []string{"Version", "Fence"} {
				if n, ok := it[name].(*ddbtypes.AttributeValueMemberN); ok {
					v[i], _ = strconv.ParseInt(n.Value, 10, 64)
				}
			}
			out[pk+"/"+it["SK"].(*ddbtypes.AttributeValueMemberS).Value] = v
		}
	}
	return out
}

// A holder that freezes (SIGSTOP: a GC pause, a frozen VM, a partition)
// past its lease's TTL while it drives a rescue is replaced by the
// standby, which finishes that rescue and rescues a new warning. When the
// frozen holder wakes (SIGCONT) it must write nothing over its
// successor's records, and exit: every record write carries the lease
// version it was made under, and the binary gives a holder no store that
// could write without it.
func TestFrozenHolderWritesNothingWhenItWakes(t *testing.T) {
	e := setup(t)
	const ttl = 3 * time.Second
	first, firstNode := e.submit(",SMALL_FILES=24")
	second, secondNode := e.submit("", "--exclude", firstNode)
	// The agent's uploads crawl, so the first rescue is in flight when its
	// controller freezes.
	e.faults(`[{"service":"s3","operation":"PutObject","latency":"1s"}]`)

	a := e.startController("--controller-lease-ttl", ttl.String())
	b := e.launchController(nil, "--controller-lease-ttl", ttl.String())
	lab.Eventually(t, 20*time.Second, "the second controller standing by", func() bool {
		code, _ := b.readyz()
		return code == 503
	})
	e.send(warning(e.Instances[firstNode], time.Now()))
	e.record(first, 0, state.Dispatched, 30*time.Second)
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	lab.Eventually(t, 3*ttl, "the standby taking over", func() bool {
		code, _ := b.readyz()
		return code == 200
	})
	e.faults(`[]`)
	e.record(first, 0, state.Done, 90*time.Second)
	e.send(warning(e.Instances[secondNode], time.Now()))
	if rec := e.record(second, 0, state.Done, 90*time.Second); rec.Outcome != state.OutcomeComplete {
		t.Errorf("the new holder's rescue: %s", rec.Outcome)
	}

	before := e.fences()
	for k, v := range before {
		if v[1] != 2 {
			t.Errorf("%s: last written with fence %d, want the new holder's lease version 2", k, v[1])
		}
	}
	a.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	exited := make(chan error, 1)
	go func() { exited <- a.wait(4 * ttl) }()
	select {
	case <-exited:
	case <-time.After(5 * ttl):
		t.Fatal("the woken holder did not exit")
	}
	if !strings.Contains(a.log.String(), "lease") || a.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("the woken holder exited %d without saying it lost the lease", a.cmd.ProcessState.ExitCode())
	}
	// The new holder goes on writing (it records the compute saved when
	// a requeued job's next run starts); the woken one must not: every
	// write since carries the new holder's fence.
	after := e.fences()
	for k, v := range after {
		if v[1] != 2 || v[0] < before[k][0] {
			t.Errorf("%s written after the old holder woke: version/fence %v -> %v, want only the new holder's (fence 2) writes", k, before[k], v)
		}
	}
	if e.JobField(t, first, "Restarts") != "1" || e.JobField(t, second, "Restarts") != "1" {
		t.Errorf("restarts: first %s, second %s; want each requeued once", e.JobField(t, first, "Restarts"), e.JobField(t, second, "Restarts"))
	}
}
