package confine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// both runs a test with openat2 and with the component walk that stands in
// for it on kernels without openat2.
func both(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) { fn(t) })
	t.Run("walk", func(t *testing.T) {
		noOpenat2.Store(true)
		t.Cleanup(func() { noOpenat2.Store(false) })
		fn(t)
	})
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openRoot(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenNeverFollowsASymlink(t *testing.T) {
	both(t, func(t *testing.T) {
		top := t.TempDir()
		outside, tree := filepath.Join(top, "outside"), filepath.Join(top, "tree")
		mustWrite(t, filepath.Join(outside, "secret"), "secret")
		mustWrite(t, filepath.Join(tree, "a", "b", "f"), "mine")
		os.Symlink(outside, filepath.Join(tree, "a", "up"))             // absolute, leaves the tree
		os.Symlink("b", filepath.Join(tree, "a", "inside"))             // relative, stays inside
		os.Symlink("../../outside", filepath.Join(tree, "a", "dotdot")) // relative, leaves
		os.Symlink("f", filepath.Join(tree, "a", "b", "lf"))            // last component
		d := openRoot(t, tree)

		f, err := d.Open("a/b/f", os.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("plain file: %v", err)
		}
		f.Close()
		for _, rel := range []string{"a/up/secret", "a/inside/f", "a/dotdot/secret", "a/b/lf", "a/up"} {
			if f, err := d.Open(rel, os.O_RDONLY, 0); err == nil {
				f.Close()
				t.Errorf("%s opened through a symlink", rel)
			} else if !IsSymlinkErr(err) {
				t.Errorf("%s: %v, want a symlink error", rel, err)
			}
		}
		for _, rel := range []string{"", ".", "..", "../tree/a/b/f", "/etc/passwd", "a/../a/b/f", "a//b/f", "a/b/f/", "a/\x00"} {
			if f, err := d.Open(rel, os.O_RDONLY, 0); err == nil {
				f.Close()
				t.Errorf("%q accepted", rel)
			}
		}
		if info, err := d.Lstat("a/up"); err != nil || info.Mode&os.ModeSymlink == 0 {
			t.Errorf("Lstat of a symlink: %+v, %v", info, err)
		}
		if target, err := d.Readlink("a/up"); err != nil || target != outside {
			t.Errorf("Readlink = %q, %v", target, err)
		}
		if _, err := d.Lstat("a/up/secret"); !IsSymlinkErr(err) {
			t.Errorf("Lstat through a symlink: %v", err)
		}
	})
}

// A racing rename loop swaps a directory of the tree with a symlink out of
// it, as fast as it can. No open beneath the tree may ever reach the
// outside file, whichever way the race goes.
func TestOpenUnderASwapLoopStaysInside(t *testing.T) {
	both(t, func(t *testing.T) {
		top := t.TempDir()
		tree := filepath.Join(top, "tree")
		mustWrite(t, filepath.Join(top, "outside", "f"), "OUTSIDE")
		mustWrite(t, filepath.Join(tree, "d", "f"), "inside")
		if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(tree, "link")); err != nil {
			t.Fatal(err)
		}
		d := openRoot(t, tree)
		stop := make(chan struct{})
		var swaps atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			a, b := filepath.Join(tree, "d"), filepath.Join(tree, "link")
			for {
				select {
				case <-stop:
					return
				default:
				}
				if unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE) == nil {
					swaps.Add(1)
				}
			}
		})
		inside, refused, leaked := 0, 0, 0
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			// The control: a path-based open, as the agent once did,
			// reaches the outside through the swapped link.
			if data, err := os.ReadFile(filepath.Join(tree, "d", "f")); err == nil && string(data) == "OUTSIDE" {
				leaked++
			}
			f, err := d.Open("d/f", os.O_RDONLY, 0)
			if err != nil {
				refused++
				continue
			}
			buf := make([]byte, 16)
			n, _ := f.Read(buf)
			f.Close()
			if string(buf[:n]) != "inside" {
				t.Fatalf("read %q through the swapped link", buf[:n])
			}
			inside++
		}
		close(stop)
		wg.Wait()
		if swaps.Load() < 100 || inside == 0 || refused == 0 || leaked == 0 {
			t.Fatalf("the race did not run both ways: %d swaps, %d opens inside, %d refused, %d path opens leaked", swaps.Load(), inside, refused, leaked)
		}
		t.Logf("%d swaps: %d opens reached the tree's file, %d were refused, none the outside (path-based opens leaked %d times)", swaps.Load(), inside, refused, leaked)
	})
}

func TestRenameNeverReplacesWithoutAsking(t *testing.T) {
	top := t.TempDir()
	mustWrite(t, filepath.Join(top, "a"), "a")
	mustWrite(t, filepath.Join(top, "b"), "b")
	d := openRoot(t, top)
	if err := d.Rename("a", d, "b", false); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("rename over an entry: %v, want EEXIST", err)
	}
	if err := d.Rename("a", d, "b", true); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(top, "b")); string(data) != "a" {
		t.Fatalf("b holds %q", data)
	}
}

func TestSetAttrsOnTheOpenFile(t *testing.T) {
	top := t.TempDir()
	mustWrite(t, filepath.Join(top, "f"), "x")
	d := openRoot(t, top)
	f, err := d.Open("f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := SetAttrs(f, -1, -1, os.ModeSetuid|0o640, when); err != nil {
		t.Fatal(err)
	}
	info, err := FileInfo(f)
	if err != nil || info.Mode != 0o640 || !info.ModTime.Equal(when) {
		t.Fatalf("attrs: %+v, %v (set-id bits must never be applied)", info, err)
	}
}

// nobody is an unprivileged user for the identity tests, which need root
// to shed it.
func nobody(t *testing.T) Creds {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("changing credentials needs root (make test runs as root)")
	}
	out, err := exec.Command("id", "-u", "nobody").Output()
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return Creds{UID: uid, GID: 65534}
}

// An Identity opens as its user would: a root-only file stays closed to
// it, while the rest of the process keeps root's access.
func TestIdentityOpensAsItsUser(t *testing.T) {
	c := nobody(t)
	top := t.TempDir()
	os.Chmod(top, 0o755)
	mustWrite(t, filepath.Join(top, "public"), "public")
	mustWrite(t, filepath.Join(top, "secret"), "secret")
	os.Chmod(filepath.Join(top, "secret"), 0o600)
	id, err := NewIdentity(c, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	d := openRoot(t, top).As(id)
	if f, err := d.Open("public", os.O_RDONLY, 0); err != nil {
		t.Errorf("a world-readable file: %v", err)
	} else {
		f.Close()
	}
	if f, err := d.Open("secret", os.O_RDONLY, 0); !errors.Is(err, syscall.EACCES) {
		if f != nil {
			f.Close()
		}
		t.Errorf("a root-only file as %d: %v, want EACCES", c.UID, err)
	}
	// Many calls at once, and the process around them is still root.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := d.Open("secret", os.O_RDONLY, 0); err == nil {
				t.Error("a root-only file opened")
			}
			if _, err := os.ReadFile(filepath.Join(top, "secret")); err != nil {
				t.Errorf("the process lost root: %v", err)
			}
		})
	}
	wg.Wait()
	id.Close()
	if err := id.Do(func() error { return nil }); !errors.Is(err, errClosed) {
		t.Errorf("Do after Close: %v", err)
	}
}
