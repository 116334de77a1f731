package confine

import (
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once the kernel has refused openat2 (before Linux 5.6,
// or a seccomp filter that does not know it); tests set it to exercise the
// walk that replaces it.
var noOpenat2 atomic.Bool

// openBeneath opens rel beneath the directory dirfd: a clean relative path,
// resolved without following a symlink at any component and without
// leaving dirfd.
func openBeneath(dirfd int, rel string, flag int, perm uint32) (int, error) {
	if err := CheckName(rel); err != nil {
		return -1, unix.EINVAL
	}
	flag |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		fd, err := openat2(dirfd, rel, flag, perm)
		if err != unix.ENOSYS && (err != unix.EPERM || probeOpenat2() == nil) {
			return fd, err
		}
		noOpenat2.Store(true)
	}
	return walk(dirfd, rel, flag, perm)
}

func openat2(dirfd int, rel string, flag int, perm uint32) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flag), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	if flag&unix.O_CREAT != 0 {
		how.Mode = uint64(perm) // openat2 refuses a mode without O_CREAT
	}
	for range 100 {
		fd, err := unix.Openat2(dirfd, rel, how)
		// EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// probeOpenat2 tells a seccomp filter that refuses openat2 with EPERM
// (older container runtimes) from an EPERM the operation itself earned.
func probeOpenat2() error {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// walk resolves rel one component at a time, each opened with O_NOFOLLOW
// relative to the one before: the same result as openat2's
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS for a path without "..".
func walk(dirfd int, rel string, flag int, perm uint32) (int, error) {
	parts := strings.Split(rel, "/")
	cur := dirfd
	for i, part := range parts {
		last := i == len(parts)-1
		f, mode := unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(0)
		if last {
			f, mode = flag, perm
		}
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = unix.Openat(cur, part, f, mode)
			return err
		})
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}
