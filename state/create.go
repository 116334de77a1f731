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
// Neither batch API fits: BatchWriteItem cannot be conditional, and a
// TransactWriteItems call fails whole when one condition fails, while a
// batch of warnings routinely holds records that exist already (a
// redelivery, another node of a job being rescued), which must be told
// apart one by one; a transaction also costs twice the write capacity.
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
