package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// RestoreRequest says which rescued data goes where.
type RestoreRequest struct {
	JobID string
	Run   int    // the rescued run (SPOT_RESCUE_RUN): its manifest must say so
	Node  string // this node
	From  string // node whose rescued data this node gets (same rank in the node list)
	URI   string // SPOT_RESCUE_URI of the rescued run
	// Dir is the job's scratch directory on this node, opened by
	// Scratch.Prepare; everything the restore writes is beneath it.
	Dir      *confine.Dir
	UID, GID int // the job's user, who gets the restored files
}

// Restored is the outcome of a restore, kept on the node for the TaskProlog.
type Restored struct {
	JobID string `json:"job_id"`
	Run   int    `json:"run"`     // the restart count of the run it was restored for
	From  int    `json:"rescued"` // the rescued run it came from
	Dir   string `json:"dir"`
	// Status is Complete, Partial or Failed: the rescued data's state as
	// restored; NothingHere or Kept (see Restore).
	Status Status `json:"status"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	Error  string `json:"error,omitempty"`
	// Skipped counts the entries the rescue could not save, and Missing
	// names the first of them, for the job's output.
	Skipped int      `json:"skipped,omitempty"`
	Missing []string `json:"missing,omitempty"`
}

// missingShown bounds Restored.Missing: the manifest lists them all.
const missingShown = 5

// ErrInUse means the job's scratch directory already holds data: a run of
// the job has used this node's directory since the rescue, and what it left
// is at least as new as what was rescued, so nothing is restored over it.
var ErrInUse = errors.New("the scratch directory already holds data")

// Restore downloads the files the manifest lists into a staging directory
// inside the job's scratch directory, verifies every checksum, gives every
// entry its owner, mode and time through its open handle, and only then
// moves the entries into place. The staging directory is root's, mode
// 0700, until the end: the job's user, who owns the scratch directory, can
// neither see nor swap anything in it while root works there. A restore
// goes only into an empty scratch directory.
func (a *Agent) Restore(ctx context.Context, req RestoreRequest) (*Restored, error) {
	log := a.Log.With(zap.String("job", req.JobID), zap.String("node", req.Node), zap.String("from", req.From))
	started := time.Now()
	bucket, prefix, err := splitURI(req.URI)
	if err != nil {
		return nil, err
	}
	nodePrefix := prefix + req.From + "/"
	m, err := a.readManifest(ctx, bucket, nodePrefix)
	if err != nil {
		return nil, err
	}
	if err := m.belongsTo(req.JobID, req.Run, req.From); err != nil {
		return nil, fmt.Errorf("restore job %s: s3://%s/%s: %w", req.JobID, bucket, ManifestKey(nodePrefix), err)
	}
	if err := checkEmpty(req.Dir); err != nil {
		return nil, err
	}
	stage, name, err := newStage(req.Dir, req.JobID)
	if err != nil {
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	defer stage.Close()
	err = a.fill(ctx, bucket, nodePrefix, m, stage, req)
	if err == nil {
		err = moveInto(stage, req.Dir)
	}
	if err != nil {
		removeAll(stage)
		req.Dir.Remove(name)
		return nil, fmt.Errorf("restore job %s: %w", req.JobID, err)
	}
	if err := req.Dir.Remove(name); err != nil {
		log.Warn("staging directory not removed", zap.String("name", name), zap.Error(err))
	}
	r := &Restored{JobID: req.JobID, Dir: req.Dir.Name(), Status: statusOf(m), Files: m.RegularFiles(), Bytes: m.Bytes, Skipped: len(m.Skipped)}
	for _, s := range m.Skipped[:min(len(m.Skipped), missingShown)] {
		r.Missing = append(r.Missing, s.Path)
	}
	took := time.Since(started)
	log.Info("restored", zap.String("dir", r.Dir), zap.String("status", string(r.Status)), zap.Int("files", r.Files), zap.Int64("bytes", r.Bytes),
		zap.Duration("took", took.Round(time.Millisecond)), zap.String("rate", mibps(r.Bytes, took.Seconds())))
	return r, nil
}

// fill builds the manifest's tree in the staging directory.
func (a *Agent) fill(ctx context.Context, bucket, nodePrefix string, m *Manifest, stage *confine.Dir, req RestoreRequest) error {
	if err := makeDirs(stage, m); err != nil {
		return err
	}
	if err := a.download(ctx, bucket, nodePrefix, m, stage, req.UID, req.GID); err != nil {
		return err
	}
	return finishTree(stage, m, req.UID, req.GID)
}

func statusOf(m *Manifest) Status {
	if m.Complete {
		return Complete
	}
	return Partial
}

// checkEmpty refuses a scratch directory that holds anything but our own
// reserved entries.
func checkEmpty(dir *confine.Dir) error {
	names, err := dir.ReadDirNames()
	if err != nil {
		return err
	}
	for _, n := range names {
		if !reserved(n) {
			return fmt.Errorf("%s: %w (%q and %d more entries)", dir.Name(), ErrInUse, n, len(names)-1)
		}
	}
	return nil
}

// newStage makes the staging directory inside the scratch directory and
// checks, through its handle, that it is the one we made: the scratch
// directory is the user's, who could replace an entry between our mkdir
// and our open.
func newStage(dir *confine.Dir, jobID string) (*confine.Dir, string, error) {
	for range 3 {
		name := reservedPrefix + "restore-" + NewPlanID()
		if err := dir.Mkdir(name, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return nil, "", err
		}
		stage, err := dir.OpenDir(name)
		if err != nil {
			return nil, "", err
		}
		info, err := stage.Stat()
		if err == nil && (info.UID != os.Geteuid() || info.Mode.Perm() != 0o700) {
			err = fmt.Errorf("staging directory %s was replaced (owner %d, mode %s)", name, info.UID, info.Mode)
		}
		if err != nil {
			stage.Close()
			return nil, "", err
		}
		return stage, name, nil
	}
	return nil, "", fmt.Errorf("no free staging directory name in %s", dir.Name())
}

// makeDirs creates the manifest's directories, and those its entries are
// below, shallowest first.
func makeDirs(stage *confine.Dir, m *Manifest) error {
	dirs := map[string]bool{}
	for _, f := range m.Files {
		if f.Type == TypeDir {
			dirs[f.Path] = true
		}
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	sort.Slice(list, func(i, j int) bool {
		if di, dj := strings.Count(list[i], "/"), strings.Count(list[j], "/"); di != dj {
			return di < dj
		}
		return list[i] < list[j]
	})
	for _, d := range list {
		if err := stage.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	return nil
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

// ErrBadManifest means the object at a manifest's key is not a manifest an
// agent wrote: not JSON, a path that escapes, over the size limit. Reading
// it again will not help; nothing under that prefix can be restored.
var ErrBadManifest = errors.New("not a usable manifest")

// maxManifest bounds a manifest read: a few million entries.
const maxManifest = 64 << 20

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
	where := "s3://" + bucket + "/" + ManifestKey(nodePrefix)
	data, err := io.ReadAll(io.LimitReader(out.Body, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", where, err)
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("manifest %s: over %d MiB: %w", where, maxManifest>>20, ErrBadManifest)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %w", where, ErrBadManifest, err)
	}
	return m, nil
}

// download fetches the manifest's regular files into dir, several at once,
// and verifies each against the manifest's checksum. The first failure
// stops the rest: a restore is all or nothing.
func (a *Agent) download(ctx context.Context, bucket, nodePrefix string, m *Manifest, stage *confine.Dir, uid, gid int) error {
	alg, err := checksumFor(m.Algorithm)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d := &downloader{agent: a, s3: a.client(), alg: alg, bucket: bucket, prefix: nodePrefix, stage: stage, uid: uid, gid: gid,
		streams: make(chan struct{}, a.concurrency())}
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
	stage          *confine.Dir // the staging directory, root's until the end
	uid, gid       int
	streams        chan struct{} // GET streams open at once, across files
}

// noResponseChecksum leaves verification to the manifest's checksum, which
// covers multipart objects too, instead of the SDK checking it twice.
func noResponseChecksum(o *s3.Options) {
	o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
}

// create makes a file of the restore, which must not exist yet, in the
// staging directory (its directories exist: see makeDirs).
func (d *downloader) create(f File) (*os.File, error) {
	out, err := d.stage.Open(f.Path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", f.Path, err)
	}
	return out, nil
}

// done gives a verified file its owner, mode and time through its handle.
func (d *downloader) done(f File, out *os.File) error {
	return confine.SetAttrs(out, d.uid, d.gid, fs.FileMode(f.Mode).Perm(), f.MTime)
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
	return d.done(f, out)
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
	return d.done(f, out)
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
		buf, put := copyBuffer(want)
		defer put()
		n, err := io.CopyBuffer(w, io.LimitReader(body, want+1), buf)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("got %d bytes, want %d: the object is not the one the manifest lists", n, want)
		}
		return nil
	}
}

// finishTree creates the symlinks, then gives every other entry its owner,
// mode and time through its own handle, deepest first so that a read-only
// directory does not block its children and a directory's time is set
// after its entries are made. Files got theirs when written. No name is
// looked up anywhere but in the staging directory, which only root can
// write until moveInto.
func finishTree(stage *confine.Dir, m *Manifest, uid, gid int) error {
	entries := append([]File(nil), m.Files...)
	for _, f := range entries {
		if f.Type == TypeSymlink {
			if err := stage.Symlink(f.Target, f.Path); err != nil {
				return err
			}
		}
	}
	listed := map[string]bool{}
	for _, f := range entries {
		listed[f.Path] = true
	}
	// Directories the manifest implies but does not list are the user's, 0700.
	for _, f := range m.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if !listed[d] {
				listed[d] = true
				entries = append(entries, File{Path: d, Type: TypeDir, Mode: 0o700})
			}
		}
	}
	sortByDepth(entries)
	for _, f := range entries {
		switch f.Type {
		case TypeSymlink:
			if err := stage.Lchown(f.Path, uid, gid); err != nil {
				return err
			}
		case TypeDir:
			d, err := stage.OpenDir(f.Path)
			if err != nil {
				return err
			}
			err = confine.SetAttrs(d.File(), uid, gid, fs.FileMode(f.Mode).Perm(), f.MTime)
			d.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func sortByDepth(fs []File) {
	depth := func(p string) int { return strings.Count(p, "/") }
	// Stable: the manifest's order is kept within a depth.
	sort.SliceStable(fs, func(i, j int) bool { return depth(fs[i].Path) > depth(fs[j].Path) })
}

// moveInto moves each top-level entry of the staging directory into the
// scratch directory, by handle and without replacing anything: an entry the
// user made there meanwhile fails the restore instead of being replaced
// (or followed).
func moveInto(stage, dir *confine.Dir) error {
	names, err := stage.ReadDirNames()
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := stage.Rename(n, dir, n, false); err != nil {
			return err
		}
	}
	return nil
}

// removeAll empties a directory of the restore's own, by handle.
func removeAll(d *confine.Dir) {
	names, _ := d.ReadDirNames()
	for _, n := range names {
		if info, err := d.Lstat(n); err == nil && info.Mode.IsDir() {
			if sub, err := d.OpenDir(n); err == nil {
				removeAll(sub)
				sub.Close()
			}
		}
		d.Remove(n)
	}
}

// A marker says what a restore did for a job run on a node, for the
// TaskProlog. The Prolog, as root, keeps it in the agent's state directory
// (root's, 0711: the job's user can read their marker by name and write
// none); a TaskProlog that restores as the user, because slurmd skipped
// the Prolog, keeps it in the job's own directory, where only the user
// could have written it and only the user reads it.
const markerSuffix = ".restored.json"

// markerName is the marker in the job's own directory.
const markerName = reservedPrefix + "restored.json"

// maxMarker bounds what a marker read may take.
const maxMarker = 64 << 10

// LockScratch serialises restores of one job on one node (the tasks of a
// job start their TaskProlog at once): an flock on the job's scratch
// directory itself, which only its user and root can open. It gives up
// after wait.
func LockScratch(dir *confine.Dir, wait time.Duration) (unlock func(), err error) {
	d, err := dir.OpenDir(".")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(d.Fd(), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { d.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			d.Close()
			return nil, fmt.Errorf("lock %s: %w", dir.Name(), err)
		}
		time.Sleep(lockPoll)
	}
}

// WriteMarker records a restore's outcome for the TaskProlog: as root in the
// state directory, else in the job's directory, by rename through a handle.
func (a *Agent) WriteMarker(node string, job *confine.Dir, r *Restored) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	dir, name := job, markerName
	if os.Geteuid() == 0 {
		if !lockNameRe.MatchString(r.JobID) {
			return fmt.Errorf("write restore marker: job id %q cannot name a file", r.JobID)
		}
		if dir, err = a.stateDir(node); err != nil {
			return fmt.Errorf("write restore marker: %w", err)
		}
		defer dir.Close()
		name = r.JobID + markerSuffix
	}
	tmp := name + "." + NewPlanID()
	f, err := dir.Open(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write restore marker: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dir.Rename(tmp, dir, name, true)
	}
	if err != nil {
		dir.Remove(tmp)
		return fmt.Errorf("write restore marker: %w", err)
	}
	return nil
}

// ReadMarker returns what was restored for the job's run on this node, from
// the rescued run: root's marker in the state directory, else one the job's
// user left in the job's directory; nil if neither is there, sound and of
// that run.
func (a *Agent) ReadMarker(node string, job *confine.Dir, jobID string, run, rescued int) *Restored {
	mine := func(r *Restored) bool { return r != nil && r.JobID == jobID && r.Run == run && r.From == rescued }
	if lockNameRe.MatchString(jobID) {
		if root, err := confine.OpenRoot(a.root(node)); err == nil {
			r := readMarker(root, lockDir+"/"+jobID+markerSuffix, 0)
			root.Close()
			if mine(r) {
				return r
			}
		}
	}
	if r := readMarker(job, markerName, os.Geteuid()); mine(r) {
		return r
	}
	return nil
}

// readMarker reads a marker that owner wrote, or nil.
func readMarker(dir *confine.Dir, name string, owner int) *Restored {
	f, err := dir.Open(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	info, err := confine.FileInfo(f)
	if err != nil || !info.Mode.IsRegular() || info.Size > maxMarker || info.UID != owner {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMarker))
	if err != nil {
		return nil
	}
	var r Restored
	if json.Unmarshal(data, &r) != nil {
		return nil
	}
	return &r
}
