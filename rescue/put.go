package rescue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/spotrescue/spotrescue/rescue/confine"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
)

var errChanged = errors.New("file changed while it was read")

// ident is what tells one state of a file from another: a write changes
// the size or mtime, and always ctime (which, unlike mtime, a writer cannot
// set back); a rename over the path changes the inode.
type ident struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	ctime    int64
	mode     fs.FileMode
	regular  bool
}

func identOf(i confine.Info) ident {
	return ident{dev: i.Dev, ino: i.Ino, size: i.Size, mtime: i.ModTime, ctime: i.Ctime, mode: i.Mode.Perm(), regular: i.Mode.IsRegular()}
}

func (a ident) same(b ident) bool {
	return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime.Equal(b.mtime) && a.ctime == b.ctime && a.regular == b.regular
}

// openFile opens a regular file of the job's tree by handle, as the job's
// user, without following a symlink at any component (one may have
// replaced the file, or a directory above it, since the scan) and without
// blocking on a FIFO.
func openFile(js *jobState, rel string) (*os.File, ident, error) {
	f, err := js.tree.Open(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, ident{}, err
	}
	fi, err := confine.FileInfo(f)
	if err != nil {
		f.Close()
		return nil, ident{}, err
	}
	id := identOf(fi)
	if !id.regular {
		f.Close()
		return nil, ident{}, fs.ErrNotExist // no longer the regular file that was scanned
	}
	return f, id, nil
}

// unchanged checks, after every byte was read, that the entry at rel in
// the job's tree is still the file that was opened, in the state it was
// opened in: then the bytes read are a consistent copy of it.
func unchanged(f *os.File, js *jobState, rel string, before ident) error {
	var one [1]byte
	if n, _ := f.Read(one[:]); n > 0 {
		return errChanged // it grew
	}
	now, err := confine.FileInfo(f)
	if err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	there, err := js.tree.Lstat(rel)
	if err != nil || !identOf(now).same(before) || !identOf(there).same(before) {
		return errChanged
	}
	return nil
}

// put saves one regular file and returns its manifest entry.
func (s *session) put(u upload) (File, error) {
	f, before, err := openFile(u.job, u.rel)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	key := u.job.pj.Prefix + u.rel
	var sum string
	if before.size < s.partSize {
		sum, err = s.putSingle(f, u, key, before)
	} else {
		sum, err = s.putMultipart(f, u, key, before)
	}
	if err != nil {
		return File{}, err
	}
	return File{Path: u.rel, Type: TypeFile, Size: before.size, Mode: uint32(before.mode), MTime: before.mtime.UTC(), Checksum: sum}, nil
}

// readError tells a file that shrank while read (a change) from a failed read.
func readError(u upload, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errChanged
	}
	return fmt.Errorf("read %s: %w", u.rel, err)
}

// putSingle reads the whole file into one buffer, checks it did not change
// while read, and only then sends it: a file caught changing costs no request.
func (s *session) putSingle(f *os.File, u upload, key string, before ident) (string, error) {
	buf, err := s.pool.get(s.hard, before.size)
	if err != nil {
		return "", err
	}
	defer s.pool.put(buf)
	if _, err := io.ReadFull(f, buf); err != nil {
		return "", readError(u, err)
	}
	s.agent.readHook(u.rel)
	if err := unchanged(f, u.job, u.rel, before); err != nil {
		return "", err
	}
	sum := s.alg.sum(buf)
	in := &s3.PutObjectInput{Bucket: aws.String(s.plan.Bucket), Key: aws.String(key), Body: bytes.NewReader(buf), ContentLength: aws.Int64(before.size)}
	s.alg.setPut(in, sum)
	// The grace context: a PUT under way at the hard stop is let finish
	// rather than left in an unknown state.
	u.job.requests.Add(1)
	if _, err := s.s3.PutObject(s.grace, in); err != nil {
		u.job.uncertain(key)
		return "", fmt.Errorf("put %s: %w", u.rel, err)
	}
	s.sent.Add(before.size)
	return sum, nil
}

// multipart is one multipart upload in progress.
type multipart struct {
	job     *jobState // whose S3 requests these are
	key, id string
	mu      sync.Mutex
	parts   []s3types.CompletedPart
	err     error
}

func (m *multipart) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = err
	}
}

func (m *multipart) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// putMultipart streams a large file in parts, several in flight, through
// the pool's buffers. Any failure (the file changed, a part failed, the
// hard deadline) aborts the upload: no orphaned parts, no object.
func (s *session) putMultipart(f *os.File, u upload, key string, before ident) (string, error) {
	u.job.requests.Add(1)
	out, err := s.s3.CreateMultipartUpload(s.hard, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.plan.Bucket), Key: aws.String(key), ChecksumAlgorithm: s.alg.s3()})
	if err != nil {
		// It may exist even so (the response was lost): the sweep at the end
		// of the rescue aborts whatever is left under the prefix.
		return "", fmt.Errorf("start multipart upload of %s: %w", u.rel, err)
	}
	m := &multipart{job: u.job, key: key, id: aws.ToString(out.UploadId)}
	s.track(m.id, key)
	sum, err := s.sendParts(f, u, m, before)
	if err == nil {
		err = s.complete(m)
	}
	if err != nil {
		s.abort(m.id, key)
		u.job.uncertain(key)
		return "", err
	}
	s.untrack(m.id)
	return sum, nil
}

// sendParts reads the file part by part through the whole-file checksum
// and uploads each part in the background as soon as it is read. The file
// is checked for changes once read: a write after that does not spoil the
// copy, which is the file as it was while read.
func (s *session) sendParts(f *os.File, u upload, m *multipart, before ident) (string, error) {
	ctx, cancel := context.WithCancel(s.hard)
	defer cancel()
	whole := s.alg.new()
	size, part := before.size, s.partSizeFor(before.size)
	var wg sync.WaitGroup
	for num, off := int32(1), int64(0); off < size && m.failed() == nil; num, off = num+1, off+part {
		buf, err := s.pool.get(ctx, min(part, size-off))
		if err != nil {
			m.fail(err)
			break
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			s.pool.put(buf)
			m.fail(readError(u, err))
			break
		}
		whole.Write(buf)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.pool.put(buf)
			s.agent.partHook(u.rel, num)
			if err := s.uploadPart(ctx, m, num, buf); err != nil {
				m.fail(fmt.Errorf("part %d of %s: %w", num, u.rel, err))
				cancel()
			}
		}()
	}
	if m.failed() == nil {
		s.agent.readHook(u.rel)
		if err := unchanged(f, u.job, u.rel, before); err != nil {
			m.fail(err)
			cancel() // the parts in flight are of a copy that will not be kept
		}
	}
	wg.Wait()
	if err := m.failed(); err != nil {
		return "", err
	}
	return encodeSum(whole), nil
}

func (s *session) uploadPart(ctx context.Context, m *multipart, num int32, buf []byte) error {
	sum := s.alg.sum(buf)
	in := &s3.UploadPartInput{Bucket: aws.String(s.plan.Bucket), Key: aws.String(m.key), UploadId: aws.String(m.id), PartNumber: aws.Int32(num), Body: bytes.NewReader(buf), ContentLength: aws.Int64(int64(len(buf)))}
	s.alg.setPart(in, sum)
	m.job.requests.Add(1)
	out, err := s.s3.UploadPart(ctx, in)
	if err != nil {
		return err
	}
	s.sent.Add(int64(len(buf)))
	m.mu.Lock()
	m.parts = append(m.parts, s.alg.completed(num, out.ETag, sum))
	m.mu.Unlock()
	return nil
}

// complete finishes the upload on the grace context: once every part is
// sent, completing is one short request worth waiting for.
func (s *session) complete(m *multipart) error {
	sort.Slice(m.parts, func(i, j int) bool { return *m.parts[i].PartNumber < *m.parts[j].PartNumber })
	m.job.requests.Add(1)
	_, err := s.s3.CompleteMultipartUpload(s.grace, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.plan.Bucket), Key: aws.String(m.key), UploadId: aws.String(m.id),
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: m.parts},
	})
	if err != nil {
		return fmt.Errorf("complete upload of %s: %w", m.key, err)
	}
	return nil
}

// partSizeFor keeps a file within S3's 10,000 parts.
func (s *session) partSizeFor(size int64) int64 {
	const maxParts = 10_000
	if size <= s.partSize*maxParts {
		return s.partSize
	}
	return (size + maxParts - 1) / maxParts
}

// track and untrack keep the multipart uploads in flight, so that the end
// of the rescue can retry an abort that failed.
func (s *session) track(id, key string) {
	s.mu.Lock()
	s.mpu[id] = key
	s.mu.Unlock()
}

func (s *session) untrack(id string) {
	s.mu.Lock()
	delete(s.mpu, id)
	s.mu.Unlock()
}

// abort cancels a multipart upload on a fresh context: it must work after
// the deadline cancelled the upload itself.
func (s *session) abort(id, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.plan.Bucket), Key: aws.String(key), UploadId: aws.String(id)})
	var gone *s3types.NoSuchUpload
	if err == nil || errors.As(err, &gone) {
		s.untrack(id)
	}
	if err == nil {
		s.log.Info("multipart upload aborted", zap.String("key", key))
	} else if !errors.As(err, &gone) {
		s.log.Warn("multipart upload not aborted; retried at the end", zap.String("key", key), zap.Error(err))
	}
}
