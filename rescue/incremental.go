package rescue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
)

// ErrSuperseded stops a pre-sync once a final rescue has written the
// prefix: the final rescue's manifest must never be overwritten.
var ErrSuperseded = errors.New("a final rescue owns this prefix")

// loadBase reads the manifest already at the job's prefix, if any: a
// pre-sync's (or an earlier attempt's), whose unchanged files are carried
// over instead of sent again.
func (s *session) loadBase(js *jobState) error {
	// Not bounded by the deadline: a repeat agent that comes after it must
	// still see the finished rescue it is not to redo.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer cancel()
	m, err := ReadManifest(ctx, s.s3, s.plan.Bucket, js.pj.Prefix)
	log := s.log.With(zap.String("job", js.pj.JobID))
	switch {
	case errors.Is(err, ErrNoManifest):
		return nil
	case err != nil:
		log.Warn("cannot read the manifest already at the prefix; sending every file", zap.Error(err))
		return nil
	case m.JobID != js.pj.JobID || m.Run != js.pj.Run:
		log.Warn("the manifest at the prefix is another job's; ignoring it", zap.String("its_job", m.JobID), zap.Int("its_run", m.Run))
		return nil
	case s.plan.Presync && !m.Presync:
		return fmt.Errorf("pre-sync of job %s: %w", js.pj.JobID, ErrSuperseded)
	case !m.Presync && !m.Interim:
		// Another final rescue of this run finished already (this agent
		// is a repeat, sent by a controller that died before recording
		// the first): its manifest stands. Rescuing again could only
		// replace it with one written later in the window, or delete
		// objects it lists.
		js.done = m
		log.Info("a final rescue of this run finished already; its manifest stands", zap.Bool("complete", m.Complete))
		return nil
	}
	js.base = make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		if f.Type == TypeFile {
			js.base[f.Path] = f
		}
	}
	// Checksums of another algorithm cannot be compared: such files are sent again.
	js.carry = m.Algorithm == string(s.alg)
	log.Info("previous manifest found", zap.Bool("presync", m.Presync), zap.Int("files", len(js.base)), zap.Bool("comparable", js.carry))
	return nil
}

// candidates marks the files whose size and mtime match the previous
// manifest: if their content does too, they are carried over.
func (s *session) candidates(js *jobState, files []upload) []upload {
	if !js.carry {
		return files
	}
	for i, u := range files {
		if b, ok := js.base[u.rel]; ok && b.Size == u.size && b.MTime.Equal(u.mod) {
			files[i].base = &b
		}
	}
	return files
}

// splitKnown separates files to verify from files to send, keeping order.
func splitKnown(q []upload) (fresh, known []upload) {
	for _, u := range q {
		if u.base != nil {
			known = append(known, u)
		} else {
			fresh = append(fresh, u)
		}
	}
	return fresh, known
}

// verifyAll checksums the known files beside the uploads (it costs disk
// and CPU, they cost network), carries the unchanged ones and sends the
// others to redo, which it closes when done.
func (s *session) verifyAll(ctx context.Context, known []upload, redo chan<- upload) {
	defer close(redo)
	in := make(chan upload)
	var wg sync.WaitGroup
	for range min(len(known), runtime.NumCPU(), s.agent.concurrency()) {
		wg.Go(func() {
			for u := range in {
				s.verifyOne(ctx, u, redo)
			}
		})
	}
	for i, u := range known {
		if !send(ctx, in, u) {
			for _, left := range known[i:] {
				left.job.skip(left.rel, s.stopReason())
			}
			break
		}
	}
	close(in)
	wg.Wait()
}

func (s *session) verifyOne(ctx context.Context, u upload, redo chan<- upload) {
	f, err := s.verify(ctx, u)
	switch {
	case err == nil:
		u.job.saved(f, true)
		s.done.files.Add(1)
		s.done.bytes.Add(f.Size)
	case ctx.Err() != nil:
		u.job.skip(u.rel, s.stopReason())
	default:
		u.base = nil
		redo <- u
	}
}

var errDiffers = errors.New("content differs from the previous manifest")

// verify recomputes the checksum of a file the previous manifest lists
// with the same size and mtime, and returns its entry if the content is
// the same.
func (s *session) verify(ctx context.Context, u upload) (File, error) {
	f, before, err := openFile(u.job, u.rel)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	if before.size != u.base.Size || !before.mtime.Equal(u.base.MTime) {
		return File{}, errDiffers
	}
	h := s.alg.new()
	buf, put := copyBuffer(before.size)
	defer put()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, buf)
	if err != nil {
		return File{}, err
	}
	if n != before.size || unchanged(f, u.job, u.rel, before) != nil || encodeSum(h) != u.base.Checksum {
		return File{}, errDiffers
	}
	carried := *u.base // the same bytes, in the same object (or pack)
	carried.Mode = uint32(before.mode)
	return carried, nil
}

// Copy buffers: 1 MiB for large files, 64 KiB for small ones, so that
// 64 small files in flight hold 4 MiB of buffers, not 64.
var (
	readBuffers  = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
	smallBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
)

// copyBuffer returns a buffer for copying size bytes and the function that
// gives it back.
func copyBuffer(size int64) ([]byte, func()) {
	pool := &readBuffers
	if size <= 64<<10 {
		pool = &smallBuffers
	}
	b := pool.Get().(*[]byte)
	return *b, func() { pool.Put(b) }
}

// ctxReader stops a long read (a checksum over gigabytes) at the deadline.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// stillPresync checks, before a pre-sync writes its manifest, that no
// final rescue has written the prefix since; if one has, the pre-sync stops.
func (s *session) stillPresync(ctx context.Context, js *jobState) error {
	m, err := ReadManifest(ctx, s.s3, s.plan.Bucket, js.pj.Prefix)
	if err == nil && !m.Presync {
		s.stop()
		return fmt.Errorf("pre-sync of job %s: %w", js.pj.JobID, ErrSuperseded)
	}
	return nil
}

// deleteUnlisted removes the objects under the prefix that the manifest
// will not list: files of the previous manifest that changed and were not
// sent again, or are gone, and uploads cut off part-way.
func (s *session) deleteUnlisted(js *jobState) {
	m := js.snapshot()
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if f.Type == TypeFile {
			listed[f.ObjectKey(js.pj.Prefix)] = true
		}
	}
	var keys []string
	for _, f := range js.base {
		// A pack stays while any file it holds is listed.
		if k := f.ObjectKey(js.pj.Prefix); !listed[k] {
			keys = append(keys, k)
			listed[k] = true // once
		}
	}
	js.mu.Lock()
	for _, k := range js.lost {
		if !listed[k] {
			keys = append(keys, k)
			listed[k] = true
		}
	}
	js.mu.Unlock()
	for len(keys) > 0 {
		n := min(len(keys), 1000) // DeleteObjects takes up to 1,000 keys
		s.deleteKeys(js, keys[:n])
		keys = keys[n:]
	}
}

func (s *session) deleteKeys(js *jobState, keys []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	ids := make([]s3types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = s3types.ObjectIdentifier{Key: aws.String(k)}
	}
	out, err := s.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.plan.Bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
	if err == nil && len(out.Errors) > 0 {
		err = fmt.Errorf("%d of %d keys, first %s: %s", len(out.Errors), len(keys), aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
	}
	if err != nil {
		s.log.Warn("objects the manifest does not list could not be deleted", zap.String("job", js.pj.JobID), zap.Error(err))
		return
	}
	s.log.Info("deleted objects the manifest does not list", zap.String("job", js.pj.JobID), zap.Int("objects", len(keys)))
}

// sweep aborts the multipart uploads still open under the prefix: those
// whose abort failed, and any an earlier, killed agent left.
func (s *session) sweep(js *jobState) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	s.mu.Lock()
	tracked := make(map[string]string, len(s.mpu))
	for id, key := range s.mpu {
		if strings.HasPrefix(key, js.pj.Prefix) {
			tracked[id] = key
		}
	}
	s.mu.Unlock()
	for id, key := range tracked {
		s.abort(id, key)
	}
	pages := s3.NewListMultipartUploadsPaginator(s.s3, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.plan.Bucket), Prefix: aws.String(js.pj.Prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			s.log.Warn("cannot list multipart uploads to abort", zap.String("job", js.pj.JobID), zap.Error(err))
			return
		}
		for _, up := range page.Uploads {
			s.abort(aws.ToString(up.UploadId), aws.ToString(up.Key))
		}
	}
	s.mu.Lock()
	left := 0
	for _, key := range s.mpu {
		if strings.HasPrefix(key, js.pj.Prefix) {
			left++
		}
	}
	s.mu.Unlock()
	if left > 0 {
		s.log.Warn("multipart uploads could not be aborted", zap.String("job", js.pj.JobID), zap.Int("uploads", left))
	}
}
