package rescue

import (
	"time"

	"go.uber.org/zap"
)

// Packing when late. One object per file is the layout users browse (the
// S3 console, Mountpoint for S3), so a plan with PackLate keeps it while
// the rescue can finish that way. Against S3's tens of milliseconds per
// request, though, tens of thousands of small files can outlast a
// two-minute warning, and a pack object holds a thousand of them for one
// request. So, once a second, the session compares the small files not yet
// started with the rate at which files have been saved so far; when that
// rate would not save them before the soft deadline (with a margin), the
// rest of the small files go into packs. The switch is one-way and
// logged; the manifest says which files are packed, and a restore reads
// both layouts.

// lateMargin is the share of the time left that the small files left must
// fit in at the rate so far.
const lateMargin = 0.7

// startPacing readies the switch: it counts the small files to come.
func (s *session) startPacing(queue []upload) {
	s.packing.Store(s.plan.Pack)
	s.runStarted = s.agent.now()
	if !s.plan.PackLate || s.plan.Pack {
		return
	}
	var small int64
	for _, u := range queue {
		if u.size < s.packLimit() {
			small++
		}
	}
	s.smallLeft.Store(small)
}

// handedOut notes that a file was handed to a worker.
func (s *session) handedOut(u upload) {
	if u.size < s.packLimit() {
		s.smallLeft.Add(-1)
	}
}

// pace switches to packs when the rate so far says the small files left
// would miss the soft deadline as objects of their own.
func (s *session) pace() {
	if !s.plan.PackLate || s.packing.Load() {
		return
	}
	now := s.agent.now()
	elapsed, left := now.Sub(s.runStarted), s.smallLeft.Load()
	if elapsed < time.Second || left <= 0 {
		return
	}
	rate := float64(s.done.files.Load()) / elapsed.Seconds()
	if rate == 0 && elapsed < 3*time.Second {
		return // nothing finished yet (large files first, a slow start): no rate to judge by
	}
	remaining := s.d.Soft.Sub(now)
	fields := []zap.Field{zap.Int64("small_files_left", left), zap.Float64("files_per_second", rate), zap.Duration("time_left", remaining.Round(time.Millisecond))}
	if rate > 0 {
		need := time.Duration(float64(left) / rate * float64(time.Second))
		if need <= time.Duration(lateMargin*float64(remaining)) {
			return
		}
		fields = append(fields, zap.Duration("needed", need.Round(time.Millisecond)))
	}
	s.packing.Store(true)
	s.log.Info("packing the small files left: one object each would miss the deadline", fields...)
}
