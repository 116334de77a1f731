//go:build lab

package rescue_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// The tests here play a job's user, a real unprivileged account of the lab,
// against the root agent: every name, symlink, hard link and rename in the
// job's tree is theirs, and they change them while root works. Each test
// names the case of testdata/HOSTILE.md it covers (TestHostileNodeDoc
// keeps the two in step).

// userTree makes a world-traversable directory (the lab's users must reach
// their files in it) that the test removes.
func userTree(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "spotrescue-sec-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// chownTree gives every entry under dir (and dir) to a.
func chownTree(t *testing.T, dir string, a lab.Account) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, a.UID, a.GID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes everything under dir, owners, modes, times and
// content included, to tell whether anything there changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode %o uid %d gid %d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case de.Type().IsRegular():
			data, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" sha256 %x", sha256.Sum256(data))
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	var diffs []string
	for k := range keys {
		if before[k] != after[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %q -> %q", k, before[k], after[k]))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s changed:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

// HOSTILE.md: "a directory of the tree swapped with a symlink out of it, in
// a loop, during a rescue". The job's user exchanges a directory of 600
// files with a symlink to a directory outside the tree (renameat2
// RENAME_EXCHANGE, as fast as it can) while the root agent rescues the job,
// several times over. Nothing from outside may reach S3: the agent opens
// every name beneath the job directory's handle and never through a
// symlink. The outside files are world-readable, so reading as the user
// does not stop this attack: the handle does.
func TestSwapLoopNeverLeaksOutsideTheTree(t *testing.T) {
	l := lab.Get(t)
	alice := lab.User(t, lab.Alice)
	base := userTree(t)
	job := filepath.Join(base, "n", "job")
	for i := range 600 {
		writeFile(t, filepath.Join(job, "d", fmt.Sprintf("f-%03d", i)), []byte(fmt.Sprintf("inside %03d\n", i)))
		writeFile(t, filepath.Join(base, "outside", fmt.Sprintf("f-%03d", i)), []byte(fmt.Sprintf("OUTSIDE SECRET %03d\n", i)))
	}
	chownTree(t, job, alice)
	if err := l.AsUser(t, alice, "symlink", filepath.Join(base, "outside"), filepath.Join(job, "link")); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, l, filepath.Join(base, "{node}"))
	a.Log = zap.NewNop()
	stop := l.Attack(t, alice, "swap", filepath.Join(job, "d"), filepath.Join(job, "link"))
	uid := alice.UID
	seen := map[string]int{}
	for round := range 4 {
		prefix := nodePrefix(t, l)
		plan := &rescue.Plan{ID: fmt.Sprintf("swap-%d", round), Node: "n", Bucket: bucket,
			Jobs: []rescue.PlanJob{{JobID: "61", Dir: job, Prefix: prefix, UID: &uid}}}
		r := a.Rescue(context.Background(), plan, inAMinute())[0]
		if r.Err != nil {
			t.Fatalf("round %d: %v", round, r.Err)
		}
		for _, f := range r.Manifest.Files {
			if f.Type == rescue.TypeFile {
				seen[strings.SplitN(f.Path, "/", 2)[0]]++
			}
		}
		for _, k := range listKeys(t, l, prefix) {
			data, err := object(t, l, k)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte("OUTSIDE")) {
				t.Fatalf("round %d: %s holds a file from outside the job's tree: %q", round, k, data)
			}
		}
	}
	swaps := stop()
	// The attack ran against the rescues when it swapped all along and the
	// scans met the directory (under either name: files under link/ are
	// the inside directory seen mid-swap; which name a scan meets is luck).
	if swaps < 1000 || seen["d"]+seen["link"] == 0 {
		t.Fatalf("the attack did not run against the rescues: %d swaps, files saved per top directory %v", swaps, seen)
	}
	t.Logf("%d swaps during 4 rescues; files saved below d/ %d, below link/ %d; none from outside", swaps, seen["d"], seen["link"])
}

// HOSTILE.md: "a hard link to a file the job's user cannot read". The agent
// reads a job's files as the job's user: a hard link to a root-only file
// (fs.protected_hardlinks stops users making one; an administrator's
// backup script, a file left from before the user was given the tree, or a
// node without that setting may not) is refused by the kernel and listed as
// unreadable, and a file the user cannot read themselves is not saved.
func TestFilesAreReadAsTheJobsUser(t *testing.T) {
	l := lab.Get(t)
	alice := lab.User(t, lab.Alice)
	base := userTree(t)
	job := filepath.Join(base, "n", "job")
	writeFile(t, filepath.Join(job, "mine.dat"), []byte("alice's own"))
	chownTree(t, job, alice)
	secret := filepath.Join(base, "root-only")
	writeFile(t, secret, []byte("ROOT SECRET"))
	os.Chmod(secret, 0o600)
	if err := os.Link(secret, filepath.Join(job, "linked.dat")); err != nil {
		t.Fatal(err)
	}
	prefix := nodePrefix(t, l)
	uid := alice.UID
	a := newAgent(t, l, filepath.Join(base, "{node}"))
	r := a.Rescue(context.Background(), &rescue.Plan{ID: "link", Node: "n", Bucket: bucket,
		Jobs: []rescue.PlanJob{{JobID: "62", Dir: job, Prefix: prefix, UID: &uid}}}, inAMinute())[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := skippedFor(r.Manifest)["linked.dat"]; got != rescue.SkipUnreadable {
		t.Errorf("the hard link to a root-only file: skipped %q, want %q", got, rescue.SkipUnreadable)
	}
	if _, ok := entry(r.Manifest, "mine.dat"); !ok {
		t.Error("the user's own file was not saved")
	}
	for _, k := range listKeys(t, l, prefix) {
		if data, _ := object(t, l, k); bytes.Contains(data, []byte("ROOT SECRET")) {
			t.Fatalf("%s holds the root-only file", k)
		}
	}
	// HOSTILE.md: "a job directory another user owns". It is not the job's:
	// nothing in it is read.
	mallory := lab.User(t, lab.Mallory)
	planted := filepath.Join(base, "n", "planted")
	writeFile(t, filepath.Join(planted, "x"), []byte("mallory's"))
	chownTree(t, planted, mallory)
	r = a.Rescue(context.Background(), &rescue.Plan{ID: "planted", Node: "n", Bucket: bucket,
		Jobs: []rescue.PlanJob{{JobID: "63", Dir: planted, Prefix: nodePrefix(t, l), UID: &uid}}}, inAMinute())[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "not the job's user") {
		t.Errorf("a directory another user owns was rescued for the job: %+v", r)
	}
}

// forgeManifest writes a manifest at prefix, as any user of a compute node
// can with the nodes' role.
func forgeManifest(t *testing.T, l *lab.Lab, prefix string, m rescue.Manifest) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(rescue.ManifestKey(prefix)), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
}

// HOSTILE.md: "a manifest with \".\" and racing symlink swaps during a
// restore". A manifest naming the directory itself is refused before
// anything is written; a real one is restored while the job's user swaps
// their job directory with a symlink to a root-owned directory and plants
// symlinks and directories under the names being restored, in loops.
// Nothing outside the job's scratch directory changes, whatever the race
// does to the restore itself.
func TestRestoreUnderSwapsChangesNothingOutside(t *testing.T) {
	l := lab.Get(t)
	alice := lab.User(t, lab.Alice)
	base := userTree(t)
	victim := filepath.Join(base, "victim")
	writeFile(t, filepath.Join(victim, "passwd"), []byte("root:x:0:0\n"))
	// Entries under the names the restore moves into place: replacing or
	// removing what is at a name, through a swapped directory, would reach them.
	writeFile(t, filepath.Join(victim, "a", "keep"), []byte("keep"))
	writeFile(t, filepath.Join(victim, "b"), []byte("keep"))
	userDir := filepath.Join(base, "node-b", alice.Name)
	os.Mkdir(filepath.Join(base, "node-b"), 0o755)
	os.Mkdir(userDir, 0o700)
	chownTree(t, userDir, alice)
	before := snapshot(t, victim)

	// What a real rescue of run 0 saved.
	src := filepath.Join(base, "node-a", "job")
	writeFile(t, filepath.Join(src, "a", "f1"), []byte("one"))
	writeFile(t, filepath.Join(src, "a", "sub", "f2"), []byte("two"))
	writeFile(t, filepath.Join(src, "b"), []byte("bee"))
	os.Symlink("/etc/shadow", filepath.Join(src, "c"))
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(base, "{node}"))
	a.Log = zap.NewNop()
	res := a.Rescue(context.Background(), &rescue.Plan{ID: "src", Node: "node-a", Bucket: bucket,
		Jobs: []rescue.PlanJob{{JobID: "64", Dir: src, Prefix: prefix}}}, inAMinute())[0]
	if res.Err != nil || !res.Manifest.Complete {
		t.Fatalf("rescue: %+v", res)
	}
	good := *res.Manifest

	// A manifest with "." (mode 0777, the user's) is refused outright.
	forged := good
	forged.Files = append([]rescue.File{{Path: ".", Type: rescue.TypeDir, Mode: 0o777, MTime: time.Unix(0, 0)}}, good.Files...)
	forgeManifest(t, l, prefix, forged)
	dst := filepath.Join(userDir, "64")
	if _, err := restoreAs(t, a, dst, alice, runURI(prefix)); err == nil || !strings.Contains(err.Error(), `"."`) {
		t.Errorf("a manifest naming the directory itself: %v", err)
	}
	forgeManifest(t, l, prefix, good)

	// The races: the job directory swapped with a symlink to the victim,
	// and symlinks and directories churned under the restored names.
	if err := l.AsUser(t, alice, "symlink", victim, filepath.Join(userDir, "link")); err != nil {
		t.Fatal(err)
	}
	restored, inUse, collided := 0, 0, 0
	for round := range 30 {
		dst := filepath.Join(userDir, "64")
		os.RemoveAll(dst)
		os.RemoveAll(filepath.Join(userDir, "elsewhere"))
		stops := []func() int{
			l.Attack(t, alice, "churn", dst, "a", victim),
			l.Attack(t, alice, "churn", dst, "b", filepath.Join(victim, "passwd")),
		}
		if round%2 == 1 {
			stops = append(stops, l.Attack(t, alice, "swap", dst, filepath.Join(userDir, "link")))
		}
		_, err := restoreAs(t, a, dst, alice, runURI(prefix))
		for _, stop := range stops {
			stop()
		}
		switch {
		case errors.Is(err, rescue.ErrInUse):
			inUse++ // refused before anything was staged
		case err != nil:
			collided++ // staged, then a move met a planted entry
		default:
			restored++
		}
		// Undo the swap, if the loop stopped mid-way, for the next round.
		if fi, err := os.Lstat(dst); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			os.Rename(dst, filepath.Join(userDir, "elsewhere"))
		}
		os.Remove(filepath.Join(userDir, "link"))
		l.AsUser(t, alice, "symlink", victim, filepath.Join(userDir, "link"))
	}
	sameSnapshot(t, "the victim directory", before, snapshot(t, victim))
	t.Logf("30 restores under attack: %d went through, %d found the directory in use, %d met a planted entry when moving into place; nothing outside changed", restored, inUse, collided)

	// Without an attacker the same restore goes through, every entry the
	// user's.
	os.RemoveAll(filepath.Join(userDir, "64"))
	if _, err := restoreAs(t, a, filepath.Join(userDir, "64"), alice, runURI(prefix)); err != nil {
		t.Fatalf("restore without an attacker: %v", err)
	}
	for p, desc := range snapshot(t, filepath.Join(userDir, "64")) {
		if !strings.Contains(desc, fmt.Sprintf("uid %d gid %d", alice.UID, alice.GID)) {
			t.Errorf("%s: %s, want the job user's", p, desc)
		}
	}
}

// restoreAs restores node-a's data of job 64 run 0 into dst, prepared as
// the Prolog prepares a job's directory for a: the per-user template.
func restoreAs(t *testing.T, a *rescue.Agent, dst string, u lab.Account, uri string) (*rescue.Restored, error) {
	t.Helper()
	base := filepath.Dir(filepath.Dir(filepath.Dir(dst)))
	if filepath.Base(dst) != "64" {
		t.Fatalf("restoreAs restores job 64 into <user dir>/64, not %s", dst)
	}
	s, err := rescue.NewScratch(filepath.Join(base, "{node}"), filepath.Join(base, "{node}", "{user}", "{job_id}"),
		rescue.NewScratchVars("64", u.Name, "", "", "node-b"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.Prepare(u.UID, u.GID, zap.NewNop())
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return a.Restore(context.Background(), rescue.RestoreRequest{JobID: "64", Node: "node-b", From: "node-a", URI: uri, Dir: dir, UID: u.UID, GID: u.GID})
}

// HOSTILE.md: "a .spotrescue directory pre-created, or symlinked, by a
// user". The scratch root is world-writable like /scratch. A user's own
// .spotrescue, or a symlink there, can neither turn locking off nor
// redirect the agent's writes: the agent moves it aside, makes its own
// (root's, 0711), and the user cannot open a lock to hold it. A restore on
// the node, which once made the directory world-writable and so turned
// locking off for good, leaves it as it is.
func TestUserCannotTakeOverTheLockDirectory(t *testing.T) {
	l := lab.Get(t)
	alice := lab.User(t, lab.Alice)
	base := userTree(t)
	root := filepath.Join(base, "n")
	os.Mkdir(root, 0o777)
	os.Chmod(root, 0o1777)
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o755)
	job := filepath.Join(root, "job")
	writeFile(t, filepath.Join(job, "f"), []byte("data"))
	chownTree(t, job, alice)
	uid := alice.UID
	a := newAgent(t, l, filepath.Join(base, "{node}"))

	for _, plant := range []struct{ name, how string }{{"a directory of the user's", "mkdir"}, {"a symlink to a root-owned directory", "symlink"}} {
		t.Run(plant.name, func(t *testing.T) {
			os.RemoveAll(filepath.Join(root, ".spotrescue"))
			var err error
			if plant.how == "mkdir" {
				err = l.AsUser(t, alice, "mkdir", filepath.Join(root, ".spotrescue"))
			} else {
				err = l.AsUser(t, alice, "symlink", victim, filepath.Join(root, ".spotrescue"))
			}
			if err != nil {
				t.Fatal(err)
			}
			// Two agents for one job run: the second must find it locked.
			release := make(chan struct{})
			first := make(chan rescue.JobResult)
			holder := newAgent(t, l, filepath.Join(base, "{node}"))
			var once bool
			rescue.SetAfterRead(holder, func(string) {
				if !once {
					once = true
					<-release
				}
			})
			prefix := nodePrefix(t, l)
			pj := rescue.PlanJob{JobID: "65", Dir: job, Prefix: prefix, UID: &uid}
			go func() {
				first <- holder.Rescue(context.Background(), &rescue.Plan{ID: "one", Node: "n", Bucket: bucket, Jobs: []rescue.PlanJob{pj}}, inAMinute())[0]
			}()
			lock := filepath.Join(root, ".spotrescue", "65-0.rescue.lock")
			lab.Eventually(t, 30*time.Second, "the first agent's lock", func() bool { _, err := os.Stat(lock); return err == nil })
			if err := l.AsUser(t, alice, "flock", lock); err == nil {
				t.Error("the user opened and locked the job's lock")
			}
			second := newAgent(t, l, filepath.Join(base, "{node}"))
			core, logs := observer.New(zap.InfoLevel)
			second.Log = zap.New(core)
			secondDone := make(chan rescue.JobResult)
			go func() {
				secondDone <- second.Rescue(context.Background(), &rescue.Plan{ID: "two", Node: "n", Bucket: bucket, Jobs: []rescue.PlanJob{pj}}, inAMinute())[0]
			}()
			lab.Eventually(t, 30*time.Second, "the second agent to wait, or finish", func() bool {
				return logs.FilterMessageSnippet("waiting for it").Len() > 0 || logs.FilterMessage("rescue finished").Len() > 0
			})
			close(release)
			if r := <-first; r.Err != nil || r.LeftToOther {
				t.Fatalf("first agent: %+v", r)
			}
			if r := <-secondDone; !r.LeftToOther {
				t.Errorf("locking was off: the second agent rescued the job beside the first (%+v)", r)
			}
			info, err := os.Lstat(filepath.Join(root, ".spotrescue"))
			if err != nil || !info.IsDir() || info.Mode().Perm() != 0o711 || info.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf(".spotrescue is %v, %v; want root's, 0711", info.Mode(), err)
			}
			if entries, _ := os.ReadDir(victim); len(entries) != 0 {
				t.Errorf("the agent wrote through the planted symlink: %v", entries)
			}
			if aside, _ := filepath.Glob(filepath.Join(root, ".spotrescue.planted-*")); len(aside) == 0 {
				t.Error("the planted entry was not kept aside")
			}
		})
	}

	// A restore into another job of the node leaves the directory alone.
	prefix := nodePrefix(t, l)
	writeFile(t, filepath.Join(base, "node-a", "src", "g"), []byte("g"))
	if r := a.Rescue(context.Background(), &rescue.Plan{ID: "src", Node: "node-a", Bucket: bucket,
		Jobs: []rescue.PlanJob{{JobID: "66", Dir: filepath.Join(base, "node-a", "src"), Prefix: prefix}}}, inAMinute())[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := restoreInto(t, a, filepath.Join(root, "66"), rescue.RestoreRequest{JobID: "66", Node: "n", From: "node-a", URI: runURI(prefix), UID: os.Getuid(), GID: os.Getgid()}); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(filepath.Join(root, ".spotrescue")); err != nil || info.Mode().Perm() != 0o711 || info.Mode()&fs.ModeSticky != 0 {
		t.Errorf("after a restore .spotrescue is %v, %v; want 0711", info.Mode(), err)
	}
}

// HOSTILE.md: "a file under the pack limit at scan time that grows past the
// pack buffer while it is read". The packer once sliced past its buffer
// (a panic: every job on the node lost its final manifest). Now the change
// is seen, the file read again, and, being no longer small, saved as an
// object of its own, whole; the other files go in their pack as before.
func TestPackedFileThatGrowsIsSavedOnItsOwn(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	for i := range 20 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("small-%02d", i)), randomBytes(t, 4<<10))
	}
	grows := filepath.Join(src, "small-07")
	prefix := nodePrefix(t, l)
	a := newAgent(t, l, filepath.Join(root, "{node}"))
	a.PartSize = 5 << 20
	var once bool
	rescue.SetAfterOpen(a, func(rel string) {
		if rel == "small-07" && !once {
			once = true // the job appends 12 MiB between the agent's open and its read
			f, err := os.OpenFile(grows, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.Write(randomBytes(t, 12<<20))
			f.Close()
		}
	})
	r := a.Rescue(context.Background(), &rescue.Plan{ID: "grow", Node: "node-a", Bucket: bucket, Pack: true,
		Jobs: []rescue.PlanJob{{JobID: "67", Dir: src, Prefix: prefix}}}, inAMinute())[0]
	if r.Err != nil || r.Manifest == nil {
		t.Fatalf("rescue: %+v", r)
	}
	if !once {
		t.Fatal("the file was never opened for a pack")
	}
	f, ok := entry(r.Manifest, "small-07")
	if !ok || f.Pack != "" || f.Size != 4<<10+12<<20 || !bytes.Equal(content(t, l, prefix, f), mustRead(t, grows)) {
		t.Fatalf("the grown file: %+v (listed %v); want its own object of %d bytes", f, ok, 4<<10+12<<20)
	}
	if g, _ := entry(r.Manifest, "small-08"); g.Pack == "" {
		t.Error("the other small files were not packed")
	}
	if !r.Manifest.Complete {
		t.Errorf("not complete: skipped %v", r.Manifest.Skipped)
	}
	assertExact(t, l, r.Manifest, prefix)
}

// faults sets hack/faultproxy's rules until the test ends.
func faults(t *testing.T, l *lab.Lab, rules string) { faultproxy(t, l, "rules", rules) }

// limits sets hack/faultproxy's rate limits until the test ends.
func limits(t *testing.T, l *lab.Lab, limits string) { faultproxy(t, l, "limits", limits) }

func faultproxy(t *testing.T, l *lab.Lab, what, body string) {
	t.Helper()
	put := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, l.Env["LAB_FAULTPROXY_URL"]+"/_fault/"+what, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("set faultproxy %s: %v", what, err)
		}
		resp.Body.Close()
	}
	put(body)
	t.Cleanup(func() { put("[]") })
}

// faultStats returns faultproxy's counts of requests by service/operation/fault.
func faultStats(t *testing.T, l *lab.Lab) map[string]int {
	t.Helper()
	resp, err := http.Get(l.Env["LAB_FAULTPROXY_URL"] + "/_fault/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats map[string]int
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	return stats
}

// A final rescue never uploads beside a pre-sync of the same job: a late
// pre-sync PUT could replace an object the final manifest lists. The
// pre-sync here is a real `spotrescue agent rescue` process whose uploads
// crawl (faultproxy adds a second to each PUT); the final rescue stops it
// (SIGTERM) and holds the job's pre-sync lock while it works. Once it is
// done, every object S3 holds is the bytes of the file as the final rescue
// read it, and the manifest lists exactly them.
func TestFinalRescueStopsTheJobsPresync(t *testing.T) {
	l := lab.Get(t)
	base := userTree(t)
	src := filepath.Join(base, "node-a", "job")
	for i := range 40 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f-%02d", i)), randomBytes(t, 32<<10))
	}
	prefix := nodePrefix(t, l)
	spool := filepath.Join(base, "spool")
	const instance = "i-0c0ffee0000000091"
	far := time.Now().Add(time.Hour)
	job := rescue.PlanJob{JobID: "68", Dir: src, Prefix: prefix}
	layout := rescue.Layout{Spool: spool}
	if err := layout.WritePlan(&rescue.Plan{ID: "presync-68", Instance: instance, Node: "node-a", Bucket: bucket, Presync: true,
		Deadline: far, Reclaim: far, Jobs: []rescue.PlanJob{job}}); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(base, "agent.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("cluster: lab\nregion: us-east-1\nspool_dir: %s\nscratch:\n  root: %s\n  path_template: %s\n",
		spool, filepath.Join(base, "{node}"), filepath.Join(base, "{node}", "{job_id}"))), 0o644)
	faults(t, l, `[{"service":"s3","operation":"PutObject","latency":"1s"}]`)
	cmd := exec.Command(filepath.Join(l.Bin, "spotrescue"), "agent", "rescue", "--plan", "presync-68", "--instance", instance, "--config", config)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+l.Env["LAB_FAULTPROXY_URL"])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	lab.Eventually(t, 30*time.Second, "the pre-sync uploading", func() bool { return strings.Contains(out.String(), "rescue starting") })
	// The job writes on: what the pre-sync read is stale now.
	for i := range 40 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f-%02d", i)), randomBytes(t, 32<<10))
	}

	core, logs := observer.New(zap.InfoLevel)
	a := newAgent(t, l, filepath.Join(base, "{node}"))
	a.Log = zap.New(core)
	started := time.Now()
	r := a.Rescue(context.Background(), &rescue.Plan{ID: "final-68", Instance: instance, Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{job}}, inAMinute())[0]
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the pre-sync was still running after the final rescue:\n%s", out.String())
	}
	if logs.FilterMessageSnippet("stopping the job's pre-sync").Len() == 0 {
		t.Errorf("the final rescue did not stop the pre-sync (took %v)", time.Since(started))
	}
	if r.Err != nil || !r.Manifest.Complete || r.Manifest.Presync {
		t.Fatalf("final rescue: %+v", r)
	}
	// Late PUTs the pre-sync had under way would land within their added
	// second; give them that, then S3 must hold what the final read.
	time.Sleep(1500 * time.Millisecond)
	assertExact(t, l, r.Manifest, prefix)
	for _, f := range r.Manifest.Files {
		if f.Type == rescue.TypeFile && !bytes.Equal(content(t, l, prefix, f), mustRead(t, filepath.Join(src, f.Path))) {
			t.Errorf("%s: S3 holds other bytes than the file the final manifest lists", f.Path)
		}
	}
	if m, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix); err != nil || m.Presync || !m.Complete {
		t.Errorf("the manifest at the prefix: %+v, %v; want the final rescue's", m, err)
	}
}
