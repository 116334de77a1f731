package rescue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// JobEnv is what the next run of a rescued job is told, through the
// TaskProlog, and what the Prolog restores from.
type JobEnv struct {
	URI    string // SPOT_RESCUE_URI: the rescued run's s3:// prefix
	Status Status // SPOT_RESCUE_STATUS: Complete, Partial or Failed
	Run    int    // SPOT_RESCUE_RUN: restart count of the rescued run
	// Nodes are the rescued run's nodes in order, one list per
	// heterogeneous job component (one list for other jobs), so that each
	// node of the next run restores the data of the node at its rank.
	Nodes [][]string
	// Time is when EC2 warned (zero in files written before it was kept):
	// the next run's output says it.
	Time time.Time
}

// Variable names exported to jobs.
const (
	VarURI     = "SPOT_RESCUE_URI"
	VarStatus  = "SPOT_RESCUE_STATUS"
	VarRun     = "SPOT_RESCUE_RUN"
	VarDir     = "SPOT_RESCUE_DIR"
	VarScratch = "SPOT_RESCUE_SCRATCH"
	varNodes   = "SPOT_RESCUE_NODES"
	varTime    = "SPOT_RESCUE_TIME"
)

var envValueRe = regexp.MustCompile(`^[A-Za-z0-9/:._,;+=@-]*$`)

// EnvPath is the env file of one job in the spool directory.
func (l Layout) EnvPath(jobID string) string {
	return filepath.Join(l.Spool, "jobs", jobID+".env")
}

// WriteJobEnv writes the env file atomically, root's and read-only to
// everyone: the Prolog (root) restores what it names and the TaskProlog (the
// job's user) exports it, so only root may ever write it. Nothing in it is
// secret: the URI follows from the job id, the nodes are Slurm's.
func (l Layout) WriteJobEnv(jobID string, e JobEnv) error {
	dir := filepath.Join(l.Spool, "jobs")
	// 0711: users can open a file by name but cannot list the directory.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("write env for job %s: %w", jobID, err)
	}
	if err := e.check(); err != nil {
		return fmt.Errorf("write env for job %s: %w", jobID, err)
	}
	var b bytes.Buffer
	for _, kv := range e.pairs() {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	if b.Len() > maxEnvFile {
		return fmt.Errorf("write env for job %s: %d bytes, over the %d a reader accepts", jobID, b.Len(), maxEnvFile)
	}
	return writeFileAtomic(l.EnvPath(jobID), b.Bytes(), 0o444, -1, -1)
}

// maxEnvFile bounds an env file: a 2,500-node job's node list fits many
// times over.
const maxEnvFile = 1 << 20

func (e JobEnv) pairs() [][2]string {
	groups := make([]string, len(e.Nodes))
	for i, g := range e.Nodes {
		groups[i] = strings.Join(g, ",")
	}
	pairs := [][2]string{{VarURI, e.URI}, {VarStatus, string(e.Status)}, {VarRun, strconv.Itoa(e.Run)}, {varNodes, strings.Join(groups, ";")}}
	if !e.Time.IsZero() {
		pairs = append(pairs, [2]string{varTime, e.Time.UTC().Format(time.RFC3339)})
	}
	return pairs
}

// check validates every value, for writers and readers alike.
func (e JobEnv) check() error {
	for _, kv := range e.pairs() {
		if !envValueRe.MatchString(kv[1]) {
			return fmt.Errorf("%s value %q has characters a shell would interpret", kv[0], kv[1])
		}
	}
	if _, _, err := splitURI(e.URI); err != nil {
		return fmt.Errorf("%s: %w", VarURI, err)
	}
	if !e.Status.rescued() {
		return fmt.Errorf("%s %q is not complete, partial or failed", VarStatus, e.Status)
	}
	if e.Run < 0 {
		return fmt.Errorf("%s %d is negative", VarRun, e.Run)
	}
	for _, g := range e.Nodes {
		for _, n := range g {
			if naming.Node(n) != nil {
				return fmt.Errorf("%s: %q is not a node name", varNodes, n)
			}
		}
	}
	return nil
}

// ErrNoEnv means the job was never rescued.
var ErrNoEnv = errors.New("no rescue env for job")

// ReadJobEnv reads a job's env file; ErrNoEnv when there is none. Every
// reader (controller, Prolog, TaskProlog) checks the file before trusting
// it: a regular file, root's, writable by nobody else, of bounded size,
// every value valid, and, when the layout knows the cluster, the URI the
// job's own (a file naming another job's data is refused).
func (l Layout) ReadJobEnv(jobID string) (*JobEnv, error) {
	data, err := readTrusted(l.EnvPath(jobID), maxEnvFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoEnv
	}
	if err != nil {
		return nil, fmt.Errorf("read env for job %s: %w", jobID, err)
	}
	var e JobEnv
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxEnvFile)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case VarURI:
			e.URI = v
		case VarStatus:
			e.Status = Status(v)
		case VarRun:
			if e.Run, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("read env for job %s: %s %q is not a number", jobID, VarRun, v)
			}
		case varTime:
			if e.Time, err = time.Parse(time.RFC3339, v); err != nil {
				return nil, fmt.Errorf("read env for job %s: %s %q is not a time", jobID, varTime, v)
			}
		case varNodes:
			for _, g := range strings.Split(v, ";") {
				if g != "" {
					e.Nodes = append(e.Nodes, strings.Split(g, ","))
				} else {
					e.Nodes = append(e.Nodes, nil)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read env for job %s: %w", jobID, err)
	}
	if e.URI == "" {
		return nil, fmt.Errorf("read env for job %s: no %s", jobID, VarURI)
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("read env for job %s: %w", jobID, err)
	}
	if want := l.RunURI(jobID, e.Run); l.Cluster != "" && !sameRun(e.URI, want, l.Bucket != "") {
		return nil, fmt.Errorf("read env for job %s: %s %s is not the job's (want %s): refused", jobID, VarURI, e.URI, want)
	}
	return &e, nil
}

// sameRun compares a URI with the one the layout gives, bucket included
// when the layout knows it.
func sameRun(got, want string, withBucket bool) bool {
	if withBucket {
		return got == want
	}
	_, g, err1 := splitURI(got)
	_, w, err2 := splitURI(want)
	return err1 == nil && err2 == nil && g == w
}

// readTrusted reads a file only its directory's owner may have written:
// the directory is root's (or, when this process is not root, its own: a
// test run) and writable by nobody else, and the file is a regular file
// (not a symlink) of that owner's, writable by nobody else, of at most max
// bytes.
func readTrusted(name string, max int64) ([]byte, error) {
	var dir syscall.Stat_t
	if err := syscall.Lstat(filepath.Dir(name), &dir); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: filepath.Dir(name), Err: err}
	}
	switch {
	case dir.Mode&syscall.S_IFMT != syscall.S_IFDIR:
		return nil, fmt.Errorf("%s is not a directory", filepath.Dir(name))
	case dir.Uid != 0 && int(dir.Uid) != os.Geteuid(), dir.Mode&0o022 != 0:
		return nil, fmt.Errorf("%s is owned by uid %d with mode %o: not trusted", filepath.Dir(name), dir.Uid, dir.Mode&0o7777)
	}
	owner := dir.Uid
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	switch {
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", name)
	case !ok || st.Uid != owner:
		return nil, fmt.Errorf("%s is owned by uid %d, not root (uid %d, who owns the directory): not trusted", name, st.Uid, owner)
	case info.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("%s is writable by others (mode %s): not trusted", name, info.Mode().Perm())
	case info.Size() > max:
		return nil, fmt.Errorf("%s is %d bytes, over the %d allowed", name, info.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s grew past %d bytes while read", name, max)
	}
	return data, err
}
