package rescue

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// objects is a bucket served over HTTP the way S3 answers the restore's
// requests (path-style GET, whole or one byte range): enough to drive a
// restore without the lab, and fast enough to fuzz.
type objects struct {
	mu   sync.Mutex
	data map[string][]byte // key -> content
}

func (o *objects) set(m map[string][]byte) {
	o.mu.Lock()
	o.data = m
	o.mu.Unlock()
}

func (o *objects) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	b, ok := o.data[strings.TrimPrefix(r.URL.Path, "/bucket/")]
	o.mu.Unlock()
	if r.Method != http.MethodGet || !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>`)
		return
	}
	if rng := r.Header.Get("Range"); rng != "" {
		var from, to int
		if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &from, &to); err != nil || from > to || to >= len(b) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		b = b[from : to+1]
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(b)))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(b)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Write(b)
}

// fuzzContent is the bytes a fuzzed manifest's file gets: derived from its
// path, at most a few KiB, so that checksums can be made to match.
func fuzzContent(p string, size int64) []byte {
	size = min(max(size, 0), 4096)
	out := make([]byte, 0, size)
	for seed := sha256.Sum256([]byte(p)); int64(len(out)) < size; seed = sha256.Sum256(seed[:]) {
		out = append(out, seed[:]...)
	}
	return out[:size]
}

// servable rewrites a parsed manifest so that its objects can be served:
// files get sizes and checksums of content the test makes up, pack objects
// hold their files at their offsets. Paths, types, modes, targets and
// offsets, what a hostile manifest would play with, are kept. ok is false
// for a manifest whose packs would take too much memory to build.
func servable(m *Manifest, prefix string) (objs map[string][]byte, ok bool) {
	alg, _ := checksumFor(m.Algorithm)
	objs = map[string][]byte{}
	packs := map[string][]byte{}
	for i := range m.Files {
		f := &m.Files[i]
		if f.Type != TypeFile {
			continue
		}
		data := fuzzContent(f.Path, f.Size)
		f.Size = int64(len(data))
		if f.Pack == "" {
			objs[prefix+f.Path] = data
			f.Checksum = alg.sum(data)
			continue
		}
		if f.Offset > 1<<20 {
			return nil, false
		}
		p := packs[f.Pack]
		if need := int(f.Offset) + len(data); need > len(p) {
			p = append(p, make([]byte, need-len(p))...)
		}
		copy(p[f.Offset:], data)
		packs[f.Pack] = p
	}
	for i := range m.Files { // overlapping files: each gets what its pack holds
		f := &m.Files[i]
		if f.Type == TypeFile && f.Pack != "" {
			f.Checksum = alg.sum(packs[f.Pack][f.Offset : f.Offset+f.Size])
		}
	}
	for k, p := range packs {
		objs[prefix+k] = p
	}
	return objs, true
}

// tree describes everything under dir but skip, to tell whether it changed.
func describe(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		var st syscall.Stat_t
		syscall.Lstat(p, &st)
		d := fmt.Sprintf("%o %d:%d %d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		if de.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			d += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		if de.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			d += " -> " + target
		}
		out[p] = d
		return nil
	})
	return out
}

// FuzzRestore drives a restore from arbitrary manifests into a job
// directory that sits between a symlink to the outside and the outside
// itself, and checks that nothing outside the job directory changed, the
// job directory's own owner and mode included, whatever the manifest says.
func FuzzRestore(f *testing.F) {
	file := func(p string, mode uint32) File {
		return File{Path: p, Type: TypeFile, Size: 10, Mode: mode, Checksum: "AAAAAA=="}
	}
	seed := func(files ...File) []byte {
		b, _ := json.Marshal(Manifest{Version: 1, Algorithm: ChecksumCRC32C, Complete: true, Files: files})
		return b
	}
	f.Add(seed(File{Path: "d", Type: TypeDir, Mode: 0o755}, file("d/f", 0o644), File{Path: "l", Type: TypeSymlink, Target: "../outside"}))
	f.Add(seed(File{Path: ".", Type: TypeDir, Mode: 0o777}, file("f", 0o4755)))
	f.Add(seed(File{Path: "up", Type: TypeSymlink, Target: "../outside"}, file("up/passwd", 0o666)))
	f.Add(seed(File{Path: "out", Type: TypeSymlink, Target: "/"}, File{Path: "out", Type: TypeDir, Mode: 0o777}))
	f.Add(seed(File{Path: "a", Type: TypeDir, Mode: 0o500}, file("a/b/c", 0o400), File{Path: "a/b", Type: TypeDir, Mode: 0}))
	f.Add(seed(File{Path: "p1", Type: TypeFile, Size: 5, Pack: PackDir + "x.pack", Offset: 0, Checksum: "AAAAAA=="},
		File{Path: "p2", Type: TypeFile, Size: 5, Pack: PackDir + "x.pack", Offset: 3, Checksum: "AAAAAA=="}))
	f.Add(seed(file(".spotrescue-restored.json", 0o644), file("_spotrescue/manifest.json", 0o644)))
	f.Add([]byte(`{"version":1,"checksum_algorithm":"SHA256","files":[{"path":"x","type":"file","size":3,"mode":511,"checksum":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}]}`))

	srv := &objects{}
	ts := httptest.NewServer(srv)
	f.Cleanup(ts.Close)
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(ts.URL), UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, DisableLogOutputChecksumValidationSkipped: true, RetryMaxAttempts: 1})
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4243 // root gives the restored files to a user, as the Prolog does
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		m.JobID, m.Run, m.Node = "7", 0, "node-a"
		const prefix = "p/c/7/run-0/node-a/"
		objs, ok := servable(m, prefix)
		if !ok {
			return
		}
		body, _ := json.Marshal(m)
		objs[ManifestKey(prefix)] = body
		srv.set(objs)

		top := t.TempDir()
		outside, job := filepath.Join(top, "outside"), filepath.Join(top, "scratch", "7")
		os.MkdirAll(filepath.Join(outside, "etc"), 0o755)
		os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0"), 0o644)
		os.MkdirAll(job, 0o700)
		os.Symlink(outside, filepath.Join(top, "scratch", "outside"))
		before := describe(t, top, job)
		jobBefore, _ := os.Lstat(job)

		dir, err := confine.OpenRoot(job)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		a := &Agent{S3: client, Log: zap.NewNop(), Concurrency: 2}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, rerr := a.Restore(ctx, RestoreRequest{JobID: "7", Node: "node-b", From: "node-a", URI: "s3://bucket/p/c/7/run-0/", Dir: dir, UID: uid, GID: gid})

		t.Logf("restore: %v", rerr)
		after := describe(t, top, job)
		for p, d := range before {
			if after[p] != d {
				t.Fatalf("restore (err %v) changed %s outside the job directory: %q -> %q", rerr, p, d, after[p])
			}
		}
		for p := range after {
			if _, ok := before[p]; !ok {
				t.Fatalf("restore (err %v) made %s outside the job directory", rerr, p)
			}
		}
		if jobAfter, _ := os.Lstat(job); jobAfter.Mode() != jobBefore.Mode() || jobAfter.Sys().(*syscall.Stat_t).Uid != jobBefore.Sys().(*syscall.Stat_t).Uid {
			t.Fatalf("restore changed the job directory itself: %v -> %v", jobBefore.Mode(), jobAfter.Mode())
		}
		entries, _ := os.ReadDir(job)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), reservedPrefix+"restore-") {
				t.Fatalf("staging directory %s left behind (err %v)", e.Name(), rerr)
			}
		}
		if rerr == nil {
			for _, file := range m.Files {
				info, err := os.Lstat(filepath.Join(job, file.Path))
				if err != nil {
					t.Fatalf("%s listed but not restored: %v", file.Path, err)
				}
				if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
					t.Fatalf("%s restored as %d:%d, want the job's %d:%d", file.Path, st.Uid, st.Gid, uid, gid)
				}
				if info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
					t.Fatalf("%s restored with %v", file.Path, info.Mode())
				}
			}
		}
	})
}
