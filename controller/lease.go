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

// Lease is the cluster's lease (StateLease in the binary).
type Lease interface {
	// Acquire takes the lease for ttl, or fails with state.ErrLeaseHeld.
	Acquire(ctx context.Context, cluster, holder string, ttl time.Duration) (LeaseTerm, error)
}

// LeaseTerm is one tenure of the lease. Its Records are the only store a
// controller with a lease writes records through: the writes carry the
// term's version, so none can land over a successor's.
type LeaseTerm interface {
	Version() int64
	Records() Store
	Renew(ctx context.Context, ttl time.Duration) error
	Release(ctx context.Context) error
}

// StateLease is the lease item in the state table.
type StateLease struct{ Table *state.Store }

// Acquire takes the lease in the table.
func (l StateLease) Acquire(ctx context.Context, cluster, holder string, ttl time.Duration) (LeaseTerm, error) {
	t, err := l.Table.Acquire(ctx, cluster, holder, ttl)
	if err != nil {
		return nil, err
	}
	return stateTerm{t}, nil
}

type stateTerm struct{ *state.Term }

func (t stateTerm) Records() Store { return t.Term.Records() }

// ErrLeaseLost ends Run when another controller took the lease over: the
// process exits and, under systemd, comes back as a standby.
var ErrLeaseLost = errors.New("the lease was taken over by another controller")

// runWithLease stands by until it holds the lease, then acts while it
// keeps it.
func (c *Controller) runWithLease(ctx context.Context) error {
	term, err := c.awaitLease(ctx)
	if err != nil {
		return nil // stopped while standing by
	}
	// The records are written through the term from here on, and never
	// otherwise: the binary gives a controller with a lease no other store.
	c.records.store = term.Records()
	c.metrics.leader.Set(1)
	defer c.metrics.leader.Set(0)
	leading, depose := context.WithCancelCause(ctx)
	defer depose(nil)
	go c.keepLease(leading, depose, term)
	err = c.lead(leading)
	if cause := context.Cause(leading); ctx.Err() == nil && cause != nil {
		return fmt.Errorf("%w: %v", ErrLeaseLost, cause)
	}
	// Stopping: hand the lease over now rather than after its TTL.
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rerr := term.Release(rctx); rerr != nil {
		c.log.Warn("cannot release the lease; a standby takes over when it expires", zap.Error(rerr))
	}
	return err
}

// awaitLease tries to take the lease until it does or ctx ends.
func (c *Controller) awaitLease(ctx context.Context) (LeaseTerm, error) {
	every := min(c.opts.LeaseTTL/5, 2*time.Second)
	logged := false
	for {
		term, err := c.lease.Acquire(ctx, c.opts.Cluster, c.opts.Holder, c.opts.LeaseTTL)
		if err == nil {
			c.health.setStandby(false)
			c.log.Info("lease taken: this controller acts", zap.String("holder", c.opts.Holder), zap.Int64("version", term.Version()))
			return term, nil
		}
		c.health.setStandby(true)
		switch {
		case !errors.Is(err, state.ErrLeaseHeld):
			c.log.Warn("cannot read or take the lease", zap.Error(err))
		case !logged:
			c.log.Info("standing by: another controller holds the lease", zap.String("holder", c.opts.Holder), zap.Error(err))
			logged = true
		}
		sleep(ctx, every)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// keepLease renews the lease every third of its TTL, each renewal given no
// longer than that. It deposes this controller when the lease was taken
// over, or when it could not be renewed for two thirds of the TTL: past
// that a standby may take it any moment.
func (c *Controller) keepLease(ctx context.Context, depose context.CancelCauseFunc, term LeaseTerm) {
	t := time.NewTicker(c.opts.LeaseTTL / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, c.opts.LeaseTTL/3)
		err := term.Renew(rctx, c.opts.LeaseTTL)
		cancel()
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, state.ErrLeaseLost):
			c.deposed.Store(true)
			c.log.Error("lease taken over: stopping at once", zap.Int64("version", term.Version()))
			depose(err)
			return
		case time.Since(renewed) > 2*c.opts.LeaseTTL/3:
			c.deposed.Store(true)
			c.log.Error("lease not renewed in time: stopping at once", zap.Error(err))
			depose(fmt.Errorf("lease not renewed for %v: %w", time.Since(renewed).Round(time.Millisecond), err))
			return
		default:
			c.log.Warn("lease renewal failed; retrying", zap.Error(err))
		}
	}
}
