package slurm

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Sentinel errors for Slurm's definitive answers. They are matched with
// errors.Is; the returned errors wrap them with the command and Slurm's text.
var (
	// ErrNoJob: slurmctld does not know the job ("Invalid job id specified").
	ErrNoJob = errors.New("slurm: no such job")
	// ErrAlreadyPending: requeue of a job that is already pending, or still
	// being requeued ("Job is pending execution").
	ErrAlreadyPending = errors.New("slurm: job is already pending")
	// ErrNotRequeueable: the job was submitted with --no-requeue ("Requested
	// operation is presently disabled") or is not a batch job ("Only batch
	// jobs are accepted or processed").
	ErrNotRequeueable = errors.New("slurm: job cannot be requeued")
	// ErrFinished: the job has finished, so it cannot be held or released
	// ("Job has already finished").
	ErrFinished = errors.New("slurm: job has already finished")
	// ErrNotPending: the change is allowed only while the job is pending
	// (its partition, its excluded nodes), and the job has started ("Job is
	// no longer pending execution").
	ErrNotPending = errors.New("slurm: job is no longer pending")
	// ErrNotHetLeader: a heterogeneous job is requeued only through its
	// leader, the component with HetJobOffset 0 (its id is Job.HetJobID).
	ErrNotHetLeader = errors.New("slurm: not the heterogeneous job leader")
	// ErrNoNode: slurmctld does not know the node.
	ErrNoNode = errors.New("slurm: no such node")
	// ErrPermission: the caller may not do this ("Access/permission denied").
	ErrPermission = errors.New("slurm: permission denied")
	// ErrInvalid: an argument failed validation and no command was run.
	ErrInvalid = errors.New("slurm: invalid argument")
)

// definitive maps Slurm's messages to sentinels. The texts are those of
// slurm_strerror, which every version since 22.05 prints unchanged.
var definitive = []struct {
	text string
	err  error
}{
	{"Invalid job id specified", ErrNoJob},
	{"Job is pending execution", ErrAlreadyPending},
	{"Job is no longer pending execution", ErrNotPending},
	{"Requested operation is presently disabled", ErrNotRequeueable},
	{"Only batch jobs are accepted or processed", ErrNotRequeueable},
	{"Job has already finished", ErrFinished},
	{"Job/step already completing or completed", ErrFinished},
	{"Job not heterogeneous job leader", ErrNotHetLeader},
	{"Invalid node name specified", ErrNoNode},
	{"Access/permission denied", ErrPermission},
}

// transient are failures to reach slurmctld, or a job in a state transition:
// trying again shortly may well succeed.
var transient = []string{
	"Socket timed out",
	"Unable to contact slurm controller",
	"Zero Bytes were transmitted",
	"Connection refused",
	"Connection reset by peer",
	"Resource temporarily unavailable",
	"Slurm backup controller in standby mode",
	"Job can not be altered now, try again later",
}

// CommandError is a Slurm command that ran and failed, or could not run.
type CommandError struct {
	Cmd    string // base name of the program and its arguments
	Stderr string // what the program printed on stderr, trimmed
	Err    error  // the exec error, or the Runner's error
}

func (e *CommandError) Error() string {
	msg := e.Cmd + ": " + e.Err.Error()
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// JobError is the failure of one job in a command that named several.
type JobError struct {
	ID  string // the job as the command named it
	Msg string // Slurm's message for this job
	Err error  // a sentinel of this package, or nil when none applies
}

func (e *JobError) Error() string { return fmt.Sprintf("job %s: %s", e.ID, e.Msg) }

func (e *JobError) Unwrap() error { return e.Err }

// JobErrors lists the per-job failures inside err (from Hold or Release),
// so a caller can tell which jobs of a batch were not held.
func JobErrors(err error) []*JobError {
	var out []*JobError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if je, ok := err.(*JobError); ok {
			out = append(out, je)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// classify wraps err with the sentinel its text names, if any.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if s := sentinelFor(err.Error()); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

func sentinelFor(text string) error {
	for _, d := range definitive {
		if strings.Contains(text, d.text) {
			return d.err
		}
	}
	if strings.Contains(text, "Node ") && strings.Contains(text, " not found") {
		return ErrNoNode
	}
	return nil
}

func isTransient(text string) bool {
	for _, t := range transient {
		if strings.Contains(text, t) {
			return true
		}
	}
	return false
}

// perJob matches scontrol's per-job lines, "Invalid job id specified for job
// 999999" (hold, release, requeue, update) and "2_1-3: Invalid partition name
// specified" (update).
var (
	perJobSuffix = regexp.MustCompile(`^(.+) for job ([0-9_+\[\]\-%,]+)$`)
	perJobPrefix = regexp.MustCompile(`^([0-9][0-9_+\[\]\-%,]*): (.+)$`)
)

// jobErrors splits the stderr of a multi-job scontrol command into the
// failures of each job. ok is false when a line names no job, since then
// the failure cannot be pinned on particular jobs.
func jobErrors(stderr string) (errs []*JobError, ok bool) {
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "slurm_suspend error:") ||
			strings.HasPrefix(line, "slurm_update error:") {
			continue // scontrol's summary of the lines before it
		}
		if m := perJobSuffix.FindStringSubmatch(line); m != nil {
			errs = append(errs, &JobError{ID: m[2], Msg: m[1], Err: sentinelFor(m[1])})
			continue
		}
		if m := perJobPrefix.FindStringSubmatch(line); m != nil {
			errs = append(errs, &JobError{ID: m[1], Msg: m[2], Err: sentinelFor(m[2])})
			continue
		}
		return nil, false
	}
	return errs, len(errs) > 0
}
