package rescue

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// upload is one regular file waiting to be saved.
type upload struct {
	job  *jobState
	rel  string // slash path below the job directory
	size int64
	mod  time.Time
	rank int   // index of the first priority pattern it matches; len(patterns) if none
	base *File // the previous manifest's entry, when this file may be carried over
}

// Reserved names at the top of a job directory. "_spotrescue" could shadow
// the manifest and packs under the node prefix; ".spotrescue-" names the
// restore's staging directory and marker, which are ours, not the job's.
const (
	reservedData   = "_spotrescue"
	reservedPrefix = ".spotrescue-"
)

func reserved(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return top == reservedData || strings.HasPrefix(top, reservedPrefix)
}

// scan walks the job directory through its handle, with the identity the
// job's files are read as, and returns the regular files to upload;
// directories, symlinks and special files are recorded in the manifest
// directly. Nothing is followed: a symlink is an entry of its own, and a
// directory swapped for one while we walk is refused by the kernel, not
// entered. Directories are read whole and closed before the walk goes
// down, so a deep tree costs no descriptors.
func scan(js *jobState) ([]upload, error) {
	var out []upload
	var err error
	// One call on the identity's thread for the whole walk: thousands of
	// entries are looked up as the user without a hand-off each.
	doErr := js.ident.Do(func() error {
		out, err = walkTree(js, js.tree.As(nil))
		return nil
	})
	if doErr != nil {
		return nil, doErr
	}
	return out, err
}

func walkTree(js *jobState, tree *confine.Dir) ([]upload, error) {
	var out []upload
	names, err := tree.ReadDirNames()
	if err != nil {
		return nil, err // an unreadable job directory fails the job
	}
	dirs := []string{""}
	pending := map[string][]string{"": names}
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		list := pending[dir]
		delete(pending, dir)
		sort.Sort(sort.Reverse(sort.StringSlice(list))) // popped from the end: lexical order
		for _, name := range list {
			rel := path.Join(dir, name)
			if dir == "" {
				rel = name
			}
			u, sub, ok := visit(js, tree, rel)
			if ok {
				out = append(out, u)
			}
			if sub != nil {
				dirs = append(dirs, rel)
				pending[rel] = sub
			}
		}
	}
	return out, nil
}

// visit notes one entry in the manifest, or returns it as an upload when it
// is a regular file; for a directory it returns the names inside.
func visit(js *jobState, tree *confine.Dir, rel string) (u upload, sub []string, ok bool) {
	if !utf8.ValidString(rel) {
		js.skip(rel, SkipNotUTF8)
		return upload{}, nil, false
	}
	if reserved(rel) {
		js.skip(rel, SkipReserved)
		return upload{}, nil, false
	}
	info, err := tree.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return upload{}, nil, false // deleted since the directory was read: nothing to save
	case err != nil:
		js.skip(rel, SkipUnreadable)
		return upload{}, nil, false
	}
	mode, mtime := uint32(info.Mode.Perm()), info.ModTime.UTC()
	switch {
	case info.Mode.IsRegular():
		return upload{job: js, rel: rel, size: info.Size, mod: info.ModTime}, nil, true
	case info.Mode.IsDir():
		js.add(File{Path: rel, Type: TypeDir, Mode: mode, MTime: mtime})
		d, err := tree.OpenDir(rel)
		if err == nil {
			sub, err = d.ReadDirNames()
			d.Close()
		}
		if err != nil {
			js.skip(rel, SkipUnreadable)
			return upload{}, nil, false
		}
		return upload{}, sub, false
	case info.Mode&fs.ModeSymlink != 0:
		// Stored as a link, never followed: a link to /etc/passwd is the
		// string "/etc/passwd", not the file.
		target, err := tree.Readlink(rel)
		if err != nil || target == "" {
			js.skip(rel, SkipUnreadable)
			break
		}
		js.add(File{Path: rel, Type: TypeSymlink, Mode: mode, MTime: mtime, Target: target})
	default:
		js.skip(rel, SkipSpecial)
	}
	return upload{}, nil, false
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
