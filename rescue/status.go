package rescue

// Status is how much of a job's data a rescue, or a restore, got back: what
// the next run's SPOT_RESCUE_STATUS says.
type Status string

// Statuses of a rescue; a restore has the same, and two of its own.
const (
	Complete Status = "complete"
	Partial  Status = "partial"
	Failed   Status = "failed"

	// NothingHere: the restoring node has nothing to get back (the job
	// ran on more nodes than were rescued).
	NothingHere Status = "none"
	// Kept: the scratch directory already held the job's data, at least as
	// new as what was rescued (a run since the rescue used it).
	Kept Status = "kept"
)

// rescued reports whether s is a status a rescue can have.
func (s Status) rescued() bool { return s == Complete || s == Partial || s == Failed }

// HasData reports whether, after a restore with this status, the job's data
// is in its scratch directory.
func (s Status) HasData() bool { return s == Complete || s == Partial || s == Kept }
