package state

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory keeps records in this process only, with the same semantics as
// Store (conditional create, versioned update). A dry-run controller uses
// it so that rehearsing decisions leaves nothing a real controller would
// pick up: no records to resume, no interruption items to mistake for
// duplicates.
type Memory struct {
	mu            sync.Mutex
	records       map[Key]Record
	interruptions map[string]Interruption
	schedules     map[string]Schedule
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{records: map[Key]Record{}, interruptions: map[string]Interruption{}, schedules: map[string]Schedule{}}
}

// Create stores r at version 1, or returns ErrExists.
func (m *Memory) Create(_ context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.records[r.Key]; ok {
		return ErrExists
	}
	r.Version = 1
	m.records[r.Key] = clone(r)
	return nil
}

// CreateAll creates each record as Create does.
func (m *Memory) CreateAll(ctx context.Context, recs []*Record) []error {
	errs := make([]error, len(recs))
	for i, r := range recs {
		errs[i] = m.Create(ctx, r)
	}
	return errs
}

// Update writes r if its version is current, and bumps it.
func (m *Memory) Update(_ context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.records[r.Key]; !ok || cur.Version != r.Version {
		return ErrConflict
	}
	r.Version++
	m.records[r.Key] = clone(r)
	return nil
}

// Get returns a copy of the record, or ErrNotFound.
func (m *Memory) Get(_ context.Context, k Key) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[k]
	if !ok {
		return nil, ErrNotFound
	}
	c := clone(&r)
	return &c, nil
}

// Active lists the keys of cluster's records that are not Done.
func (m *Memory) Active(_ context.Context, cluster string) ([]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Key
	for k, r := range m.records {
		if k.Cluster == cluster && !r.Phase.Terminal() {
			out = append(out, k)
		}
	}
	return out, nil
}

// AwaitingResume returns cluster's records detected since since that
// await a resume (Record.AwaitsResume).
func (m *Memory) AwaitingResume(_ context.Context, cluster string, since time.Time) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Record
	for k, r := range m.records {
		if k.Cluster == cluster && !r.Times.Detected.Before(since) && r.AwaitsResume() {
			c := clone(&r)
			out = append(out, &c)
		}
	}
	return out, nil
}

// Runs returns a job's records, oldest run first.
func (m *Memory) Runs(_ context.Context, cluster, jobID string) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Record
	for k, r := range m.records {
		if k.Cluster == cluster && k.JobID == jobID {
			c := clone(&r)
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Run < out[j].Run })
	return out, nil
}

// PutInterruptions records many interruptions.
func (m *Memory) PutInterruptions(_ context.Context, ins []*Interruption) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range ins {
		c := *in
		c.Jobs = append([]Key(nil), in.Jobs...)
		m.interruptions[in.Instance] = c
	}
	return nil
}

// GetInterruption returns an instance's interruption, or ErrNotFound.
func (m *Memory) GetInterruption(_ context.Context, instance string) (*Interruption, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.interruptions[instance]
	if !ok {
		return nil, ErrNotFound
	}
	return &in, nil
}

// clone copies the slices too: callers mutate the records they get.
func clone(r *Record) Record { return *r.Clone() }

// Exists reports which keys have a record.
func (m *Memory) Exists(_ context.Context, keys []Key) (map[Key]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[Key]bool{}
	for _, k := range keys {
		if _, ok := m.records[k]; ok {
			out[k] = true
		}
	}
	return out, nil
}

// Len reports how many records m holds, Done or not.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}
