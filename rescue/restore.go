package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
)

// RestoreRequest says which rescued data goes where.
type RestoreRequest struct {
	JobID    string
	Node     string // this node, for the scratch root
	From     string // node whose rescued data this node gets (same rank in the node list)
	URI      string // SPOT_RESCUE_URI of the rescued run
	Target   string // the job's scratch directory on this node
	UID, GID int
}

// Restored is the outcome of a restore, kept on the node for the TaskProlog.
type Restored struct {
	JobID  string `json:"job_id"`
	Dir    string `json:"dir"`
	Status string `json:"status"` // complete, partial or failed: the rescued data's state as restored
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	Error  string `json:"error,omitempty"`
}

// Restore downloads the files the manifest lists into a temporary directory
// beside the target, verifies every checksum, and renames the result into
// place, so the job sees all of the data or none of it.
func (a *Agent) Restore(ctx context.Context, req RestoreRequest) (*Restored, error) {
	log := a.Log.With(zap.String("job", req.JobID), zap.String("node", req.Node), zap.String("from", req.From))
	bucket, prefix, err := splitURI(req.URI)
	if err != nil {
		return nil, err
	}
	target, err := a.restoreTarget(req)
	if err != nil {
		return nil, err
	}
	nodePrefix := prefix + req.From + "/"
	m, err := a.readManifest(ctx, bucket, nodePrefix)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(target), ".spotrescue-restore-"+req.JobID+"-")
	if err != nil {
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	defer os.RemoveAll(tmp) // empty after a successful rename
	if err := a.download(ctx, bucket, nodePrefix, m, tmp); err != nil {
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	if err := finishTree(tmp, m, req.UID, req.GID); err != nil {
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	if err := moveInto(tmp, target); err != nil {
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	r := &Restored{JobID: req.JobID, Dir: target, Status: string(statusOf(m)), Files: len(m.Files), Bytes: m.Bytes}
	log.Info("restored", zap.String("dir", target), zap.String("status", r.Status), zap.Int("files", r.Files), zap.Int64("bytes", r.Bytes))
	return r, nil
}

func statusOf(m *Manifest) string {
	if m.Complete {
		return "complete"
	}
	return "partial"
}

// restoreTarget checks the target is inside the node's scratch root.
func (a *Agent) restoreTarget(req RestoreRequest) (string, error) {
	root := a.root(req.Node)
	target := filepath.Clean(req.Target)
	if !strings.HasPrefix(target, root+string(filepath.Separator)) {
		return "", fmt.Errorf("restore job %s: target %s is outside the scratch root %s", req.JobID, target, root)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	return target, nil
}

func splitURI(uri string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	bucket, prefix, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || bucket == "" || !strings.HasSuffix(prefix, "/") {
		return "", "", fmt.Errorf("%q is not an s3://bucket/prefix/ URI", uri)
	}
	return bucket, prefix, nil
}

func (a *Agent) readManifest(ctx context.Context, bucket, nodePrefix string) (*Manifest, error) {
	return ReadManifest(ctx, a.S3, bucket, nodePrefix)
}

// ErrNoManifest means nothing was saved under a prefix (or not even a checkpoint).
var ErrNoManifest = errors.New("no manifest")

// ReadManifest fetches and checks the manifest under a node prefix.
func ReadManifest(ctx context.Context, c *s3.Client, bucket, nodePrefix string) (*Manifest, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(ManifestKey(nodePrefix))})
	if err != nil {
		var nsk interface{ ErrorCode() string }
		if errors.As(err, &nsk) && (nsk.ErrorCode() == "NoSuchKey" || nsk.ErrorCode() == "NotFound") {
			return nil, fmt.Errorf("s3://%s/%s: %w", bucket, ManifestKey(nodePrefix), ErrNoManifest)
		}
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", bucket, ManifestKey(nodePrefix), err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", bucket, ManifestKey(nodePrefix), err)
	}
	return ParseManifest(data)
}

// download fetches the manifest's regular files concurrently into dir and
// verifies each checksum.
func (a *Agent) download(ctx context.Context, bucket, nodePrefix string, m *Manifest, dir string) error {
	tm := a.transfer()
	work := make(chan File)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range max(a.Concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := fetch(ctx, tm, bucket, nodePrefix, f, dir); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, f := range m.Files {
		if f.Type == TypeFile {
			work <- f
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func fetch(ctx context.Context, tm *transfermanager.Client, bucket, nodePrefix string, f File, dir string) error {
	local := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if f.Size == 0 {
		return nil // nothing to fetch; a ranged GET of an empty object is an error
	}
	_, err = tm.DownloadObject(ctx, &transfermanager.DownloadObjectInput{Bucket: aws.String(bucket), Key: aws.String(nodePrefix + f.Path), WriterAt: out})
	if err != nil {
		return fmt.Errorf("download %s: %w", f.Path, err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sum := newChecksum()
	n, err := io.Copy(sum, out)
	if err != nil {
		return fmt.Errorf("verify %s: %w", f.Path, err)
	}
	if n != f.Size || encodeChecksum(sum) != f.Checksum {
		return fmt.Errorf("verify %s: got %d bytes with checksum %s, manifest says %d bytes %s", f.Path, n, encodeChecksum(sum), f.Size, f.Checksum)
	}
	return nil
}

// finishTree creates directories and symlinks, then applies modes, times and
// ownership, deepest first so a read-only directory does not block its children.
func finishTree(dir string, m *Manifest, uid, gid int) error {
	for _, f := range m.Files {
		local := filepath.Join(dir, filepath.FromSlash(f.Path))
		switch f.Type {
		case TypeDir:
			if err := os.MkdirAll(local, 0o700); err != nil {
				return err
			}
		case TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
				return err
			}
			if err := os.Symlink(f.Target, local); err != nil {
				return err
			}
		}
	}
	files := append([]File(nil), m.Files...)
	// Deepest paths first: children get their times before the parent's are set.
	sortByDepth(files)
	for _, f := range files {
		local := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.Lchown(local, uid, gid); err != nil {
			return err
		}
		if f.Type == TypeSymlink {
			continue
		}
		if err := os.Chmod(local, os.FileMode(f.Mode).Perm()); err != nil {
			return err
		}
		if err := os.Chtimes(local, f.MTime, f.MTime); err != nil {
			return err
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

func sortByDepth(fs []File) {
	depth := func(p string) int { return strings.Count(p, "/") }
	for i := 1; i < len(fs); i++ { // insertion sort keeps the manifest's order within a depth
		for j := i; j > 0 && depth(fs[j].Path) > depth(fs[j-1].Path); j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// moveInto renames tmp to target when target is absent or empty; otherwise
// it moves each top-level entry across, replacing what is there.
func moveInto(tmp, target string) error {
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) && !isNotEmpty(err) {
		return err
	}
	if err := os.Rename(tmp, target); err == nil {
		return nil
	} else if !isNotEmpty(err) && !errors.Is(err, os.ErrExist) {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dst := filepath.Join(target, e.Name())
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), dst); err != nil {
			return err
		}
	}
	return nil
}

func isNotEmpty(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not empty") ||
		errors.As(err, &le) && strings.Contains(le.Err.Error(), "not empty") ||
		errors.Is(err, os.ErrExist)
}

// Marker files tell the TaskProlog what the Prolog restored; they live on the
// node, in a root-owned directory of the scratch root.
func (a *Agent) markerPath(node, jobID string) string {
	return filepath.Join(a.root(node), ".spotrescue", jobID+".json")
}

// WriteMarker records a restore's outcome for the TaskProlog.
func (a *Agent) WriteMarker(node string, r *Restored) error {
	p := a.markerPath(node, r.JobID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write restore marker: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(p, data, 0o644, -1, -1)
}

// ReadMarker returns the restore outcome for a job on this node, or nil.
func (a *Agent) ReadMarker(node, jobID string) *Restored {
	data, err := os.ReadFile(a.markerPath(node, jobID))
	if err != nil {
		return nil
	}
	var r Restored
	if json.Unmarshal(data, &r) != nil {
		return nil
	}
	return &r
}
