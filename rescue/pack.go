package rescue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
)

// A pack is small files of one job read back to back into one part-sized
// buffer and sent as one object: on a request-bound S3 (and a 2-minute
// deadline) thousands of small files cost tens of requests, not thousands.
type pack struct {
	js    *jobState
	key   string // below the node prefix
	buf   []byte
	files []File
}

// packer keeps each job's open pack; mu also serialises the reads into
// it, which are of small files.
type packer struct {
	mu   sync.Mutex
	open map[*jobState]*pack
	seq  int
}

// packLimit is the size below which a file goes into a pack.
func (s *session) packLimit() int64 { return s.partSize / 4 }

func (s *session) packs() *packer {
	s.packOnce.Do(func() { s.packer = &packer{open: map[*jobState]*pack{}} })
	return s.packer
}

// errTooBig says a file scanned as small has grown past the pack limit
// by the time it was opened: it is saved as an object of its own instead.
var errTooBig = errors.New("grew past the pack limit")

// savePacked adds one small file to its job's pack, reading it again once
// if it changed while read, and sends the pack it filled, if any. It
// reports false when the file is no longer small, for the caller to save
// it on its own.
func (s *session) savePacked(u upload) bool {
	for attempt := 1; ; attempt++ {
		if s.hard.Err() != nil {
			u.job.skip(u.rel, s.stopReason())
			return true
		}
		full, err := s.addToPack(u)
		if full != nil {
			s.sendPack(full)
		}
		switch {
		case err == nil:
			return true
		case errors.Is(err, errTooBig):
			return false
		case !errors.Is(err, errChanged) || attempt == 2:
			s.skipFailed(u, err)
			return true
		}
	}
}

// addToPack reads u into its job's open pack. When u does not fit, the
// open pack is returned, full, for the caller to send, and a new one opened.
func (s *session) addToPack(u upload) (full *pack, err error) {
	pk := s.packs()
	pk.mu.Lock()
	defer pk.mu.Unlock()
	f, before, err := openFile(u.job, u.rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The size that counts is the open file's, not the scan's: the file
	// may have grown since, past what a pack buffer holds.
	if before.size >= s.packLimit() {
		return nil, errTooBig
	}
	p := pk.open[u.job]
	if p == nil || int64(len(p.buf))+before.size > int64(cap(p.buf)) {
		buf, err := s.pool.get(s.hard, s.partSize)
		if err != nil {
			return nil, err
		}
		full = p
		pk.seq++
		p = &pack{js: u.job, key: fmt.Sprintf("%s%d-%04d.pack", PackDir, s.started.UnixNano(), pk.seq), buf: buf[:0]}
		pk.open[u.job] = p
	}
	off := len(p.buf)
	if err := s.readInto(f, u, p, before); err != nil {
		p.buf = p.buf[:off] // roll back: the pack holds only consistent copies
		return full, err
	}
	p.files = append(p.files, File{Path: u.rel, Type: TypeFile, Size: before.size, Mode: uint32(before.mode), MTime: before.mtime.UTC(),
		Checksum: s.alg.sum(p.buf[off:]), Pack: p.key, Offset: int64(off)})
	return full, nil
}

// readInto reads the file's size as opened into the pack; a file that
// grows or shrinks meanwhile reads short or long, which unchanged and
// readError report as a change.
func (s *session) readInto(f *os.File, u upload, p *pack, before ident) error {
	off := len(p.buf)
	if before.size > int64(cap(p.buf)-off) {
		return errTooBig // never reached: addToPack opened a pack with room
	}
	p.buf = p.buf[:off+int(before.size)]
	s.agent.openHook(u.rel)
	if _, err := io.ReadFull(f, p.buf[off:]); err != nil {
		return readError(u, err)
	}
	s.agent.readHook(u.rel)
	return unchanged(f, u.job, u.rel, before)
}

// flushPacks sends the packs still open once no more files come.
func (s *session) flushPacks() {
	if s.packer == nil {
		return
	}
	var wg sync.WaitGroup
	for js, p := range s.packer.open {
		delete(s.packer.open, js)
		wg.Go(func() { s.sendPack(p) })
	}
	wg.Wait()
}

// sendPack stores a pack; its files count as saved only once it is in S3.
func (s *session) sendPack(p *pack) {
	defer s.pool.put(p.buf)
	if len(p.files) == 0 {
		return
	}
	if s.hard.Err() != nil { // nothing new starts after the hard stop
		for _, f := range p.files {
			p.js.skip(f.Path, s.stopReason())
		}
		return
	}
	key := p.js.pj.Prefix + p.key
	sum := s.alg.sum(p.buf)
	in := &s3.PutObjectInput{Bucket: aws.String(s.plan.Bucket), Key: aws.String(key), Body: bytes.NewReader(p.buf), ContentLength: aws.Int64(int64(len(p.buf)))}
	s.alg.setPut(in, sum)
	p.js.requests.Add(1)
	if _, err := s.s3.PutObject(s.grace, in); err != nil {
		p.js.uncertain(key)
		reason := s.classify(err)
		if reason == SkipUploadFailed {
			s.log.Warn("pack upload failed", zap.String("job", p.js.pj.JobID), zap.String("pack", p.key), zap.Int("files", len(p.files)), zap.Error(err))
		}
		for _, f := range p.files {
			p.js.skip(f.Path, reason)
		}
		return
	}
	s.sent.Add(int64(len(p.buf)))
	for _, f := range p.files {
		p.js.saved(f, false)
		s.done.files.Add(1)
		s.done.bytes.Add(f.Size)
	}
}
