// Package naming defines, once, the names spotrescue takes from Slurm and EC2
// and puts into paths, record keys, command arguments and S3 prefixes: job
// ids, node names and hostlists, EC2 instance ids. The controller and the
// compute-node commands both use it, so it depends on nothing of either.
package naming

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// JobID names a Slurm job: its job number, an array task as
// "<array job number>_<task id>", or a heterogeneous job's component as
// "<leader's job number>+<offset>". Records are keyed by the job number
// (a heterogeneous job's leader's); the other forms are what users type.
type JobID string

// maxJob is the largest job number: Slurm's job_id is a uint32 below its
// NO_VAL and INFINITE markers (0xfffffffe, 0xffffffff).
const maxJob = 0xfffffffd

var (
	// A job number has one spelling: no sign, no leading zero.
	numberRe = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)
	// A task id or component offset may be 0.
	indexRe = regexp.MustCompile(`^(0|[1-9][0-9]{0,9})$`)
)

// ParseJobID checks s in any of JobID's forms; the error says what is wrong.
func ParseJobID(s string) (JobID, error) {
	head, tail, sep := s, "", ""
	if i := strings.IndexAny(s, "_+"); i >= 0 {
		head, tail, sep = s[:i], s[i+1:], s[i:i+1]
	}
	if err := JobNumber(head); err != nil {
		return "", err
	}
	if sep != "" && !inRange(indexRe, tail) {
		what := map[string]string{"_": "array task id", "+": "heterogeneous component offset"}[sep]
		return "", fmt.Errorf("job id %q: %s %q is not a number from 0 to %d", s, what, tail, maxJob)
	}
	return JobID(s), nil
}

// JobNumber checks a plain job number, as Slurm's job_id and
// array_job_id are.
func JobNumber(s string) error {
	if !inRange(numberRe, s) {
		return fmt.Errorf("job id %q is not a job number (1 to %d, no leading zero)", s, maxJob)
	}
	return nil
}

// TaskID checks an array task id.
func TaskID(s string) error {
	if !inRange(indexRe, s) {
		return fmt.Errorf("array task id %q is not a number from 0 to %d", s, maxJob)
	}
	return nil
}

// IsNumber reports whether id is a plain job number.
func (id JobID) IsNumber() bool { return JobNumber(string(id)) == nil }

func inRange(re *regexp.Regexp, s string) bool {
	if !re.MatchString(s) {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n <= maxJob
}

// nodeRe is a Slurm node name as ParallelCluster makes them
// ("queue1-dy-c5large-1"): letters, digits, '.', '_' and '-', starting
// with a letter or digit, at most 64 bytes. No '/', so it is safe as a
// path element; no leading '-', so it is never taken for an option.
var nodeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Node checks a Slurm node name.
func Node(name string) error {
	if !nodeRe.MatchString(name) {
		return fmt.Errorf("node name %q is not a Slurm node name (letters, digits, '.', '_', '-'; at most 64)", name)
	}
	return nil
}

// instanceRe is the EC2 instance id format: 8 (old) or 17 hex digits.
var instanceRe = regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)

// ValidInstance reports whether id is an EC2 instance id.
func ValidInstance(id string) bool { return instanceRe.MatchString(id) }
