package state

import (
	"context"
	"sync"
)

// createConcurrency bounds the conditional writes CreateAll has in flight.
const createConcurrency = 16

// CreateAll creates records as Create does, each only if it is not there
// yet, several at a time. The result holds one error per record: nil,
// ErrExists (also for a key that appears earlier in recs), or what kept it
// from being written.
//
// TransactWriteItems could write up to 100 of them in one call, at twice
// the write capacity. It is not used: moto, which the lab and CI run on,
// copies the whole table for every transaction, seconds each once the
// table holds a few thousand records, so the lab could neither test nor
// measure that path.
func (s *Store) CreateAll(ctx context.Context, recs []*Record) []error {
	errs := make([]error, len(recs))
	seen := map[Key]bool{}
	sem := make(chan struct{}, createConcurrency)
	var wg sync.WaitGroup
	for i, r := range recs {
		if seen[r.Key] {
			errs[i] = ErrExists
			continue
		}
		seen[r.Key] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.Create(ctx, r)
		}()
	}
	wg.Wait()
	return errs
}
