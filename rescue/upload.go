package rescue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
)

// JobResult is what the agent saved of one job.
type JobResult struct {
	JobID    string
	Manifest *Manifest
	Err      error // the job could not be rescued at all (bad directory, manifest not written)
}

// upload is one file waiting to be saved.
type upload struct {
	job  *jobState
	rel  string
	abs  string
	size int64
	mod  time.Time
}

// jobState collects one job's progress; mu guards the manifest.
type jobState struct {
	pj  PlanJob
	mu  sync.Mutex
	man Manifest
}

func (j *jobState) add(f File) {
	j.mu.Lock()
	j.man.Files = append(j.man.Files, f)
	if f.Type == TypeFile {
		j.man.Bytes += f.Size
	}
	j.mu.Unlock()
}

func (j *jobState) skip(rel, reason string) {
	j.mu.Lock()
	j.man.Skipped = append(j.man.Skipped, Skipped{Path: rel, Reason: reason})
	j.mu.Unlock()
}

// Rescue uploads every job of the plan and writes each job's manifest last.
func (a *Agent) Rescue(ctx context.Context, p *Plan, d Deadlines) []JobResult {
	log := a.Log.With(zap.String("node", p.Node), zap.String("instance", p.Instance), zap.String("plan", p.ID))
	started := a.now()
	var jobs []*jobState
	var queue []upload
	results := make([]JobResult, len(p.Jobs))
	for i, pj := range p.Jobs {
		results[i].JobID = pj.JobID
		js := &jobState{pj: pj, man: Manifest{Version: manifestVersion, JobID: pj.JobID, Run: pj.Run, Node: p.Node, Instance: p.Instance, Started: started, Deadline: d.Soft, Algorithm: ChecksumAlgorithm, Files: []File{}}}
		dir, err := a.jobDir(p.Node, pj.Dir)
		if err != nil {
			// A job without a scratch directory is saved as empty and complete:
			// there was nothing to lose.
			if errors.Is(err, fs.ErrNotExist) {
				log.Info("job has no scratch directory", zap.String("job", pj.JobID), zap.String("dir", pj.Dir))
				jobs = append(jobs, js)
				continue
			}
			results[i].Err = fmt.Errorf("job %s: %w", pj.JobID, err)
			jobs = append(jobs, nil)
			continue
		}
		files, err := scan(js, dir)
		if err != nil {
			results[i].Err = fmt.Errorf("scan job %s: %w", pj.JobID, err)
		}
		queue = append(queue, files...)
		jobs = append(jobs, js)
	}
	order(queue)
	s := &session{agent: a, plan: p, d: d, log: log, tm: a.transfer()}
	s.total.files.Store(int64(len(queue)))
	for _, u := range queue {
		s.total.bytes.Add(u.size)
	}
	s.run(ctx, queue, jobs)
	for i, js := range jobs {
		if js == nil {
			continue
		}
		m, err := s.finish(js)
		results[i].Manifest = m
		if err != nil && results[i].Err == nil {
			results[i].Err = err
		}
	}
	return results
}

// scan walks a job directory without following symlinks and returns the
// regular files to upload; directories, symlinks and special files are
// recorded in the manifest directly.
func scan(js *jobState, dir string) ([]upload, error) {
	var out []upload
	err := filepath.WalkDir(dir, func(abs string, de fs.DirEntry, err error) error {
		if abs == dir {
			return err // an unreadable job directory fails the job
		}
		rel, _ := filepath.Rel(dir, abs)
		rel = filepath.ToSlash(rel)
		if err != nil {
			js.skip(rel, SkipUnreadable)
			return nil
		}
		if !utf8.ValidString(rel) {
			js.skip(rel, "name is not UTF-8")
			return skipDirOf(de)
		}
		if rel == "_spotrescue" || len(rel) > len("_spotrescue/") && rel[:len("_spotrescue/")] == "_spotrescue/" {
			js.skip(rel, SkipReserved)
			return skipDirOf(de)
		}
		info, err := de.Info()
		if err != nil {
			js.skip(rel, SkipUnreadable)
			return nil
		}
		switch {
		case info.Mode().IsRegular():
			out = append(out, upload{job: js, rel: rel, abs: abs, size: info.Size(), mod: info.ModTime()})
		case info.IsDir():
			js.add(File{Path: rel, Type: TypeDir, Mode: uint32(info.Mode().Perm()), MTime: info.ModTime().UTC()})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(abs)
			if err != nil {
				js.skip(rel, SkipUnreadable)
				return nil
			}
			js.add(File{Path: rel, Type: TypeSymlink, Mode: uint32(info.Mode().Perm()), MTime: info.ModTime().UTC(), Target: target})
		default:
			js.skip(rel, SkipSpecial)
		}
		return nil
	})
	return out, err
}

func skipDirOf(de fs.DirEntry) error {
	if de.IsDir() {
		return filepath.SkipDir
	}
	return nil
}

// order puts the newest files first: they are the ones a restart needs most.
func order(q []upload) {
	sort.SliceStable(q, func(i, j int) bool { return q[i].mod.After(q[j].mod) })
}

// session is one Rescue call in progress.
type session struct {
	agent       *Agent
	plan        *Plan
	d           Deadlines
	log         *zap.Logger
	tm          *transfermanager.Client
	total, done struct {
		files, bytes atomic.Int64
	}
}

func (s *session) run(ctx context.Context, queue []upload, jobs []*jobState) {
	hard, cancel := context.WithDeadline(ctx, s.d.Hard)
	defer cancel()
	work := make(chan upload)
	var wg sync.WaitGroup
	n := max(s.agent.Concurrency, 1)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				s.save(hard, u)
			}
		}()
	}
	stop := s.background(jobs)
	for i, u := range queue {
		if s.agent.now().After(s.d.Soft) || hard.Err() != nil {
			for _, rest := range queue[i:] {
				rest.job.skip(rest.rel, SkipDeadline)
			}
			s.log.Warn("deadline reached: not starting the remaining files", zap.Int("files", len(queue)-i))
			break
		}
		work <- u
	}
	close(work)
	wg.Wait()
	stop()
}

// save uploads one file, re-uploading once if it changed underneath us.
func (s *session) save(ctx context.Context, u upload) {
	for attempt := 0; attempt < 2; attempt++ {
		f, err := s.put(ctx, u)
		switch {
		case err == nil:
			u.job.add(f)
			s.done.files.Add(1)
			s.done.bytes.Add(f.Size)
			return
		case errors.Is(err, errChanged) && ctx.Err() == nil:
			continue
		case errors.Is(err, errChanged):
			u.job.skip(u.rel, SkipChanging)
		case ctx.Err() != nil:
			u.job.skip(u.rel, SkipDeadline)
		case errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP):
			u.job.skip(u.rel, SkipUnreadable)
		default:
			s.log.Warn("upload failed", zap.String("job", u.job.pj.JobID), zap.String("file", u.rel), zap.Error(err))
			u.job.skip(u.rel, SkipUploadFailed)
		}
		return
	}
	u.job.skip(u.rel, SkipChanging)
}

var errChanged = errors.New("file changed during upload")

// put streams one file to S3 while computing its checksum, and checks that
// what was read is what the file still is.
func (s *session) put(ctx context.Context, u upload) (File, error) {
	f, err := os.OpenFile(u.abs, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	if !before.Mode().IsRegular() { // replaced by something else since the scan
		return File{}, fs.ErrNotExist
	}
	sum := newChecksum()
	counted := &countingReader{r: io.TeeReader(f, sum)}
	_, err = s.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:            aws.String(s.plan.Bucket),
		Key:               aws.String(u.job.pj.Prefix + u.rel),
		Body:              counted, // a plain reader: parts are read once, in order, through the checksum
		ChecksumAlgorithm: tmtypes.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		return File{}, fmt.Errorf("upload %s: %w", u.rel, err)
	}
	after, err := os.Lstat(u.abs)
	if err != nil || counted.n != before.Size() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return File{}, errChanged
	}
	return File{Path: u.rel, Type: TypeFile, Size: before.Size(), Mode: uint32(before.Mode().Perm()), MTime: before.ModTime().UTC(), Checksum: encodeChecksum(sum)}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// background logs progress and writes interim manifests until stopped.
func (s *session) background(jobs []*jobState) (stop func()) {
	progress := s.agent.Progress
	if progress <= 0 {
		progress = 2 * time.Second
	}
	checkpoint := s.agent.Checkpoint
	if checkpoint <= 0 {
		checkpoint = 5 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := s.agent.now()
		tp, tc := time.NewTicker(progress), time.NewTicker(checkpoint)
		defer tp.Stop()
		defer tc.Stop()
		for {
			select {
			case <-done:
				return
			case <-tp.C:
				s.logProgress("rescue progress", start)
			case <-tc.C:
				for _, js := range jobs {
					if js != nil {
						_ = s.writeManifest(js, false)
					}
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (s *session) logProgress(msg string, start time.Time) {
	secs := s.agent.now().Sub(start).Seconds()
	b := s.done.bytes.Load()
	rate := 0.0
	if secs > 0 {
		rate = float64(b) / secs / (1 << 20)
	}
	s.log.Info(msg,
		zap.Int64("files_done", s.done.files.Load()), zap.Int64("files_total", s.total.files.Load()),
		zap.Int64("bytes_done", b), zap.Int64("bytes_total", s.total.bytes.Load()),
		zap.String("rate", fmt.Sprintf("%.1f MiB/s", rate)), zap.Duration("left", time.Until(s.d.Soft).Round(time.Second)))
}

// finish writes the final manifest of a job: complete only if every file,
// directory and symlink was saved (special files cannot be, and do not count).
func (s *session) finish(js *jobState) (*Manifest, error) {
	js.mu.Lock()
	complete := true
	for _, sk := range js.man.Skipped {
		if sk.Reason != SkipSpecial && sk.Reason != SkipReserved {
			complete = false
		}
	}
	js.mu.Unlock()
	if err := s.writeManifest(js, complete); err != nil {
		return nil, err
	}
	js.mu.Lock()
	defer js.mu.Unlock()
	m := js.man
	s.log.Info("rescue finished", zap.String("job", js.pj.JobID), zap.Bool("complete", m.Complete),
		zap.Int("files", len(m.Files)), zap.Int64("bytes", m.Bytes), zap.Int("skipped", len(m.Skipped)),
		zap.String("uri", "s3://"+s.plan.Bucket+"/"+js.pj.Prefix))
	return &m, nil
}

// writeManifest uploads the job's manifest as it stands. It runs on its own
// short context: it must be written even when the deadline has cancelled
// the uploads.
func (s *session) writeManifest(js *jobState, complete bool) error {
	js.mu.Lock()
	js.man.Complete = complete
	js.man.Finished = s.agent.now().UTC()
	m := js.man
	m.Files = append([]File(nil), js.man.Files...)
	js.mu.Unlock()
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("encode manifest of job %s: %w", js.pj.JobID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.agent.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.plan.Bucket),
		Key:         aws.String(ManifestKey(js.pj.Prefix)),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("write manifest of job %s: %w", js.pj.JobID, err)
	}
	return nil
}
