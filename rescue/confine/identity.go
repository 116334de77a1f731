package confine

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Creds are a user's file-system identity: what the kernel checks an open
// against.
type Creds struct {
	UID, GID int
	Groups   []int // supplementary groups
}

// nogroup is the group of a user whose primary group is unknown.
const nogroup = 65534

// LookupCreds returns uid's credentials with gid as the primary group (the
// user's own from the node's user database when gid < 0) and the
// supplementary groups that database lists (none if it cannot say: files
// readable only through such a group are then not).
func LookupCreds(uid, gid int) Creds {
	c := Creds{UID: uid, GID: gid}
	u, err := user.LookupId(strconv.Itoa(uid))
	if c.GID < 0 {
		c.GID = nogroup
		if err == nil {
			if g, err := strconv.Atoi(u.Gid); err == nil {
				c.GID = g
			}
		}
	}
	if err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, s := range ids {
				if g, err := strconv.Atoi(s); err == nil && g != gid {
					c.Groups = append(c.Groups, g)
				}
			}
		}
	}
	return c
}

// An Identity runs functions with a user's credentials. Credentials are
// per thread in Linux (glibc makes setuid look process-wide; the kernel
// does not): each worker locks a thread, gives it the user's supplementary
// groups, fsgid and fsuid, and serves calls on it until Close. A thread
// whose fsuid is not 0 has lost CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and
// CAP_FOWNER, so an open there succeeds exactly when it would for the
// user. The worker never unlocks its thread: when it returns, the Go
// runtime ends the thread with it, and no other goroutine ever runs with
// the user's credentials.
//
// When the process is not root, or the user is the process's own, an
// Identity runs calls directly: there is no privilege to shed.
type Identity struct {
	creds Creds
	calls chan call
	quit  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

type call struct {
	fn   func() error
	done chan error
}

// NewIdentity starts n workers with c's credentials. The first worker's
// setup error is returned: a node that cannot shed root must not read
// users' files as root instead.
func NewIdentity(c Creds, n int) (*Identity, error) {
	id := &Identity{creds: c}
	if os.Geteuid() != 0 || c.UID == os.Geteuid() {
		return id, nil
	}
	if c.UID < 0 || c.GID < 0 {
		return nil, fmt.Errorf("identity uid %d gid %d: not a user", c.UID, c.GID)
	}
	id.calls, id.quit = make(chan call), make(chan struct{})
	ready := make(chan error, n)
	for range max(n, 1) {
		id.wg.Add(1)
		go id.serve(ready)
	}
	var first error
	for range max(n, 1) {
		if err := <-ready; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		id.Close()
		return nil, first
	}
	return id, nil
}

// Creds are the credentials calls run with.
func (id *Identity) Creds() Creds { return id.creds }

func (id *Identity) serve(ready chan<- error) {
	defer id.wg.Done()
	runtime.LockOSThread()
	// Never unlocked: see Identity.
	if err := assume(id.creds); err != nil {
		ready <- fmt.Errorf("take on uid %d gid %d: %w", id.creds.UID, id.creds.GID, err)
		return
	}
	ready <- nil
	for {
		select {
		case c := <-id.calls:
			c.done <- c.fn()
		case <-id.quit:
			return
		}
	}
}

// assume gives the calling thread c's file-system credentials. The order
// matters: groups and fsgid need CAP_SETGID, which the fsuid change keeps,
// but it is simplest to drop the uid last.
func assume(c Creds) error {
	if err := unix.Setgroups(c.Groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	unix.SetfsgidRetGid(c.GID)
	// setfsgid and setfsuid report failure only by not changing: ask again.
	if got, _ := unix.SetfsgidRetGid(-1); got != c.GID {
		return fmt.Errorf("setfsgid(%d) left %d", c.GID, got)
	}
	unix.SetfsuidRetUid(c.UID)
	if got, _ := unix.SetfsuidRetUid(-1); got != c.UID {
		return fmt.Errorf("setfsuid(%d) left %d", c.UID, got)
	}
	return nil
}

// errClosed is returned by Do after Close.
var errClosed = errors.New("identity closed")

// Do runs fn with the identity's credentials and returns its error.
func (id *Identity) Do(fn func() error) error {
	if id == nil || id.calls == nil {
		return fn()
	}
	c := call{fn: fn, done: make(chan error, 1)}
	select {
	case id.calls <- c:
		return <-c.done
	case <-id.quit:
		return errClosed
	}
}

// Close stops the workers; their threads end with them.
func (id *Identity) Close() {
	if id == nil || id.calls == nil {
		return
	}
	id.once.Do(func() { close(id.quit) })
	id.wg.Wait()
}
