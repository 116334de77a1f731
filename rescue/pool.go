package rescue

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// partPool hands out the buffers file data is read into, within a budget
// of bytes: the agent's memory for file data is bounded by the budget
// whatever the number and size of the files, and however many requests
// are in flight. A reader that wants more than is left waits until an
// upload gives some back (back-pressure instead of growth).
//
// Buffers are charged at their capacity. Part-sized buffers (and those of
// files between a quarter of a part and a part) come from a free list and
// cost a whole part; smaller files get a buffer of their own size and cost
// only that, so a hundred 4 KiB files in flight take 400 KiB, not a
// hundred parts.
type partPool struct {
	size   int64
	budget int64
	sem    *semaphore.Weighted
	free   chan []byte // part-sized buffers kept for reuse
}

// newPartPool budgets n buffers of size bytes.
func newPartPool(size int64, n int) *partPool {
	budget := size * int64(n)
	return &partPool{size: size, budget: budget, sem: semaphore.NewWeighted(budget), free: make(chan []byte, n)}
}

// get returns a buffer of length need. need may exceed the part size (the
// parts of a file too big for 10,000 parts of the usual size); such a
// buffer is charged its size and not kept for reuse.
func (p *partPool) get(ctx context.Context, need int64) ([]byte, error) {
	capacity := need
	if need >= p.size/4 && need <= p.size {
		capacity = p.size
	}
	if capacity > p.budget {
		return nil, fmt.Errorf("a %d-byte part exceeds the memory budget of %d bytes", need, p.budget)
	}
	if err := p.sem.Acquire(ctx, capacity); err != nil {
		return nil, err
	}
	if capacity != p.size {
		return make([]byte, need), nil
	}
	select {
	case b := <-p.free:
		return b[:need], nil
	default:
		return make([]byte, need, p.size), nil
	}
}

// put gives back a buffer from get.
func (p *partPool) put(b []byte) {
	if int64(cap(b)) == p.size {
		select {
		case p.free <- b[:0]:
		default:
		}
	}
	p.sem.Release(int64(cap(b)))
}
