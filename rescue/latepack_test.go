package rescue

import (
	"testing"
	"time"

	"go.uber.org/zap"
)

// The switch to packs happens when, and only when, the rate so far would
// not save the small files left within lateMargin of the time left.
func TestPaceSwitchesOnlyWhenLate(t *testing.T) {
	start := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		late     bool // Plan.PackLate
		elapsed  time.Duration
		done     int64
		left     int64
		soft     time.Duration // after start
		switched bool
	}{
		{"too early to judge", true, 500 * time.Millisecond, 0, 1000, 5 * time.Second, false},
		{"on pace", true, 2 * time.Second, 100, 100, 10 * time.Second, false},                // 2 s needed, 8 s left
		{"behind", true, 2 * time.Second, 20, 200, 10 * time.Second, true},                   // 20 s needed
		{"just inside the margin", true, 2 * time.Second, 100, 274, 10 * time.Second, false}, // 5.48 s of 0.7 x 8 s
		{"nothing done yet, wait", true, 2 * time.Second, 0, 10, time.Minute, false},
		{"nothing done after 3 s", true, 3 * time.Second, 0, 10, time.Minute, true},
		{"nothing left", true, 2 * time.Second, 1, 0, 3 * time.Second, false},
		{"not asked to", false, 2 * time.Second, 20, 200, 10 * time.Second, false},
	} {
		now := start.Add(tc.elapsed)
		s := &session{agent: &Agent{Now: func() time.Time { return now }}, plan: &Plan{PackLate: tc.late}, log: zap.NewNop(),
			partSize: DefaultPartSize, runStarted: start, d: Deadlines{Soft: start.Add(tc.soft)}}
		s.done.files.Store(tc.done)
		s.smallLeft.Store(tc.left)
		s.pace()
		if s.packing.Load() != tc.switched {
			t.Errorf("%s: packing %v, want %v", tc.name, s.packing.Load(), tc.switched)
		}
	}
}
