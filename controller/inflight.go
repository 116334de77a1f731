package controller

import "sync"

// inFlight is the set of instances whose warnings this controller is
// handling right now. SQS delivers at least once, and with several
// receivers two copies of one message can be handled at the same time
// (seen in the burst bench, where moto's SQS handed one message to two
// concurrent receives). The records that mark a warning as a duplicate are
// written only after the agent is dispatched, so the second copy must not
// get that far: it is left for redelivery, by which time the records exist.
type inFlight struct {
	mu  sync.Mutex
	set map[string]bool
}

// claim marks the instance in flight; false means another receiver has it.
func (f *inFlight) claim(instance string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set == nil {
		f.set = map[string]bool{}
	}
	if f.set[instance] {
		return false
	}
	f.set[instance] = true
	return true
}

// release ends the claims on the instances.
func (f *inFlight) release(instances []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range instances {
		delete(f.set, i)
	}
}
