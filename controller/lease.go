package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/state"
)

// High availability: any number of controllers may run on one table and
// queue; the one holding the cluster's lease in DynamoDB acts, the others
// stand by and try to take the lease until its holder stops renewing it.
// The lease's version is the fencing token: the records a holder writes
// carry it, so a deposed holder cannot overwrite what its successor wrote.

// Lease is the cluster's lease in the state table (state.Store).
type Lease interface {
	Acquire(ctx context.Context, cluster, holder string, ttl time.Duration) (int64, error)
	Renew(ctx context.Context, cluster, holder string, version int64, ttl time.Duration) error
	Release(ctx context.Context, cluster, holder string, version int64) error
	SetFence(version int64)
}

// ErrLeaseLost ends Run when another controller took the lease over: the
// process exits and, under systemd, comes back as a standby.
var ErrLeaseLost = errors.New("the lease was taken over by another controller")

// runWithLease stands by until it holds the lease, then acts while it
// keeps it.
func (c *Controller) runWithLease(ctx context.Context) error {
	version, err := c.awaitLease(ctx)
	if err != nil {
		return nil // stopped while standing by
	}
	c.Lease.SetFence(version)
	c.Metrics.leader.Set(1)
	defer c.Metrics.leader.Set(0)
	leading, depose := context.WithCancelCause(ctx)
	defer depose(nil)
	go c.keepLease(leading, depose, version)
	err = c.lead(leading)
	if cause := context.Cause(leading); ctx.Err() == nil && cause != nil {
		return fmt.Errorf("%w: %v", ErrLeaseLost, cause)
	}
	// Stopping: hand the lease over now rather than after its TTL.
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rerr := c.Lease.Release(rctx, c.Cluster, c.Holder, version); rerr != nil {
		c.Log.Warn("cannot release the lease; a standby takes over when it expires", zap.Error(rerr))
	}
	return err
}

// awaitLease tries to take the lease until it does or ctx ends.
func (c *Controller) awaitLease(ctx context.Context) (int64, error) {
	every := min(c.LeaseTTL/5, 2*time.Second)
	logged := false
	for {
		version, err := c.Lease.Acquire(ctx, c.Cluster, c.Holder, c.LeaseTTL)
		if err == nil {
			c.setStandby(false)
			c.Log.Info("lease taken: this controller acts", zap.String("holder", c.Holder), zap.Int64("version", version))
			return version, nil
		}
		c.setStandby(true)
		switch {
		case !errors.Is(err, state.ErrLeaseHeld):
			c.Log.Warn("cannot read or take the lease", zap.Error(err))
		case !logged:
			c.Log.Info("standing by: another controller holds the lease", zap.String("holder", c.Holder), zap.Error(err))
			logged = true
		}
		sleep(ctx, every)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// keepLease renews the lease every third of its TTL. It deposes this
// controller when the lease was taken over, or when it could not be renewed
// for two thirds of the TTL: past that a standby may take it any moment.
func (c *Controller) keepLease(ctx context.Context, depose context.CancelCauseFunc, version int64) {
	t := time.NewTicker(c.LeaseTTL / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.Lease.Renew(ctx, c.Cluster, c.Holder, version, c.LeaseTTL)
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, state.ErrLeaseLost):
			c.deposed.Store(true)
			c.Log.Error("lease taken over: stopping at once", zap.Int64("version", version))
			depose(err)
			return
		case time.Since(renewed) > 2*c.LeaseTTL/3:
			c.deposed.Store(true)
			c.Log.Error("lease not renewed in time: stopping at once", zap.Error(err))
			depose(fmt.Errorf("lease not renewed for %v: %w", time.Since(renewed).Round(time.Millisecond), err))
			return
		default:
			c.Log.Warn("lease renewal failed; retrying", zap.Error(err))
		}
	}
}

func (c *Controller) setStandby(v bool) {
	c.mu.Lock()
	c.standby = v
	c.mu.Unlock()
}

// Standby reports whether the controller waits for another's lease.
func (c *Controller) Standby() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.standby
}
