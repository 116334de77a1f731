package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	JobID string `json:"job_id"`
	Run   int    `json:"run"`     // the restart count of the run it was restored for
	From  int    `json:"rescued"` // the rescued run it came from
	Dir   string `json:"dir"`
	// Status is complete, partial or failed: the rescued data's state as
	// restored; none when this node has nothing to get back.
	Status string `json:"status"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	Error  string `json:"error,omitempty"`
}

// Restore downloads the files the manifest lists into a temporary directory
// beside the target, verifies every checksum, and renames the result into
// place, so the job sees all of the data or none of it.
func (a *Agent) Restore(ctx context.Context, req RestoreRequest) (*Restored, error) {
	log := a.Log.With(zap.String("job", req.JobID), zap.String("node", req.Node), zap.String("from", req.From))
	started := time.Now()
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
	if errors.Is(err, fs.ErrPermission) {
		// Restoring as the job's user (the TaskProlog, when slurmd skipped
		// the Prolog), who may not write the scratch root but owns the
		// job's directory: stage inside it.
		tmp, err = os.MkdirTemp(target, ".spotrescue-restore-")
	}
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
	took := time.Since(started)
	log.Info("restored", zap.String("dir", target), zap.String("status", r.Status), zap.Int("files", r.Files), zap.Int64("bytes", r.Bytes),
		zap.Duration("took", took.Round(time.Millisecond)), zap.String("rate", mibps(r.Bytes, took.Seconds())))
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

// download fetches the manifest's regular files into dir, several at once,
// and verifies each against the manifest's checksum. The first failure
// stops the rest: a restore is all or nothing.
func (a *Agent) download(ctx context.Context, bucket, nodePrefix string, m *Manifest, dir string) error {
	alg, err := checksumFor(m.Algorithm)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d := &downloader{agent: a, s3: a.client(), alg: alg, bucket: bucket, prefix: nodePrefix, dir: dir,
		streams: make(chan struct{}, a.concurrency()*a.partsInFlight())}
	work := make(chan []File)
	var wg sync.WaitGroup
	for range a.concurrency() {
		wg.Go(func() {
			for unit := range work {
				if err := d.fetchUnit(ctx, unit); err != nil {
					cancel(err)
				}
			}
		})
	}
	feedUnits(ctx, m.Files, work)
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// feedUnits hands out the regular files, one pack's files together,
// largest first so that a big file does not start last and finish alone.
func feedUnits(ctx context.Context, files []File, work chan<- []File) {
	var units [][]File
	packs := map[string]int{}
	for _, f := range files {
		switch {
		case f.Type != TypeFile:
		case f.Pack == "":
			units = append(units, []File{f})
		default:
			i, ok := packs[f.Pack]
			if !ok {
				i = len(units)
				packs[f.Pack] = i
				units = append(units, nil)
			}
			units[i] = append(units[i], f)
		}
	}
	size := func(u []File) (n int64) {
		for _, f := range u {
			n += f.Size
		}
		return n
	}
	sort.SliceStable(units, func(i, j int) bool { return size(units[i]) > size(units[j]) })
	for _, u := range units {
		select {
		case work <- u:
		case <-ctx.Done():
			return
		}
	}
}

func (d *downloader) fetchUnit(ctx context.Context, unit []File) error {
	if unit[0].Pack != "" {
		return d.fetchPack(ctx, unit)
	}
	return d.fetch(ctx, unit[0])
}

// downloader is one restore's transfers.
type downloader struct {
	agent          *Agent
	s3             *s3.Client
	alg            checksum
	bucket, prefix string
	dir            string
	streams        chan struct{} // GET streams open at once, across files
}

// noResponseChecksum leaves verification to the manifest's checksum, which
// covers multipart objects too, instead of the SDK checking it twice.
func noResponseChecksum(o *s3.Options) {
	o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
}

// create makes a file of the restore, which must not exist yet.
func (d *downloader) create(f File) (*os.File, error) {
	local := filepath.Join(d.dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		return nil, fmt.Errorf("restore %s: %w", f.Path, err)
	}
	out, err := os.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", f.Path, err)
	}
	return out, nil
}

// fetchPack streams one pack object once and cuts its files out of it in
// offset order, checksumming each on the way.
func (d *downloader) fetchPack(ctx context.Context, files []File) error {
	// By offset, and an empty file before a file at the same offset.
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		return a.Offset < b.Offset || a.Offset == b.Offset && a.Size < b.Size
	})
	last := files[len(files)-1]
	return d.get(ctx, files[0].Pack, "", func(body io.Reader) error {
		pos := int64(0)
		for _, f := range files {
			if f.Offset < pos {
				return fmt.Errorf("pack %s: %s overlaps the file before it", f.Pack, f.Path)
			}
			if _, err := io.CopyN(io.Discard, body, f.Offset-pos); err != nil {
				return fmt.Errorf("pack %s ends before %s: %w", f.Pack, f.Path, err)
			}
			if err := d.cut(f, body); err != nil {
				return err
			}
			pos = f.Offset + f.Size
		}
		return nil
	}, last.Offset+last.Size)
}

func (d *downloader) cut(f File, body io.Reader) error {
	out, err := d.create(f)
	if err != nil {
		return err
	}
	defer out.Close()
	h := d.alg.new()
	if _, err := io.CopyN(io.MultiWriter(out, h), body, f.Size); err != nil {
		return fmt.Errorf("restore %s from %s: %w", f.Path, f.Pack, err)
	}
	if sum := encodeSum(h); sum != f.Checksum {
		return fmt.Errorf("verify %s: checksum %s, manifest says %s", f.Path, sum, f.Checksum)
	}
	return nil
}

func (d *downloader) fetch(ctx context.Context, f File) error {
	out, err := d.create(f)
	if err != nil {
		return err
	}
	defer out.Close()
	var sum string
	switch {
	case f.Size == 0: // a GET of an empty multipart-less object is fine, but needless
		sum = d.alg.sum(nil)
	case f.Size <= d.agent.rangeSize():
		sum, err = d.stream(ctx, f, out)
	default:
		sum, err = d.ranges(ctx, f, out)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", f.Path, err)
	}
	if sum != f.Checksum {
		return fmt.Errorf("verify %s: checksum %s, manifest says %s", f.Path, sum, f.Checksum)
	}
	return nil
}

// stream fetches a whole object in one GET, writing and checksumming it in
// one pass.
func (d *downloader) stream(ctx context.Context, f File, out *os.File) (string, error) {
	h := d.alg.new()
	if err := d.get(ctx, f.Path, "", copyTo(io.MultiWriter(out, h), f.Size), f.Size); err != nil {
		return "", err
	}
	return encodeSum(h), nil
}

// ranges fetches a large object in ranges, several at once, each written
// at its offset, then checksums the file as written.
func (d *downloader) ranges(ctx context.Context, f File, out *os.File) (string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Never more ranges than streams: more would only wait their turn, and
	// every request has a cost (on some S3 servers, that of the whole object).
	slots := int64(cap(d.streams))
	size := max(d.agent.rangeSize(), (f.Size+slots-1)/slots)
	var wg sync.WaitGroup
	for off := int64(0); off < f.Size && ctx.Err() == nil; off += size {
		n := min(size, f.Size-off)
		spec := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
		wg.Go(func() {
			if err := d.get(ctx, f.Path, spec, copyTo(io.NewOffsetWriter(out, off), n), n); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return "", context.Cause(ctx)
	}
	h := d.alg.new()
	buf := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(buf)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(out, 0, f.Size), *buf); err != nil {
		return "", err
	}
	return encodeSum(h), nil
}

// get opens a GET of an object below the prefix (or of one range of it),
// taking one of the stream slots while it is open, and hands the body to
// read, which must consume the want bytes it needs.
func (d *downloader) get(ctx context.Context, rel, rng string, read func(io.Reader) error, want int64) error {
	select {
	case d.streams <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.streams }()
	in := &s3.GetObjectInput{Bucket: aws.String(d.bucket), Key: aws.String(d.prefix + rel)}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	obj, err := d.s3.GetObject(ctx, in, noResponseChecksum)
	if err != nil {
		return err
	}
	defer obj.Body.Close()
	if obj.ContentLength != nil && *obj.ContentLength < want {
		return fmt.Errorf("%s holds %d bytes, the manifest needs %d", rel, *obj.ContentLength, want)
	}
	return read(obj.Body)
}

// copyTo returns a reader of a body that copies exactly want bytes to w.
func copyTo(w io.Writer, want int64) func(io.Reader) error {
	return func(body io.Reader) error {
		buf := readBuffers.Get().(*[]byte)
		defer readBuffers.Put(buf)
		n, err := io.CopyBuffer(w, io.LimitReader(body, want+1), *buf)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("got %d bytes, want %d: the object is not the one the manifest lists", n, want)
		}
		return nil
	}
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
	// Stable: the manifest's order is kept within a depth.
	sort.SliceStable(fs, func(i, j int) bool { return depth(fs[i].Path) > depth(fs[j].Path) })
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

// LockMarker serialises restores of one job on one node (the tasks of a job
// start their TaskProlog at once); unlock releases it. Without a place to
// lock it returns a no-op.
func (a *Agent) LockMarker(node, jobID string) (unlock func()) {
	f, err := os.OpenFile(a.markerPath(node, jobID)+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return func() {}
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// Marker files tell the TaskProlog what the Prolog restored; they live on the
// node, in a root-owned directory of the scratch root.
func (a *Agent) markerPath(node, jobID string) string {
	return filepath.Join(a.root(node), ".spotrescue", jobID+".json")
}

// WriteMarker records a restore's outcome for the TaskProlog.
func (a *Agent) WriteMarker(node string, r *Restored) error {
	p := a.markerPath(node, r.JobID)
	// Sticky and world-writable, like /tmp: a TaskProlog restoring as the
	// job's user writes its marker here too, and nobody can replace
	// another's. Readers trust only markers owned by root or the job's user.
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write restore marker: %w", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(filepath.Dir(p), os.ModeSticky|0o777)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(p, data, 0o644, -1, -1)
}

// ReadMarker returns the restore outcome for a job on this node, or nil. A
// marker is trusted only if root or the job's user (uid) wrote it.
func (a *Agent) ReadMarker(node, jobID string, uid int) *Restored {
	p := a.markerPath(node, jobID)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || (st.Uid != 0 && int(st.Uid) != uid) {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var r Restored
	if json.Unmarshal(data, &r) != nil {
		return nil
	}
	return &r
}
