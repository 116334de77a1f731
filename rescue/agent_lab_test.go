//go:build lab

package rescue_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// scratchTree writes a job directory with the kinds of entries a real job
// leaves: nested files, a large file (multipart), an empty dir, a symlink
// (to /, which must be stored, never followed), a FIFO and modes.
func scratchTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"out/step-001.dat":   randomBytes(t, 100_000),
		"out/step-002.dat":   randomBytes(t, 3),
		"model.ckpt":         randomBytes(t, 20<<20), // above the 8 MiB part size
		"notes with space":   []byte("hello\n"),
		"unicode-é-ü.txt":    []byte("ü\n"),
		"deep/a/b/c/d.bin":   randomBytes(t, 4096),
		"out/empty-file.txt": {},
	}
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o750)
	os.Symlink("/", filepath.Join(dir, "root-link"))
	syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600)
	os.Chmod(filepath.Join(dir, "out/step-002.dat"), 0o400)
	return files
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newAgent(t *testing.T, l *lab.Lab, root string) *rescue.Agent {
	return &rescue.Agent{S3: l.S3(), Log: zaptest.NewLogger(t), Root: root, Concurrency: 8, Checkpoint: time.Hour}
}

// Both checksum algorithms: recorded in the manifest, verified on restore.
// HOSTILE.md: "a FIFO in the job's tree": listed as skipped, never opened
// (an open would block the agent).
func TestRescueAndRestoreRoundTrip(t *testing.T) {
	for _, alg := range []string{"", rescue.ChecksumSHA256} {
		t.Run("checksum="+alg, func(t *testing.T) { roundTrip(t, alg) })
	}
}

func roundTrip(t *testing.T, alg string) {
	l := lab.Get(t)
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job-1")
	want := scratchTree(t, src)
	prefix := nodePrefix(t, l)
	plan := &rescue.Plan{ID: "p1", Instance: "i-0c0ffee0000000001", Node: "node-a", Bucket: "spotrescue-lab", Checksum: alg,
		Jobs: []rescue.PlanJob{{JobID: "1", Dir: src, Prefix: prefix}}}
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	res := a.Rescue(ctx, plan, rescue.Deadlines{Soft: time.Now().Add(time.Minute), Hard: time.Now().Add(90 * time.Second)})
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("rescue: %+v", res)
	}
	m := res[0].Manifest
	if !m.Complete || len(m.Skipped) != 1 || m.Skipped[0].Path != "pipe" || m.Skipped[0].Reason != rescue.SkipSpecial {
		t.Fatalf("manifest complete=%v skipped=%+v", m.Complete, m.Skipped)
	}
	if wantAlg := map[string]string{"": "CRC32C", "SHA256": "SHA256"}[alg]; m.Algorithm != wantAlg {
		t.Fatalf("checksum_algorithm %q, want %q", m.Algorithm, wantAlg)
	}
	assertExact(t, l, m, prefix)

	// The bytes in S3 are the bytes on the node.
	for rel, b := range want {
		out, err := l.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("spotrescue-lab"), Key: aws.String(prefix + rel)})
		if err != nil {
			t.Fatalf("get %s: %v", rel, err)
		}
		got, _ := io.ReadAll(out.Body)
		if !bytes.Equal(got, b) {
			t.Errorf("%s: S3 holds %d bytes, node had %d", rel, len(got), len(b))
		}
	}
	// The symlink to / was stored as a link, not followed.
	if _, err := l.S3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("spotrescue-lab"), Key: aws.String(prefix + "root-link/etc/passwd")}); err == nil {
		t.Fatal("the agent followed a symlink out of the scratch root")
	}

	dst := filepath.Join(root, "node-b", "job-1")
	r, err := restoreInto(t, a, dst, rescue.RestoreRequest{JobID: "1", Node: "node-b", From: "node-a", URI: "s3://spotrescue-lab/" + prefix[:len(prefix)-len("node-a/")], UID: os.Getuid(), GID: os.Getgid()})
	if err != nil || r.Status != "complete" {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	for rel, b := range want {
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("restored %s differs: %v", rel, err)
		}
		si, _ := os.Stat(filepath.Join(src, rel))
		di, _ := os.Stat(filepath.Join(dst, rel))
		if si.Mode() != di.Mode() || !si.ModTime().Equal(di.ModTime()) {
			t.Errorf("%s: mode/mtime %v %v, want %v %v", rel, di.Mode(), di.ModTime(), si.Mode(), si.ModTime())
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty-dir")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("empty dir: %v, %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "root-link")); err != nil || target != "/" {
		t.Errorf("symlink: %q, %v", target, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "node-b", ".spotrescue-restore-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary restore dirs left: %v", leftovers)
	}
}

// At the deadline the agent stops starting files and says so: the manifest
// is incomplete and lists what was not saved.
func TestDeadlineLeavesAnHonestManifest(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "n", "job")
	for i := range 200 {
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), randomBytes(t, 64<<10), 0o644)
	}
	prefix := nodePrefix(t, l)
	plan := &rescue.Plan{ID: "p2", Instance: "i-0c0ffee0000000002", Node: "n", Bucket: "spotrescue-lab", Jobs: []rescue.PlanJob{{JobID: "2", Dir: src, Prefix: prefix}}}
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.Concurrency = 1
	soft := time.Now().Add(300 * time.Millisecond)
	res := a.Rescue(context.Background(), plan, rescue.Deadlines{Soft: soft, Hard: soft.Add(2 * time.Second)})
	m := res[0].Manifest
	if m == nil || m.Complete || len(m.Files) == 0 || len(m.Skipped) == 0 || len(m.Files)+len(m.Skipped) != 200 {
		t.Fatalf("manifest: complete=%v files=%d skipped=%d", m.Complete, len(m.Files), len(m.Skipped))
	}
	for _, s := range m.Skipped {
		if s.Reason != rescue.SkipDeadline {
			t.Errorf("skipped %s for %q", s.Path, s.Reason)
		}
	}
	assertExact(t, l, m, prefix)
}

// HOSTILE.md: "a job directory that is a symlink out of the scratch root".
// It is refused: the job directory is opened beneath the scratch root
// without following a symlink at any component.
func TestRefusesJobDirOutsideRoot(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "n"), 0o755)
	os.Symlink("/etc", filepath.Join(root, "n", "job"))
	plan := &rescue.Plan{ID: "p3", Node: "n", Bucket: "spotrescue-lab", Jobs: []rescue.PlanJob{
		{JobID: "3", Dir: filepath.Join(root, "n", "job"), Prefix: "test/escape/"},
		{JobID: "4", Dir: "/etc", Prefix: "test/escape2/"},
	}}
	res := newAgent(t, l, filepath.Join(root, "{node}")).Rescue(context.Background(), plan, inAMinute())
	for _, r := range res {
		if r.Err == nil {
			t.Errorf("job %s: rescued a directory outside the scratch root", r.JobID)
		}
	}
}
