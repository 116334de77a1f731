package controller

import (
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

// intakeStarted and intakeDone bracket the handling of a batch of warnings.
func (c *Controller) intakeStarted() {
	c.mu.Lock()
	c.intake.inFlight++
	c.mu.Unlock()
}

func (c *Controller) intakeDone() {
	c.mu.Lock()
	c.intake.inFlight--
	c.mu.Unlock()
}

// receiverFull notes whether a receiver's last batch was full (now), given
// what it was before (was), and returns now.
func (c *Controller) receiverFull(was, now bool) bool {
	if was == now {
		return now
	}
	c.mu.Lock()
	if now {
		c.intake.fullReceivers++
	} else {
		c.intake.fullReceivers--
	}
	c.mu.Unlock()
	return now
}

// yield says how long the reconcile of rec should wait for the intake, or 0
// to go on now.
func (c *Controller) yield(rec *state.Record) time.Duration {
	if !afterDispatch(rec) {
		return 0
	}
	now := c.Now()
	key := rec.Key.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intake.inFlight == 0 && c.intake.fullReceivers == 0 {
		clear(c.intake.yielded)
		return 0
	}
	// The budget is the record's, over all its steps, until the intake
	// next goes idle.
	since, waited := c.intake.yielded[key]
	if waited && now.Sub(since) >= maxYield {
		return 0
	}
	if !waited {
		c.intake.yielded[key] = now
	}
	c.Metrics.yields.Inc()
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
		for _, n := range rec.Nodes {
			if n.Command == "" {
				return false
			}
		}
		return true
	}
	return false
}
