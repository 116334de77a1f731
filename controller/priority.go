package controller

import (
	"sync"
	"time"

	"github.com/spotrescue/spotrescue/state"
)

// Warnings come first. In a mass reclaim every second the intake spends
// before a dispatch is a second less for a node's data, while a record past
// its dispatch loses nothing by waiting: its agent runs on the node
// regardless, and its job stays held until it is requeued. So while
// warnings are arriving, reconciles of dispatched records step aside for a
// while, leaving Slurm, DynamoDB and SSM to the intake. They never wait
// longer than maxYield in total, so a steady stream of warnings cannot
// starve them.
// The intake counts as busy while it handles warnings, and while a
// receiver's last batch was full: then the queue holds more, and the
// receiver is only fetching them.
const (
	yieldFor = 500 * time.Millisecond
	maxYield = time.Minute
)

// intakeLoad knows whether warnings are arriving, and how long each record
// has stepped aside for them.
type intakeLoad struct {
	now     func() time.Time
	metrics *Metrics

	mu            sync.Mutex
	inFlight      int                  // batches of warnings being handled
	fullReceivers int                  // receivers whose last batch was full
	yielded       map[string]time.Time // record key -> when it first stepped aside
}

// started and done bracket the handling of a batch of warnings.
func (l *intakeLoad) started() {
	l.mu.Lock()
	l.inFlight++
	l.mu.Unlock()
}

func (l *intakeLoad) done() {
	l.mu.Lock()
	l.inFlight--
	l.mu.Unlock()
}

// receiverFull notes whether a receiver's last batch was full (now), given
// what it was before (was), and returns now.
func (l *intakeLoad) receiverFull(was, now bool) bool {
	if was == now {
		return now
	}
	l.mu.Lock()
	if now {
		l.fullReceivers++
	} else {
		l.fullReceivers--
	}
	l.mu.Unlock()
	return now
}

// yield says how long the reconcile of rec should wait for the intake, or 0
// to go on now.
func (l *intakeLoad) yield(rec *state.Record) time.Duration {
	if !afterDispatch(rec) {
		return 0
	}
	now := l.now()
	key := rec.Key.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight == 0 && l.fullReceivers == 0 {
		clear(l.yielded)
		return 0
	}
	// The budget is the record's, over all its steps, until the intake
	// next goes idle.
	since, waited := l.yielded[key]
	if waited && now.Sub(since) >= maxYield {
		return 0
	}
	if !waited {
		l.yielded[key] = now
	}
	l.metrics.yields.Inc()
	return yieldFor
}

// afterDispatch reports whether every agent of rec has been sent: what is
// left is waiting, collecting and requeueing. A node still to be
// dispatched is as urgent as a new warning.
func afterDispatch(rec *state.Record) bool {
	switch rec.Phase {
	case state.Rescued, state.Partial, state.Failed, state.Requeued:
		return true
	case state.Dispatched:
		return sent(rec)
	}
	return false
}
