package rescue

import (
	"context"
	"fmt"
	"sync"
)

// partPool hands out the buffers file parts are read into. At most n
// part-sized slots exist at once, so the agent's memory is bounded by
// n x size whatever the number and size of the files: a reader that wants
// a buffer when all are in flight waits until an upload returns one
// (back-pressure instead of growth).
type partPool struct {
	size  int64
	slots chan struct{} // one token per part-sized slot in use
	free  chan []byte   // part-sized buffers kept for reuse
	wide  sync.Mutex    // serialises multi-slot requests so two cannot deadlock
}

func newPartPool(size int64, n int) *partPool {
	return &partPool{size: size, slots: make(chan struct{}, n), free: make(chan []byte, n)}
}

// get returns a buffer of length need. need may exceed the part size (the
// parts of a file too big for 10,000 parts of the usual size); such a
// buffer takes several slots and is not kept for reuse.
func (p *partPool) get(ctx context.Context, need int64) ([]byte, error) {
	k := p.slotsFor(need)
	if k > cap(p.slots) {
		return nil, fmt.Errorf("a %d-byte part exceeds the memory budget of %d x %d bytes", need, cap(p.slots), p.size)
	}
	if k > 1 {
		p.wide.Lock()
		defer p.wide.Unlock()
	}
	for i := range k {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			p.release(i)
			return nil, ctx.Err()
		}
	}
	if k > 1 || need < p.size/4 {
		// Wide parts, and small files: a buffer of their own size (counted
		// against a slot all the same), so that thousands of 4 KiB files do
		// not each touch a part-sized buffer.
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
	k := p.slotsFor(int64(cap(b))) // 1 for small and part-sized buffers
	if int64(cap(b)) == p.size {
		select {
		case p.free <- b[:0]:
		default:
		}
	}
	p.release(k)
}

func (p *partPool) release(k int) {
	for range k {
		<-p.slots
	}
}

func (p *partPool) slotsFor(n int64) int {
	return int(max(1, (n+p.size-1)/p.size))
}
