package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/notify"
	"github.com/spotrescue/spotrescue/state"
)

// records reads and writes the rescue records, and keeps a copy of each
// record this controller wrote so that the next reconcile starts from it
// without a read: like an informer's cache in Kubernetes. Writes stay
// conditional (on the record's version), so a stale copy fails its write
// with state.ErrConflict and is dropped.
type records struct {
	// store is set before any goroutine starts (see runWithLease) and
	// never changed after.
	store Store
	log   *zap.Logger
	now   func() time.Time
	// notifier hears of every record that reaches Done; nil for none.
	notifier Notifier
	// saved is told of every record that reaches Done, to watch for the
	// run that resumes from its data (savings.watch); nil in tests.
	saved func(*state.Record)

	mu    sync.Mutex
	cache map[string]*state.Record // key -> the copy last written, records not Done
}

// get returns the cached copy of k, or reads it.
func (rs *records) get(ctx context.Context, k state.Key) (*state.Record, error) {
	rs.mu.Lock()
	r, ok := rs.cache[k.String()]
	rs.mu.Unlock()
	if ok {
		return r.Clone(), nil
	}
	return rs.store.Get(ctx, k)
}

// remember keeps copies of records just written.
func (rs *records) remember(recs ...*state.Record) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range recs {
		if r.Phase.Terminal() {
			delete(rs.cache, r.Key.String())
		} else {
			rs.cache[r.Key.String()] = r.Clone()
		}
	}
}

func (rs *records) forget(k state.Key) {
	rs.mu.Lock()
	delete(rs.cache, k.String())
	rs.mu.Unlock()
}

// save writes rec as it is, keeping the cache in step.
func (rs *records) save(ctx context.Context, rec *state.Record) error {
	if err := rs.store.Update(ctx, rec); err != nil {
		rs.forget(rec.Key)
		return err
	}
	rs.remember(rec)
	return nil
}

// advance records that rec reached phase, and when. A conflicting write
// fails the step; the retry starts from a fresh read, and every step is
// idempotent.
func (rs *records) advance(ctx context.Context, rec *state.Record, phase state.Phase) error {
	enter(rec, phase, rs.now())
	if err := rs.save(ctx, rec); err != nil {
		return err
	}
	logFor(rs.log, rec).Info("rescue phase", zap.String("phase", string(phase)))
	if phase == state.Done {
		rs.finished(rec)
	}
	return nil
}

// Notifier tells people about finished rescues; Notify must not block.
type Notifier interface {
	Notify(notify.Notice)
}

// finished hands a record that reached Done to the savings watch and the
// notifier. Only the write
// that made it Done calls this (the writes are conditional), so a rescue is
// told once.
func (rs *records) finished(rec *state.Record) {
	if rs.saved != nil {
		rs.saved(rec)
	}
	if rs.notifier == nil {
		return
	}
	n := notify.Notice{
		Cluster: rec.Cluster, Job: rec.Display, Run: rec.Run, Name: rec.Name, User: rec.User,
		Outcome: string(rec.Outcome), Requeue: rec.Requeue, URI: rec.URI, Files: rec.Files, Bytes: rec.Bytes,
		Errors: rec.Errors, Drill: rec.Drill, Time: rec.Times.Done,
	}
	if n.Job == "" {
		n.Job = rec.JobID
	}
	for _, node := range rec.Nodes {
		n.Nodes = append(n.Nodes, node.Name)
	}
	rs.notifier.Notify(n)
}

// enter moves rec to phase in memory, noting when.
func enter(rec *state.Record, phase state.Phase, now time.Time) {
	now = now.UTC()
	rec.Phase, rec.Attempts = phase, 0
	switch phase {
	case state.Held:
		rec.Times.Held = now
	case state.Dispatched:
		rec.Times.Dispatched = now
	case state.Rescued, state.Partial, state.Failed:
		rec.Times.Finished = now
	case state.Requeued:
		rec.Times.Requeued = now
	case state.Done:
		rec.Times.Done = now
	}
}

// update re-reads and rewrites a record until the write does not conflict.
// change returns false when there is nothing to write.
func (rs *records) update(ctx context.Context, k state.Key, change func(*state.Record) bool) error {
	for range 5 {
		r, err := rs.store.Get(ctx, k)
		if err != nil {
			return err
		}
		if !change(r) {
			return nil
		}
		err = rs.save(ctx, r)
		if !errors.Is(err, state.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("update %s: %w after 5 attempts", k, state.ErrConflict)
}

// saveDispatched writes the SSM commands just sent to rec's nodes (and, if
// first, its move to Dispatched). A SendCommand cannot be taken back, so a
// conflicting write (another warning marking a node of the same job, say)
// is merged into a fresh read instead of failing the step, which would
// dispatch the agents a second time.
func (rs *records) saveDispatched(ctx context.Context, rec *state.Record, first bool) error {
	sent := append([]state.Node(nil), rec.Nodes...)
	for attempt := 0; ; attempt++ {
		var err error
		if first {
			err = rs.advance(ctx, rec, state.Dispatched)
		} else {
			err = rs.save(ctx, rec)
		}
		if !errors.Is(err, state.ErrConflict) || attempt == 4 {
			return err
		}
		fresh, gerr := rs.store.Get(ctx, rec.Key)
		if gerr != nil {
			return gerr
		}
		for _, n := range sent {
			markNode(fresh, n.Name, func(f *state.Node) {
				if f.Command == "" {
					f.Command, f.Status = n.Command, n.Status
				}
			})
		}
		fresh.URI = rec.URI
		*rec = *fresh
	}
}

// count counts the cached records for which f holds.
func (rs *records) count(f func(*state.Record) bool) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.cache {
		if f(r) {
			n++
		}
	}
	return n
}

// instances are the instances of the records being rescued.
func (rs *records) instances() map[string]bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := map[string]bool{}
	for _, r := range rs.cache {
		for _, n := range r.Nodes {
			out[n.Instance] = true
		}
	}
	return out
}

// markNode applies f to the record's node named node; false if it has none
// or f changed nothing.
func markNode(r *state.Record, node string, f func(*state.Node)) bool {
	for i := range r.Nodes {
		if r.Nodes[i].Name == node {
			before := r.Nodes[i]
			f(&r.Nodes[i])
			return r.Nodes[i] != before
		}
	}
	return false
}

// logFor carries the fields every line about a rescue has.
func logFor(log *zap.Logger, rec *state.Record) *zap.Logger {
	var nodes, instances []string
	for _, n := range rec.Nodes {
		if n.Interrupted {
			nodes, instances = append(nodes, n.Name), append(instances, n.Instance)
		}
	}
	return log.With(zap.String("job", rec.JobID), zap.Int("run", rec.Run), zap.Strings("node", nodes),
		zap.Strings("instance", instances), zap.String("event", rec.Event))
}
