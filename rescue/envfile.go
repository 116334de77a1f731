package rescue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// JobEnv is what the next run of a rescued job is told, through the
// TaskProlog, and what the Prolog restores from.
type JobEnv struct {
	URI    string // SPOT_RESCUE_URI: the rescued run's s3:// prefix
	Status string // SPOT_RESCUE_STATUS: complete, partial or failed
	Run    int    // SPOT_RESCUE_RUN: restart count of the rescued run
	// Nodes are the rescued run's nodes in order, one list per
	// heterogeneous job component (one list for other jobs), so that each
	// node of the next run restores the data of the node at its rank.
	Nodes [][]string
}

// Variable names exported to jobs.
const (
	VarURI     = "SPOT_RESCUE_URI"
	VarStatus  = "SPOT_RESCUE_STATUS"
	VarRun     = "SPOT_RESCUE_RUN"
	VarDir     = "SPOT_RESCUE_DIR"
	VarScratch = "SPOT_RESCUE_SCRATCH"
	varNodes   = "SPOT_RESCUE_NODES"
)

var envValueRe = regexp.MustCompile(`^[A-Za-z0-9/:._,;+=@-]*$`)

// EnvPath is the env file of one job in the spool directory.
func (l Layout) EnvPath(jobID string) string {
	return filepath.Join(l.Spool, "jobs", jobID+".env")
}

// WriteJobEnv writes the env file atomically, owned by the job's user and
// readable by nobody else: the URI tells where another user's data is.
func (l Layout) WriteJobEnv(jobID string, e JobEnv, uid, gid int) error {
	dir := filepath.Join(l.Spool, "jobs")
	// 0711: users can open their own file by name but cannot list others'.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("write env for job %s: %w", jobID, err)
	}
	var b bytes.Buffer
	groups := make([]string, len(e.Nodes))
	for i, g := range e.Nodes {
		groups[i] = strings.Join(g, ",")
	}
	for _, kv := range [][2]string{{VarURI, e.URI}, {VarStatus, e.Status}, {VarRun, strconv.Itoa(e.Run)}, {varNodes, strings.Join(groups, ";")}} {
		if !envValueRe.MatchString(kv[1]) {
			return fmt.Errorf("write env for job %s: %s value %q has characters a shell would interpret", jobID, kv[0], kv[1])
		}
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	return writeFileAtomic(l.EnvPath(jobID), b.Bytes(), 0o400, uid, gid)
}

// ErrNoEnv means the job was never rescued.
var ErrNoEnv = errors.New("no rescue env for job")

// ReadJobEnv reads a job's env file; ErrNoEnv when there is none.
func (l Layout) ReadJobEnv(jobID string) (*JobEnv, error) {
	data, err := os.ReadFile(l.EnvPath(jobID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoEnv
	}
	if err != nil {
		return nil, fmt.Errorf("read env for job %s: %w", jobID, err)
	}
	var e JobEnv
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case VarURI:
			e.URI = v
		case VarStatus:
			e.Status = v
		case VarRun:
			e.Run, _ = strconv.Atoi(v)
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
	if e.URI == "" {
		return nil, fmt.Errorf("read env for job %s: no %s", jobID, VarURI)
	}
	return &e, nil
}
