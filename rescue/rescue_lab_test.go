//go:build lab

package rescue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/confine"
)

const bucket = "spotrescue-lab"

// nodePrefix returns a fresh node prefix (<run>/node-a/) and removes what
// the test leaves under it, so the emulator does not grow run after run.
func nodePrefix(t *testing.T, l *lab.Lab) string {
	t.Helper()
	run := fmt.Sprintf("test/%s/%d/run-0/", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		for _, k := range listKeys(t, l, run) {
			l.S3().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		}
	})
	return run + "node-a/"
}

func runURI(nodePrefix string) string {
	return "s3://" + bucket + "/" + strings.TrimSuffix(nodePrefix, "node-a/")
}

func listKeys(t *testing.T, l *lab.Lab, prefix string) []string {
	t.Helper()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(l.S3(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys)
	return keys
}

func openUploads(t *testing.T, l *lab.Lab, prefix string) []s3types.MultipartUpload {
	t.Helper()
	out, err := l.S3().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return out.Uploads
}

// manifestKeys is what S3 must hold under prefix according to m: the
// manifest, and each file's object or pack, once.
func manifestKeys(m *rescue.Manifest, prefix string) []string {
	seen := map[string]bool{rescue.ManifestKey(prefix): true}
	for _, f := range m.Files {
		if f.Type == rescue.TypeFile {
			seen[f.ObjectKey(prefix)] = true
		}
	}
	var keys []string
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// content is a saved file's bytes as S3 holds them, from its own object
// or cut out of its pack.
func content(t *testing.T, l *lab.Lab, prefix string, f rescue.File) []byte {
	t.Helper()
	b, err := object(t, l, f.ObjectKey(prefix))
	if err != nil || f.Offset+f.Size > int64(len(b)) {
		t.Fatalf("%s: object %s: %d bytes, %v", f.Path, f.ObjectKey(prefix), len(b), err)
	}
	return b[f.Offset : f.Offset+f.Size]
}

func entry(m *rescue.Manifest, p string) (rescue.File, bool) {
	for _, f := range m.Files {
		if f.Path == p {
			return f, true
		}
	}
	return rescue.File{}, false
}

// assertExact fails unless S3 holds exactly the manifest's objects under
// prefix, with the manifest's bytes, and no multipart upload is open there.
func assertExact(t *testing.T, l *lab.Lab, m *rescue.Manifest, prefix string) {
	t.Helper()
	got, want := listKeys(t, l, prefix), manifestKeys(m, prefix)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("S3 holds\n  %s\nthe manifest lists\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if ups := openUploads(t, l, prefix); len(ups) != 0 {
		t.Errorf("%d multipart upload(s) left open, first %s", len(ups), aws.ToString(ups[0].Key))
	}
	stored, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix)
	if err != nil || stored.Complete != m.Complete || len(stored.Files) != len(m.Files) || len(stored.Skipped) != len(m.Skipped) {
		t.Errorf("manifest in S3 differs from the one returned: %+v, %v", stored, err)
	}
}

// restoreInto restores into dst, made if missing and opened by handle as
// the Prolog's scratch directory is.
func restoreInto(t *testing.T, a *rescue.Agent, dst string, req rescue.RestoreRequest) (*rescue.Restored, error) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := confine.OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	req.Dir = d
	return a.Restore(context.Background(), req)
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func object(t *testing.T, l *lab.Lab, key string) ([]byte, error) {
	t.Helper()
	out, err := l.S3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// tree lists a directory as path -> "file <size>", "dir" or "symlink -> target".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink -> " + target
		case de.IsDir():
			out[rel] = "dir"
		default:
			out[rel] = fmt.Sprintf("file %d", info.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func manifestTree(m *rescue.Manifest) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		switch f.Type {
		case rescue.TypeFile:
			out[f.Path] = fmt.Sprintf("file %d", f.Size)
		case rescue.TypeDir:
			out[f.Path] = "dir"
		case rescue.TypeSymlink:
			out[f.Path] = "symlink -> " + f.Target
		}
	}
	return out
}

func sameTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: restored as %q, manifest says %q", p, got[p], w)
		}
	}
	for p, g := range got {
		if want[p] == "" {
			t.Errorf("%s (%s) restored but not in the manifest", p, g)
		}
	}
}

func skippedFor(m *rescue.Manifest) map[string]string {
	out := map[string]string{}
	for _, s := range m.Skipped {
		out[s.Path] = s.Reason
	}
	return out
}

// At the hard stop the agent aborts the multipart uploads in flight: no
// orphaned parts, and the manifest lists exactly the objects S3 holds.
func TestHardStopAbortsUploadsAndManifestIsExact(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "n", "job")
	for i := range 4 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("first-%d.ckpt", i)), randomBytes(t, 64<<10))
	}
	for i := range 2 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("big-%d.bin", i)), bytes.Repeat([]byte{byte(i + 1)}, 12<<20))
	}
	for i := range 20 {
		writeFile(t, filepath.Join(src, "later", fmt.Sprintf("f%02d.dat", i)), randomBytes(t, 16<<10))
	}
	prefix := nodePrefix(t, l)
	core, logs := observer.New(zap.InfoLevel)
	a := &rescue.Agent{S3: l.S3(), Log: zap.New(core), Root: filepath.Join(root, "{node}"), Concurrency: 2, PartBuffers: 4, PartSize: 5 << 20, Checkpoint: time.Hour}
	now := time.Now()
	d := rescue.Deadlines{Soft: now.Add(1500 * time.Millisecond), Hard: now.Add(2 * time.Second)}
	// The second part of each big file waits for the hard stop: both
	// uploads are surely open then, with a part sent and one to go.
	rescue.SetBeforePart(a, func(rel string, part int32) {
		if strings.HasPrefix(rel, "big-") && part == 2 {
			time.Sleep(time.Until(d.Hard.Add(50 * time.Millisecond)))
		}
	})
	plan := &rescue.Plan{ID: "hard", Instance: "i-0c0ffee0000000011", Node: "n", Bucket: bucket, Priority: []string{"*.ckpt", "big-*"},
		Jobs: []rescue.PlanJob{{JobID: "11", Dir: src, Prefix: prefix}}}
	res := a.Rescue(context.Background(), plan, d)
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	m := res[0].Manifest
	if m.Complete {
		t.Fatal("an interrupted rescue says complete")
	}
	skipped := skippedFor(m)
	for i := range 4 {
		if p := fmt.Sprintf("first-%d.ckpt", i); manifestTree(m)[p] == "" {
			t.Errorf("priority file %s not saved (skipped: %q)", p, skipped[p])
		}
	}
	for _, p := range []string{"big-0.bin", "big-1.bin", "later/f00.dat"} {
		if skipped[p] != rescue.SkipDeadline {
			t.Errorf("%s: skipped for %q, want %q", p, skipped[p], rescue.SkipDeadline)
		}
	}
	if n := logs.FilterMessage("multipart upload aborted").Len(); n != 2 {
		t.Errorf("%d multipart uploads aborted at the hard stop, want 2", n)
	}
	assertExact(t, l, m, prefix)
}

// A partial rescue restores exactly what its manifest lists: not the files
// skipped, and not an object under the prefix the manifest does not name.
func TestRestoreOfPartialRescueIsExact(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	for i := range 150 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%03d", i)), randomBytes(t, 32<<10))
	}
	os.MkdirAll(filepath.Join(src, "empty"), 0o710)
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.Concurrency = 1
	plan := &rescue.Plan{ID: "partial", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "12", Dir: src, Prefix: prefix}}}
	soft := time.Now().Add(250 * time.Millisecond)
	m := a.Rescue(context.Background(), plan, rescue.Deadlines{Soft: soft, Hard: soft.Add(2 * time.Second)})[0].Manifest
	if m == nil || m.Complete || len(m.Skipped) == 0 || len(m.Files) < 5 {
		t.Fatalf("want a partial rescue with some files: %+v", m)
	}
	assertExact(t, l, m, prefix)
	stray := prefix + "d0/stray.dat"
	if _, err := l.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(stray), Body: strings.NewReader("not listed")}); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(root, "node-b", "job")
	os.MkdirAll(dst, 0o700) // the Prolog creates it before restoring
	r, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "12", Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()})
	if err != nil || r.Status != "partial" || r.Files != m.RegularFiles() {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	sameTree(t, tree(t, dst), manifestTree(m))
	for _, f := range m.Files {
		if f.Type != rescue.TypeFile {
			continue
		}
		got, _ := os.ReadFile(filepath.Join(dst, f.Path))
		want, _ := os.ReadFile(filepath.Join(src, f.Path))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: restored bytes differ", f.Path)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || fi.Mode().Perm() != 0o710 {
		t.Errorf("empty dir: %v, %v", fi, err)
	}
}

// HOSTILE.md: "a file rewritten while the agent reads it". It is read
// again; one that never stops changing is skipped, and leaves no object
// and no open upload.
func TestFileChangedWhileReadIsCaught(t *testing.T) {
	l := lab.Get(t)
	for _, c := range []struct {
		name   string
		size   int
		writes int // how many reads are spoiled by a write
		pack   bool
	}{
		{"small once", 100 << 10, 1, false},
		{"large once", 12 << 20, 1, false}, // multipart: 3 parts of 5 MiB
		{"packed once", 100 << 10, 1, true},
		{"small always", 100 << 10, 99, false},
		{"large always", 12 << 20, 99, false},
		{"packed always", 100 << 10, 99, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			src := filepath.Join(root, "n", "job")
			target := filepath.Join(src, "hot.dat")
			writeFile(t, target, randomBytes(t, c.size))
			writeFile(t, filepath.Join(src, "calm.dat"), []byte("calm\n"))
			prefix := nodePrefix(t, l)
			a := newAgent(t, l, filepath.Join(root, "{node}"))
			a.PartSize = 5 << 20
			spoiled := 0
			rescue.SetAfterRead(a, func(rel string) {
				if rel == "hot.dat" && spoiled < c.writes {
					spoiled++
					rewriteKeepingMtime(t, target)
				}
			})
			plan := &rescue.Plan{ID: "hot", Node: "n", Bucket: bucket, Pack: c.pack, Jobs: []rescue.PlanJob{{JobID: "13", Dir: src, Prefix: prefix}}}
			m := a.Rescue(context.Background(), plan, inAMinute())[0].Manifest
			assertExact(t, l, m, prefix)
			if calm, ok := entry(m, "calm.dat"); !ok || string(content(t, l, prefix, calm)) != "calm\n" || (calm.Pack != "") != c.pack {
				t.Fatalf("calm.dat: %+v", calm)
			}
			hot, listed := entry(m, "hot.dat")
			if c.writes == 1 {
				want, _ := os.ReadFile(target)
				if !listed || !bytes.Equal(content(t, l, prefix, hot), want) || !m.Complete || spoiled != 1 {
					t.Fatalf("re-read: listed=%v complete=%v spoiled=%d", listed, m.Complete, spoiled)
				}
				return
			}
			_, err := object(t, l, prefix+"hot.dat")
			if skippedFor(m)["hot.dat"] != rescue.SkipChanging || listed || m.Complete || err == nil || spoiled != 2 {
				t.Fatalf("always changing: skipped=%q listed=%v complete=%v object err=%v reads spoiled=%d", skippedFor(m)["hot.dat"], listed, m.Complete, err, spoiled)
			}
		})
	}
}

// rewriteKeepingMtime changes a file's content in place without changing
// its size or mtime, as a careful writer (or rsync -t) would: only ctime
// gives it away.
func rewriteKeepingMtime(t *testing.T, p string) {
	fi, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	f.WriteAt(randomBytes(t, 4096), 0)
	f.Close()
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

// HOSTILE.md: "a symlink in the tree to /etc/passwd". It is saved as the
// link it is; the agent never reads through it, and a restore recreates
// the link.
func TestSymlinkToPasswdIsStoredNotFollowed(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFile(t, filepath.Join(src, "data.txt"), []byte("data\n"))
	os.Symlink("/etc/passwd", filepath.Join(src, "passwd-link"))
	os.Symlink("/etc", filepath.Join(src, "etc-link"))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	plan := &rescue.Plan{ID: "link", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "14", Dir: src, Prefix: prefix}}}
	m := a.Rescue(context.Background(), plan, inAMinute())[0].Manifest
	got := manifestTree(m)
	if got["passwd-link"] != "symlink -> /etc/passwd" || got["etc-link"] != "symlink -> /etc" || !m.Complete {
		t.Fatalf("manifest: %v complete=%v", got, m.Complete)
	}
	assertExact(t, l, m, prefix) // no object for either link, nothing below etc-link
	passwd, _ := os.ReadFile("/etc/passwd")
	for _, k := range listKeys(t, l, prefix) {
		if b, _ := object(t, l, k); len(passwd) > 0 && bytes.Equal(b, passwd) {
			t.Fatalf("%s holds /etc/passwd", k)
		}
	}
	dst := filepath.Join(root, "node-b", "job")
	if _, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "14", Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()}); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "passwd-link")); err != nil || target != "/etc/passwd" {
		t.Fatalf("restored link: %q, %v", target, err)
	}
}

// A pre-sync copies everything with no deadline; the final rescue then
// sends only what changed, carries the rest, and removes what is gone.
func TestPresyncThenFinalMovesOnlyChanges(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	for i := range 5 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("keep-%d.dat", i)), randomBytes(t, 200<<10))
	}
	writeFile(t, filepath.Join(src, "big.bin"), randomBytes(t, 12<<20)) // multipart
	writeFile(t, filepath.Join(src, "grows.log"), randomBytes(t, 100<<10))
	writeFile(t, filepath.Join(src, "sneaky.dat"), randomBytes(t, 100<<10))
	writeFile(t, filepath.Join(src, "tmp", "gone.dat"), randomBytes(t, 50<<10))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.PartSize = 5 << 20
	plan := &rescue.Plan{ID: "pre", Node: "node-a", Bucket: bucket, Checksum: "SHA256", Jobs: []rescue.PlanJob{{JobID: "15", Run: 2, Dir: src, Prefix: prefix}}}

	// The deadline has passed already: a pre-sync ignores it.
	past := rescue.Deadlines{Soft: time.Now().Add(-time.Minute), Hard: time.Now().Add(-time.Minute)}
	plan.Presync = true
	pre := a.Rescue(context.Background(), plan, past)[0]
	total := int64(5*200<<10 + 12<<20 + 100<<10 + 100<<10 + 50<<10)
	if pre.Err != nil || !pre.Manifest.Presync || pre.Manifest.Complete || pre.Manifest.Uploaded != total || len(pre.Manifest.Skipped) != 0 {
		t.Fatalf("pre-sync: %+v, %v", pre.Manifest, pre.Err)
	}
	assertExact(t, l, pre.Manifest, prefix)

	f, _ := os.OpenFile(filepath.Join(src, "grows.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(randomBytes(t, 10<<10))
	f.Close()
	rewriteKeepingMtime(t, filepath.Join(src, "sneaky.dat")) // same size and mtime: only the checksum tells
	os.Remove(filepath.Join(src, "tmp", "gone.dat"))
	writeFile(t, filepath.Join(src, "new.dat"), randomBytes(t, 30<<10))

	plan.Presync = false
	final := a.Rescue(context.Background(), plan, inAMinute())[0]
	m := final.Manifest
	moved := int64(110<<10 + 100<<10 + 30<<10) // grows.log, sneaky.dat, new.dat
	if final.Err != nil || !m.Complete || m.Presync || m.Uploaded != moved || m.Carried != 6 || m.Algorithm != rescue.ChecksumSHA256 {
		t.Fatalf("final: uploaded %d bytes (want %d), carried %d (want 6), complete=%v presync=%v alg=%s err=%v",
			m.Uploaded, moved, m.Carried, m.Complete, m.Presync, m.Algorithm, final.Err)
	}
	assertExact(t, l, m, prefix) // tmp/gone.dat's object is deleted
	for _, p := range []string{"sneaky.dat", "grows.log", "keep-3.dat"} {
		got, _ := object(t, l, prefix+p)
		want, _ := os.ReadFile(filepath.Join(src, p))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: S3 holds a stale copy", p)
		}
	}
	dst := filepath.Join(root, "node-b", "job")
	r, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "15", Run: 2, Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()})
	if err != nil || r.Status != "complete" {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	sameTree(t, tree(t, dst), tree(t, src))
}

// Once a final rescue has written the prefix, a pre-sync (late, or still
// running) must not overwrite its manifest.
func TestPresyncNeverOverwritesAFinalManifest(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFile(t, filepath.Join(src, "a.dat"), randomBytes(t, 1000))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	plan := &rescue.Plan{ID: "late", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "16", Dir: src, Prefix: prefix}}}
	d := inAMinute()
	if r := a.Rescue(context.Background(), plan, d)[0]; r.Err != nil || !r.Manifest.Complete {
		t.Fatalf("final rescue: %+v", r)
	}
	writeFile(t, filepath.Join(src, "b.dat"), randomBytes(t, 1000))
	plan.Presync = true
	r := a.Rescue(context.Background(), plan, d)[0]
	if !errors.Is(r.Err, rescue.ErrSuperseded) {
		t.Fatalf("pre-sync after the final rescue: %v", r.Err)
	}
	stored, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix)
	if err != nil || stored.Presync || !stored.Complete || len(stored.Files) != 1 {
		t.Fatalf("the final manifest was overwritten: %+v, %v", stored, err)
	}
}

// HOSTILE.md: "a manifest whose paths escape the directory" and "objects
// that do not match their checksums". A restore refuses either; the target
// is left as it was and no staging directory remains.
func TestRestoreRefusesBadManifests(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFile(t, filepath.Join(src, "a.dat"), randomBytes(t, 5000))
	writeFile(t, filepath.Join(src, "b.dat"), randomBytes(t, 5000))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	plan := &rescue.Plan{ID: "bad", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "17", Dir: src, Prefix: prefix}}}
	if r := a.Rescue(context.Background(), plan, inAMinute())[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	put := func(key, body string) {
		if _, err := l.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() error {
		dst := filepath.Join(root, "node-b", "job")
		os.MkdirAll(dst, 0o700)
		_, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "17", Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()})
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("a failed restore left %d entries in the target", len(entries))
		}
		if left, _ := filepath.Glob(filepath.Join(root, "node-b", ".spotrescue-restore-*")); len(left) != 0 {
			t.Errorf("temporary directories left: %v", left)
		}
		return err
	}

	put(prefix+"b.dat", "tampered")
	if err := restore(); err == nil || !strings.Contains(err.Error(), "b.dat") {
		t.Errorf("tampered object: %v", err)
	}
	put(rescue.ManifestKey(prefix), `{"version":1,"checksum_algorithm":"CRC32C","files":[{"path":"../escape","type":"file","size":1,"checksum":"AAAAAA=="}]}`)
	put(strings.TrimSuffix(prefix, "node-a/")+"escape", "x")
	if err := restore(); err == nil {
		t.Error("a manifest with ../escape was restored")
	}
	if _, err := os.Stat(filepath.Join(root, "node-b", "escape")); err == nil {
		t.Error("a file was written outside the target")
	}

	// HOSTILE.md: "a manifest of another job, run or node at the job's
	// prefix". Compute nodes can write anywhere under the cluster's prefix;
	// a well-formed manifest that is not the one asked for is refused.
	good := fmt.Sprintf(`{"version":1,"job_id":%%q,"run":%%d,"node":%%q,"checksum_algorithm":"CRC32C","files":[{"path":"x","type":"dir","mode":493}]}`)
	for _, forged := range []string{fmt.Sprintf(good, "18", 0, "node-a"), fmt.Sprintf(good, "17", 1, "node-a"), fmt.Sprintf(good, "17", 0, "node-c")} {
		put(rescue.ManifestKey(prefix), forged)
		if err := restore(); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("a manifest of another job, run or node (%s): %v", forged, err)
		}
	}

	// HOSTILE.md: "a scratch directory that already holds data". What a run
	// of the job left there since the rescue is at least as new: nothing is
	// restored over it, and it stays as it is.
	put(rescue.ManifestKey(prefix), fmt.Sprintf(good, "17", 0, "node-a"))
	dst := filepath.Join(root, "node-b", "busy")
	writeFile(t, filepath.Join(dst, "newer.dat"), []byte("written by run 1"))
	if _, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "17", Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()}); !errors.Is(err, rescue.ErrInUse) {
		t.Errorf("restore into a directory in use: %v, want ErrInUse", err)
	}
	if got := tree(t, dst); len(got) != 1 || got["newer.dat"] == "" {
		t.Errorf("the directory in use changed: %v", got)
	}
}

// With packing on, small files travel in a few pack objects; large files
// stay objects of their own; a restore and an incremental rescue work the
// same, and S3 still holds exactly what the manifest names.
func TestPackedRescue(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	for i := range 400 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%03d.dat", i)), randomBytes(t, 4<<10+i*37))
	}
	writeFile(t, filepath.Join(src, "empty.dat"), nil)
	writeFile(t, filepath.Join(src, "big.bin"), randomBytes(t, 6<<20)) // above the pack limit: its own object
	os.Symlink("d0/f000.dat", filepath.Join(src, "link"))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.PartSize = 5 << 20
	plan := &rescue.Plan{ID: "pack", Node: "node-a", Bucket: bucket, Pack: true, Presync: true, Jobs: []rescue.PlanJob{{JobID: "18", Dir: src, Prefix: prefix}}}
	d := inAMinute()
	pre := a.Rescue(context.Background(), plan, d)[0].Manifest
	assertExact(t, l, pre, prefix)
	packs := map[string]bool{}
	for _, f := range pre.Files {
		if f.Pack != "" {
			packs[f.Pack] = true
		}
	}
	if big, _ := entry(pre, "big.bin"); big.Pack != "" || len(packs) == 0 || len(packs) > 3 {
		t.Fatalf("%d packs for ~2.6 MiB of small files; big.bin in %q", len(packs), big.Pack)
	}

	// The final rescue sends only the changed small file, in a new pack.
	changed := filepath.Join(src, "d1", "f001.dat")
	writeFile(t, changed, randomBytes(t, 1000))
	os.Remove(filepath.Join(src, "d2", "f002.dat"))
	plan.Presync = false
	final := a.Rescue(context.Background(), plan, d)[0].Manifest
	if !final.Complete || final.Uploaded != 1000 || final.Carried != 400 {
		t.Fatalf("final: complete=%v uploaded=%d carried=%d", final.Complete, final.Uploaded, final.Carried)
	}
	// What each rescue cost: the pre-sync a PUT per pack, big.bin's
	// multipart upload (create, 2 parts, complete) and its manifest(s);
	// the final one the new pack and its manifest.
	if pre.Requests < int64(len(packs))+5 || final.Requests != 2 {
		t.Errorf("S3 requests: pre-sync %d for %d packs and big.bin, final %d (want 2)", pre.Requests, len(packs), final.Requests)
	}
	assertExact(t, l, final, prefix)
	if f, _ := entry(final, "d1/f001.dat"); packs[f.Pack] || !bytes.Equal(content(t, l, prefix, f), mustRead(t, changed)) {
		t.Fatalf("changed file: in pack %q (old pack: %v)", f.Pack, packs[f.Pack])
	}

	dst := filepath.Join(root, "node-b", "job")
	r, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "18", Node: "node-b", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()})
	if err != nil || r.Status != "complete" {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	sameTree(t, tree(t, dst), tree(t, src))
	for _, p := range []string{"d3/f399.dat", "d1/f001.dat", "big.bin", "empty.dat"} {
		if !bytes.Equal(mustRead(t, filepath.Join(dst, p)), mustRead(t, filepath.Join(src, p))) {
			t.Errorf("%s: restored bytes differ", p)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// While a rescue runs, the manifest at the prefix is an interim one that
// says so and lists only what is already in S3; the last one is not interim.
func TestInterimManifestsSayWhatIsSavedSoFar(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFiles(t, src, 4, 10<<10)
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.Concurrency, a.Checkpoint = 1, 20*time.Millisecond
	seen := make(chan *rescue.Manifest, 1)
	rescue.SetAfterRead(a, func(rel string) {
		if rel != "f-3.dat" { // the oldest, sent last
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if m, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix); err == nil && len(m.Files) >= 3 {
				seen <- m
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(seen)
	})
	// Oldest last: f-3 is sent after f-0..f-2.
	for i := range 4 {
		mt := time.Now().Add(-time.Duration(i) * time.Hour)
		os.Chtimes(filepath.Join(src, fmt.Sprintf("f-%d.dat", i)), mt, mt)
	}
	d := inAMinute()
	r := a.Rescue(context.Background(), &rescue.Plan{ID: "interim", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "79", Dir: src, Prefix: prefix}}}, d)[0]
	mid, ok := <-seen
	if !ok {
		t.Fatal("no interim manifest listed the first files while the last one was being sent")
	}
	if !mid.Interim || mid.Complete {
		t.Errorf("mid-rescue manifest: interim=%v complete=%v", mid.Interim, mid.Complete)
	}
	for _, f := range mid.Files {
		if f.Path == "f-3.dat" {
			t.Error("the interim manifest lists a file not yet sent")
		}
	}
	if r.Err != nil || r.Manifest.Interim || !r.Manifest.Complete {
		t.Fatalf("last manifest: %+v, %v", r.Manifest, r.Err)
	}
	stored, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix)
	if err != nil || stored.Interim || !stored.Complete || len(stored.Files) != 4 {
		t.Fatalf("manifest in S3: %+v, %v", stored, err)
	}
}

// inAMinute is a deadline no test here reaches.
func inAMinute() rescue.Deadlines {
	t := time.Now().Add(time.Minute)
	return rescue.Deadlines{Soft: t, Hard: t}
}
