// Package rescue moves a job's scratch data off a Spot node and back: the
// controller side writes per-node plans and dispatches the agent through SSM
// Run Command; the agent side (run on the node) uploads the scratch data
// with a manifest, and restores it for the job's next run.
//
// Everything the agent needs is in files under the shared spool directory,
// written by the controller, so that no event, job, user or path data ever
// appears on a command line.
package rescue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Plan tells the agent on one instance what to save and where.
type Plan struct {
	ID       string    `json:"id"`
	Instance string    `json:"instance"`
	Node     string    `json:"node"`
	Cluster  string    `json:"cluster"`
	Region   string    `json:"region"`
	Bucket   string    `json:"bucket"`
	Deadline time.Time `json:"deadline"` // stop starting new files at this time
	Reclaim  time.Time `json:"reclaim"`  // when EC2 takes the instance back
	Jobs     []PlanJob `json:"jobs"`
	// Priority lists glob patterns of files to save first, in order; the
	// rest follow newest first (see ValidPriority for the syntax). Empty:
	// the agent's own list, if any, else newest first.
	Priority []string `json:"priority,omitempty"`
	// Checksum is the whole-file checksum recorded in the manifest and
	// verified on restore: CRC32C (the default when empty) or SHA256.
	Checksum string `json:"checksum,omitempty"`
	// Presync asks for an incremental copy ahead of an interruption (on a
	// Rebalance Recommendation): no deadline, a manifest with complete
	// false and presync true. A later rescue of the same prefix sends only
	// what changed since.
	Presync bool `json:"presync,omitempty"`
	// Pack stores files below a quarter of the part size (2 MiB by
	// default) together in pack objects of up to one part, recorded in the
	// manifest by pack and offset, instead of one object each: many times
	// fewer requests for many small files, which is what bounds a rescue's
	// speed on them. Such files are then not objects of their own under
	// the node prefix (a restore, or a ranged GET, gets them back).
	Pack bool `json:"pack,omitempty"`
	// PackLate keeps one object per file while the rescue can finish that
	// way, and packs the small files left once the rate so far says it
	// cannot (latepack.go). Pack overrides it.
	PackLate bool `json:"pack_late,omitempty"`
}

// PlanJob is one job's part of a plan.
type PlanJob struct {
	JobID  string `json:"job_id"`
	Run    int    `json:"run"`
	Dir    string `json:"dir"`    // the job's scratch directory on this node
	Prefix string `json:"prefix"` // S3 key prefix for this node's data, ending in "/"
	// UID is the job's user: the agent reads the job's files as this user
	// and refuses a directory someone else owns. Absent: the directory's owner.
	UID *int `json:"uid,omitempty"`
}

// subset is the plan for the jobs at idx.
func (p *Plan) subset(idx []int) *Plan {
	q := *p
	q.Jobs = make([]PlanJob, len(idx))
	for k, i := range idx {
		q.Jobs[k] = p.Jobs[i]
	}
	return &q
}

var planIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidPlanID reports whether id matches the SSM document's allowedPattern.
func ValidPlanID(id string) bool { return planIDRe.MatchString(id) }

// NewPlanID returns a fresh random plan id.
func NewPlanID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Layout is where rescued data goes in S3 and where plans and env files go
// in the spool directory.
type Layout struct {
	Bucket  string
	Prefix  string // key prefix from the config, without slashes at the ends
	Cluster string
	Spool   string
}

// RunPrefix is the key prefix of one job run: <prefix>/<cluster>/<job>/run-<n>/.
func (l Layout) RunPrefix(jobID string, run int) string {
	return path.Join(l.Prefix, l.Cluster, jobID, "run-"+strconv.Itoa(run)) + "/"
}

// NodePrefix is the key prefix of one node's data within a run.
func (l Layout) NodePrefix(jobID string, run int, node string) string {
	return l.RunPrefix(jobID, run) + node + "/"
}

// RunURI is the s3:// URI of a run, the value of SPOT_RESCUE_URI.
func (l Layout) RunURI(jobID string, run int) string {
	return "s3://" + l.Bucket + "/" + l.RunPrefix(jobID, run)
}

// ManifestKey is where the agent writes a node's manifest, last.
func ManifestKey(nodePrefix string) string { return nodePrefix + ManifestName }

// ManifestName is the manifest's key below a node prefix. Scratch files
// with this top-level name are skipped so they can never shadow it.
const ManifestName = "_spotrescue/manifest.json"

func (l Layout) planDir(id string) string { return filepath.Join(l.Spool, "plans", id) }

// PlanPath is the file the agent on instance reads for plan id.
func (l Layout) PlanPath(id, instance string) string {
	return filepath.Join(l.planDir(id), instance+".json")
}

// RemovePlan deletes the plan of a command that was never sent, and its
// directory once empty.
func (l Layout) RemovePlan(id, instance string) {
	os.Remove(l.PlanPath(id, instance))
	os.Remove(l.planDir(id)) // fails, harmlessly, while other plans remain
}

// WritePlan stores p where the agent on p.Instance will find it. Plans are
// readable by root only: they name other users' directories.
func (l Layout) WritePlan(p *Plan) error {
	if !ValidPlanID(p.ID) {
		return fmt.Errorf("write plan: invalid id %q", p.ID)
	}
	if err := os.MkdirAll(l.planDir(p.ID), 0o700); err != nil {
		return fmt.Errorf("write plan %s: %w", p.ID, err)
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("write plan %s: %w", p.ID, err)
	}
	return writeFileAtomic(l.PlanPath(p.ID, p.Instance), data, 0o600, -1, -1)
}

// ReadPlan loads the plan for instance and checks it is one we would have written.
func (l Layout) ReadPlan(id, instance string) (*Plan, error) {
	if !ValidPlanID(id) {
		return nil, fmt.Errorf("read plan: invalid id %q", id)
	}
	data, err := os.ReadFile(l.PlanPath(id, instance))
	if err != nil {
		return nil, fmt.Errorf("read plan %s for %s: %w", id, instance, err)
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read plan %s for %s: %w", id, instance, err)
	}
	if p.ID != id || p.Instance != instance {
		return nil, fmt.Errorf("read plan %s for %s: file is for plan %s instance %s", id, instance, p.ID, p.Instance)
	}
	return &p, nil
}

// RemovePlans deletes plan directories older than age and says how many.
func (l Layout) RemovePlans(age time.Duration) (int, error) {
	entries, err := os.ReadDir(filepath.Join(l.Spool, "plans"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean plans: %w", err)
	}
	n := 0
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && e.IsDir() && ValidPlanID(e.Name()) && time.Since(info.ModTime()) > age && os.RemoveAll(l.planDir(e.Name())) == nil {
			n++
		}
	}
	return n, nil
}

// OldEnvFiles lists the jobs whose env file is older than age.
func (l Layout) OldEnvFiles(age time.Duration) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(l.Spool, "jobs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list env files: %w", err)
	}
	var jobs []string
	for _, e := range entries {
		job, ok := strings.CutSuffix(e.Name(), ".env")
		info, err := e.Info()
		if ok && err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > age {
			jobs = append(jobs, job)
		}
	}
	return jobs, nil
}

// RemoveJobEnv deletes a job's env file.
func (l Layout) RemoveJobEnv(jobID string) error {
	if strings.ContainsAny(jobID, "/\x00") || jobID == "" || jobID == "." || jobID == ".." {
		return fmt.Errorf("remove env: %q is not a job id", jobID)
	}
	return os.Remove(l.EnvPath(jobID))
}

// writeFileAtomic writes data to a temporary file beside name and renames it
// into place, so readers see the old file or the new one, never a torn one.
// uid/gid < 0 keep the writer's ownership.
func writeFileAtomic(name string, data []byte, mode os.FileMode, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			f.Close()
			return fmt.Errorf("chown %s: %w", name, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return nil
}
