package rescue

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// packSession is a session that packs into small buffers and sends
// nothing: what addToPack does with a file is all there is to see.
func packSession(t *testing.T, dir string) (*session, *jobState) {
	t.Helper()
	tree, err := confine.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	a := &Agent{Log: zap.NewNop()}
	s := &session{agent: a, plan: &Plan{Pack: true}, alg: ChecksumCRC32C, log: a.Log, partSize: 64 << 10,
		started: time.Now(), ctx: context.Background(), hard: context.Background(), grace: context.Background()}
	s.pool = newPartPool(s.partSize, 4)
	return s, &jobState{pj: PlanJob{JobID: "1"}, tree: tree}
}

// change applies one of the changes a job can make to a file while the
// agent reads it: op picks it, n sizes it.
func change(t *testing.T, p string, op, n byte) {
	switch op % 8 {
	case 1: // grow past any pack buffer
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.Write(make([]byte, 200<<10+int(n)))
		f.Close()
	case 2: // grow a little
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.Write(bytes.Repeat([]byte{n}, int(n%7)+1))
		f.Close()
	case 3: // truncate
		os.Truncate(p, 0)
	case 4: // shrink
		if fi, err := os.Stat(p); err == nil {
			os.Truncate(p, fi.Size()/int64(n%4+2))
		}
	case 5: // replace by rename
		os.WriteFile(p+".new", bytes.Repeat([]byte{'R'}, int(n)*100), 0o644)
		os.Rename(p+".new", p)
	case 6: // remove
		os.Remove(p)
	case 7: // rewrite in place, same size
		if data, err := os.ReadFile(p); err == nil {
			os.WriteFile(p, bytes.Repeat([]byte{n}, len(data)), 0o644)
		}
	}
}

// FuzzPackedRead: a small file may grow, shrink, be truncated, replaced or
// removed between the scan, the open and the read. The packer must never
// panic (it once sliced past its buffer), and what it packs is a file as
// it was at one moment: its checksum is of the bytes in the pack, its size
// theirs. A file no longer small is handed back to be saved on its own.
func FuzzPackedRead(f *testing.F) {
	f.Add(uint16(4096), []byte{1, 0, 0, 0})
	f.Add(uint16(100), []byte{0, 0, 2, 5})
	f.Add(uint16(16000), []byte{3, 0, 4, 1})
	f.Add(uint16(10), []byte{5, 9, 6, 0})
	f.Add(uint16(0), []byte{7, 3, 1, 200})
	f.Fuzz(func(t *testing.T, size uint16, ops []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f")
		orig := bytes.Repeat([]byte{'o'}, int(size)%(16<<10-1))
		os.WriteFile(p, orig, 0o644)
		// A few other files first, so the pack has something in it.
		os.WriteFile(filepath.Join(dir, "g"), bytes.Repeat([]byte{'g'}, 8<<10), 0o644)
		s, js := packSession(t, dir)
		if _, err := s.addToPack(upload{job: js, rel: "g", size: 8 << 10}); err != nil {
			t.Fatal(err)
		}
		at := func(k int) (byte, byte) {
			if 2*k+1 < len(ops) {
				return ops[2*k], ops[2*k+1]
			}
			return 0, 0
		}
		// Between the scan and the open, between the open and the read,
		// and after the read; then again for the second try.
		op, n := at(0)
		change(t, p, op, n)
		s.agent.afterOpen = func(string) { op, n := at(1); change(t, p, op, n) }
		s.agent.afterRead = func(string) { op, n := at(2); change(t, p, op, n) }
		u := upload{job: js, rel: "f", size: int64(len(orig))}
		var full *pack
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			full, err = s.addToPack(u)
			if !errors.Is(err, errChanged) {
				break
			}
			s.agent.afterOpen = func(string) { op, n := at(3); change(t, p, op, n) }
			s.agent.afterRead = func(string) { op, n := at(4); change(t, p, op, n) }
		}
		switch {
		case err == nil, errors.Is(err, errChanged), errors.Is(err, errTooBig), errors.Is(err, fs.ErrNotExist):
		default:
			t.Fatalf("addToPack: %v", err)
		}
		for _, pk := range []*pack{full, s.packs().open[js]} {
			if pk == nil {
				continue
			}
			if len(pk.buf) > int(s.partSize) || cap(pk.buf) > int(s.partSize) {
				t.Fatalf("pack of %d bytes (cap %d) in a %d-byte buffer", len(pk.buf), cap(pk.buf), s.partSize)
			}
			end := int64(0)
			for _, e := range pk.files {
				if e.Offset < end || e.Offset+e.Size > int64(len(pk.buf)) {
					t.Fatalf("%s at %d+%d in a pack of %d after %d", e.Path, e.Offset, e.Size, len(pk.buf), end)
				}
				if sum := s.alg.sum(pk.buf[e.Offset : e.Offset+e.Size]); sum != e.Checksum {
					t.Fatalf("%s: checksum %s of its bytes, %s recorded", e.Path, sum, e.Checksum)
				}
				end = e.Offset + e.Size
			}
		}
		if err == nil && len(ops) == 0 {
			pk := s.packs().open[js]
			last := pk.files[len(pk.files)-1]
			if !bytes.Equal(pk.buf[last.Offset:last.Offset+last.Size], orig) {
				t.Fatal("an unchanged file packed with other bytes")
			}
		}
	})
}
