// Package confine lets root code on a compute node work inside a directory
// tree that another user controls, without ever leaving it.
//
// A job's scratch tree belongs to the job's user, who may rename, link and
// swap anything in it while the agent, the Prolog or a restore works there.
// A path string checked and then used is a race the user can win (swap an
// intermediate directory for a symlink to /etc between the check and the
// use). So nothing here takes a path from the root of the file system: a
// Dir is an open directory handle, and every name is resolved beneath it,
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) where the kernel has it
// and one openat(O_NOFOLLOW) per component where it does not. A symlink at
// any component fails the operation (ELOOP or ENOTDIR) instead of being
// followed, and ".." cannot appear. Ownership, modes and times are applied
// to open files (fchown, fchmod, futimens), never by path.
//
// Reads of a user's files can also be made with that user's credentials
// (see Identity): then the kernel, not our checks, decides what the user
// could have read, and a hard link to someone else's file is as unreadable
// to the agent as it is to its user.
package confine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dir is an open directory that names are resolved beneath. Operations run
// with the credentials of the Identity it carries (see As), else with the
// process's own.
type Dir struct {
	f  *os.File
	id *Identity
}

// OpenRoot opens a directory the caller trusts by path: the scratch root
// an administrator configured. Everything below it is reached through the
// handle.
func OpenRoot(name string) (*Dir, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(fd), name)}, nil
}

// Name is the path the directory was opened by, for messages only: it may
// no longer lead to the directory.
func (d *Dir) Name() string { return d.f.Name() }

// File is the directory's handle.
func (d *Dir) File() *os.File { return d.f }

// Fd is the directory's descriptor.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Close closes the handle.
func (d *Dir) Close() error { return d.f.Close() }

// As returns d with operations made as id (nil: as the process). Both
// share the handle: close only one of them.
func (d *Dir) As(id *Identity) *Dir { return &Dir{f: d.f, id: id} }

// Stat describes the directory itself.
func (d *Dir) Stat() (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.Fd(), &st); err != nil {
		return Info{}, &fs.PathError{Op: "fstat", Path: d.Name(), Err: err}
	}
	return infoOf(&st), nil
}

// do runs fn with d's credentials.
func (d *Dir) do(fn func() error) error {
	if d.id == nil {
		return fn()
	}
	return d.id.Do(fn)
}

// CheckName accepts only clean relative slash paths: no empty, "." or ".."
// component, no leading or trailing slash, no NUL.
func CheckName(rel string) error {
	if rel == "" || rel == "." || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") || strings.ContainsRune(rel, 0) {
		return fmt.Errorf("%q is not a clean relative path", rel)
	}
	return nil
}

// Open opens rel beneath d without following a symlink anywhere on the
// way. flag is passed to open(2) with O_NOFOLLOW and O_CLOEXEC added.
func (d *Dir) Open(rel string, flag int, perm uint32) (*os.File, error) {
	var fd int
	err := d.do(func() (err error) {
		fd, err = openBeneath(d.Fd(), rel, flag, perm)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(d.Name(), rel)), nil
}

// OpenDir opens the directory rel beneath d (rel "" or "." is d itself,
// opened again). The result carries d's identity.
func (d *Dir) OpenDir(rel string) (*Dir, error) {
	if rel == "" || rel == "." {
		var fd int
		err := d.do(func() (err error) {
			fd, err = unix.Openat(d.Fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: d.Name(), Err: err}
		}
		return &Dir{f: os.NewFile(uintptr(fd), d.Name()), id: d.id}, nil
	}
	f, err := d.Open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, id: d.id}, nil
}

// parent opens the directory holding rel and returns it with rel's last
// component. The caller closes the returned descriptor unless it is d's own.
func (d *Dir) parent(rel string) (fd int, base string, own bool, err error) {
	if err := CheckName(rel); err != nil {
		return -1, "", false, err
	}
	dir, base := path.Split(rel)
	if dir == "" {
		return d.Fd(), base, true, nil
	}
	fd, err = openBeneath(d.Fd(), strings.TrimSuffix(dir, "/"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	return fd, base, false, err
}

// at runs fn on the directory holding rel and rel's last component.
func (d *Dir) at(op, rel string, fn func(parent int, base string) error) error {
	err := d.do(func() error {
		p, base, own, err := d.parent(rel)
		if err != nil {
			return err
		}
		if !own {
			defer unix.Close(p)
		}
		return ignoringEINTR(func() error { return fn(p, base) })
	})
	if err != nil {
		return &fs.PathError{Op: op, Path: rel, Err: err}
	}
	return nil
}

// Lstat describes rel itself, a symlink included, without following it.
func (d *Dir) Lstat(rel string) (Info, error) {
	var st unix.Stat_t
	err := d.at("lstat", rel, func(p int, base string) error {
		return unix.Fstatat(p, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	})
	return infoOf(&st), err
}

// Readlink returns the target of the symlink rel, as a string: it is never followed.
func (d *Dir) Readlink(rel string) (string, error) {
	var target string
	err := d.at("readlink", rel, func(p int, base string) error {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(p, base, buf)
		if err != nil {
			return err
		}
		target = string(buf[:n])
		return nil
	})
	return target, err
}

// Mkdir creates the directory rel with mode perm (less the umask).
func (d *Dir) Mkdir(rel string, perm uint32) error {
	return d.at("mkdir", rel, func(p int, base string) error { return unix.Mkdirat(p, base, perm) })
}

// Symlink creates rel as a symlink to target.
func (d *Dir) Symlink(target, rel string) error {
	return d.at("symlink", rel, func(p int, base string) error { return unix.Symlinkat(target, p, base) })
}

// Lchown changes the owner of rel itself (a symlink is not followed).
func (d *Dir) Lchown(rel string, uid, gid int) error {
	return d.at("lchown", rel, func(p int, base string) error {
		return unix.Fchownat(p, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// Remove removes the file, symlink or empty directory rel.
func (d *Dir) Remove(rel string) error {
	return d.at("remove", rel, func(p int, base string) error {
		err := unix.Unlinkat(p, base, 0)
		if err == unix.EISDIR {
			err = unix.Unlinkat(p, base, unix.AT_REMOVEDIR)
		}
		return err
	})
}

// Rename moves rel beneath d to to beneath dst. Without replace it never
// replaces an entry at to (RENAME_NOREPLACE): an entry someone planted
// there makes it fail with EEXIST instead.
func (d *Dir) Rename(rel string, dst *Dir, to string, replace bool) error {
	return d.at("rename", rel, func(p int, base string) error {
		return dst.at("rename", to, func(q int, qbase string) error {
			flags := uint(unix.RENAME_NOREPLACE)
			if replace {
				flags = 0
			}
			return unix.Renameat2(p, base, q, qbase, flags)
		})
	})
}

// ReadDirNames lists the names in the directory, all of them.
func (d *Dir) ReadDirNames() ([]string, error) {
	var names []string
	err := d.do(func() error {
		// A fresh descriptor: reading moves the offset of the one it came from.
		fd, err := unix.Openat(d.Fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), d.Name())
		defer f.Close()
		names, err = f.Readdirnames(-1)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: d.Name(), Err: err}
	}
	return names, nil
}

// Info is what Lstat and Stat report.
type Info struct {
	Mode     fs.FileMode
	Size     int64
	UID, GID int
	Dev, Ino uint64
	Nlink    uint64
	ModTime  time.Time
	Ctime    int64 // nanoseconds: a writer cannot set it back, unlike mtime
}

func infoOf(st *unix.Stat_t) Info {
	return Info{
		Mode: modeOf(st.Mode), Size: st.Size, UID: int(st.Uid), GID: int(st.Gid),
		Dev: uint64(st.Dev), Ino: st.Ino, Nlink: uint64(st.Nlink),
		ModTime: time.Unix(st.Mtim.Unix()), Ctime: st.Ctim.Nano(),
	}
}

// modeOf converts a st_mode to an fs.FileMode.
func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// FileInfo describes an open file.
func FileInfo(f *os.File) (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Info{}, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return infoOf(&st), nil
}

// SetAttrs gives an open file or directory its owner (uid or gid < 0
// leaves that one alone), permission bits and modification time (zero
// leaves it). The owner goes first: a chown clears set-id bits, and the
// mode never carries them anyway.
func SetAttrs(f *os.File, uid, gid int, perm fs.FileMode, mtime time.Time) error {
	fd := int(f.Fd())
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return &fs.PathError{Op: "fchown", Path: f.Name(), Err: err}
		}
	}
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		return &fs.PathError{Op: "fchmod", Path: f.Name(), Err: err}
	}
	if !mtime.IsZero() {
		ts := [2]unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		// utimensat(fd, NULL, ...) is futimens(3): the times of the open file.
		if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
			return &fs.PathError{Op: "futimens", Path: f.Name(), Err: e}
		}
	}
	return nil
}

// IsSymlinkErr reports whether err is what opening through a symlink (or
// a non-directory where a directory was needed) gives.
func IsSymlinkErr(err error) bool {
	return errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EXDEV)
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}
