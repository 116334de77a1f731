package rescue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// upload is one regular file waiting to be saved.
type upload struct {
	job  *jobState
	rel  string
	abs  string
	size int64
	mod  time.Time
	rank int   // index of the first priority pattern it matches; len(patterns) if none
	base *File // the previous manifest's entry, when this file may be carried over
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
			js.skip(rel, SkipNotUTF8)
			return skipDirOf(de)
		}
		if rel == "_spotrescue" || strings.HasPrefix(rel, "_spotrescue/") {
			js.skip(rel, SkipReserved)
			return skipDirOf(de)
		}
		info, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted since the directory was read: nothing to save
		}
		if err != nil {
			js.skip(rel, SkipUnreadable)
			return nil
		}
		if u, ok := record(js, rel, abs, info); ok {
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// record notes one directory entry in the manifest, or returns it as an
// upload when it is a regular file.
func record(js *jobState, rel, abs string, info fs.FileInfo) (upload, bool) {
	mode, mtime := uint32(info.Mode().Perm()), info.ModTime().UTC()
	switch {
	case info.Mode().IsRegular():
		return upload{job: js, rel: rel, abs: abs, size: info.Size(), mod: info.ModTime()}, true
	case info.IsDir():
		js.add(File{Path: rel, Type: TypeDir, Mode: mode, MTime: mtime})
	case info.Mode()&fs.ModeSymlink != 0:
		// Stored as a link, never followed: a link to /etc/passwd is the
		// string "/etc/passwd", not the file.
		target, err := os.Readlink(abs)
		if err != nil || target == "" {
			js.skip(rel, SkipUnreadable)
			break
		}
		js.add(File{Path: rel, Type: TypeSymlink, Mode: mode, MTime: mtime, Target: target})
	default:
		js.skip(rel, SkipSpecial)
	}
	return upload{}, false
}

func skipDirOf(de fs.DirEntry) error {
	if de.IsDir() {
		return filepath.SkipDir
	}
	return nil
}

// ValidPriority checks priority patterns. A pattern without "/" matches
// any path component ("*.ckpt" matches a/b/model.ckpt, "ckpt" everything
// in a directory named ckpt); a pattern with "/" matches the path from the
// job directory, or any leading directories of it ("out/step-*" matches
// out/step-9/x.dat). The syntax is that of path.Match.
func ValidPriority(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil || strings.Trim(p, "/") == "" {
			return fmt.Errorf("priority pattern %q is not a valid glob", p)
		}
	}
	return nil
}

// priorityRank returns the index of the first pattern rel matches, or
// len(patterns).
func priorityRank(patterns []string, rel string) int {
	for i, p := range patterns {
		if matchPriority(p, rel) {
			return i
		}
	}
	return len(patterns)
}

func matchPriority(pattern, rel string) bool {
	pattern = strings.Trim(pattern, "/")
	if !strings.Contains(pattern, "/") {
		for _, part := range strings.Split(rel, "/") {
			if ok, _ := path.Match(pattern, part); ok {
				return true
			}
		}
		return false
	}
	for p := rel; p != "."; p = path.Dir(p) {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}

// order puts files matching earlier priority patterns first and, within
// each class, the newest first: they are the ones a restart needs most.
func order(q []upload, patterns []string) {
	for i := range q {
		q[i].rank = priorityRank(patterns, q[i].rel)
	}
	sort.SliceStable(q, func(i, j int) bool { return before(q[i], q[j]) })
}

// before is the queue's order.
func before(a, b upload) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	if !a.mod.Equal(b.mod) {
		return a.mod.After(b.mod)
	}
	return a.rel < b.rel
}
