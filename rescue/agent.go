package rescue

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
)

// Agent runs on a compute node: it uploads jobs' scratch data (Rescue) and
// brings it back for the next run (Restore).
type Agent struct {
	S3  *s3.Client
	Log *zap.Logger
	// Root is the node's scratch mount; the agent never reads or writes
	// outside it. "{node}" is replaced by the node name.
	Root string
	// Concurrency is how many files move at once.
	Concurrency int
	// PartSize bounds memory: each file in flight buffers at most two parts.
	PartSize int64
	// Progress is how often progress is logged.
	Progress time.Duration
	// Checkpoint is how often an interim manifest (complete: false) is
	// written, so an instance that dies mid-rescue still leaves a truthful record.
	Checkpoint time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) transfer() *transfermanager.Client {
	part := a.PartSize
	if part == 0 {
		part = 8 << 20
	}
	return transfermanager.New(a.S3, func(o *transfermanager.Options) {
		o.PartSizeBytes = part
		o.MultipartUploadThreshold = part
		o.Concurrency = 2
		// Aborting a multipart upload must work even after the deadline
		// cancelled the upload's context: no orphaned parts.
		o.FailTimeout = 5 * time.Second
		// Restores verify each file's whole-content CRC32C from the
		// manifest, which also covers multipart objects.
		o.DisableChecksumValidation = true
	})
}

// root returns the scratch root for node, cleaned.
func (a *Agent) root(node string) string {
	return filepath.Clean(strings.ReplaceAll(a.Root, "{node}", node))
}

// jobDir checks that dir is a real directory inside the node's scratch root
// (not a symlink leading elsewhere) and returns its cleaned path.
func (a *Agent) jobDir(node, dir string) (string, error) {
	root := a.root(node)
	dir = filepath.Clean(dir)
	if !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return "", fmt.Errorf("job directory %s is outside the scratch root %s", dir, root)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("scratch root: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(realDir, realRoot+string(filepath.Separator)) {
		return "", fmt.Errorf("job directory %s resolves to %s, outside the scratch root", dir, realDir)
	}
	return dir, nil
}

// Deadlines are when the agent stops starting files (Soft) and when it
// abandons uploads in flight so the manifest still gets written (Hard).
type Deadlines struct {
	Soft, Hard time.Time
}

// ResolveDeadlines combines the plan's deadline with the instance's own
// notice from IMDS (zero when unreachable), keeping the same safety margin.
func ResolveDeadlines(plan time.Time, margin time.Duration, imds time.Time) Deadlines {
	reclaim := plan.Add(margin)
	if !imds.IsZero() && imds.Before(reclaim) {
		reclaim = imds
	}
	d := Deadlines{Soft: reclaim.Add(-margin), Hard: reclaim.Add(-margin / 3)}
	if plan.Before(d.Soft) {
		d.Soft = plan
	}
	return d
}
