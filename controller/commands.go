package controller

import (
	"sync"
	"time"
)

// pollEvery is how often SSM is asked about an invocation when no status
// event has settled it; events are the fast path.
const pollEvery = 5 * time.Second

// commands knows which records wait on which SSM command, and what SSM's
// status events said about each invocation: an event wakes the records
// waiting on it, and saves asking SSM.
type commands struct {
	now func() time.Time

	mu      sync.Mutex
	watches map[string]*watch // SSM command id -> who waits on it
}

// watch is what is known of one SSM command in flight.
type watch struct {
	keys   map[string]bool      // records waiting on the command
	status map[string]string    // instance -> last status from an event
	polled map[string]time.Time // instance -> when SSM was last asked
}

// watch notes that the record key waits on command.
func (cs *commands) watch(command, key string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w := cs.watches[command]
	if w == nil {
		w = &watch{keys: map[string]bool{}, status: map[string]string{}, polled: map[string]time.Time{}}
		cs.watches[command] = w
	}
	w.keys[key] = true
}

// forget drops key's interest in command, and the command once nobody waits on it.
func (cs *commands) forget(command, key string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if w := cs.watches[command]; w != nil {
		delete(w.keys, key)
		if len(w.keys) == 0 {
			delete(cs.watches, command)
		}
	}
}

// observe keeps a status seen in an event and returns the keys to wake.
func (cs *commands) observe(command, instance, status string) []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w := cs.watches[command]
	if w == nil {
		return nil
	}
	w.status[instance] = status
	keys := make([]string, 0, len(w.keys))
	for k := range w.keys {
		keys = append(keys, k)
	}
	return keys
}

// observed is the last status an event reported, or "".
func (cs *commands) observed(command, instance string) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if w := cs.watches[command]; w != nil {
		return w.status[instance]
	}
	return ""
}

// pollDue reports whether SSM may be asked about an invocation now: once
// pollEvery has passed since the dispatch and since the last question. It
// notes the question.
func (cs *commands) pollDue(command, instance string, dispatched time.Time) bool {
	now := cs.now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w := cs.watches[command]
	if w == nil {
		return true
	}
	last := w.polled[instance]
	if last.IsZero() {
		last = dispatched
	}
	if now.Sub(last) < pollEvery {
		return false
	}
	w.polled[instance] = now
	return true
}
