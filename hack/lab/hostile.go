package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Account is one of the lab's unprivileged users (hack/lab/up.sh makes
// them): the job users that node-side security tests play.
type Account struct {
	Name     string
	UID, GID int
}

// The lab's users: Alice owns the jobs; Mallory is another user of the
// cluster.
const (
	Alice   = "spotrescue-alice"
	Mallory = "spotrescue-mallory"
)

// User returns one of the lab's users. The tests that need one run as root
// (they start the agent, Prolog and restore as root, as slurmd and SSM do)
// and fail, not skip, when either is missing.
func User(t testing.TB, name string) Account {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test plays an unprivileged user against root code: run it as root (make test does)")
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("lab user %s is missing (make lab-up creates it): %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Account{Name: name, UID: uid, GID: gid}
}

// Cred is the account's process credential.
func (a Account) Cred() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), Groups: []uint32{}}}
}

var (
	hostileOnce sync.Once
	hostileBin  string
	hostileErr  error
)

// hostile returns a copy of bin/hostile that any user can run: the build
// directory may be one only root can enter.
func (l *Lab) hostile(t testing.TB) string {
	t.Helper()
	hostileOnce.Do(func() {
		var dir string
		if dir, hostileErr = os.MkdirTemp("", "spotrescue-hostile-"); hostileErr != nil {
			return
		}
		os.Chmod(dir, 0o755)
		var data []byte
		if data, hostileErr = os.ReadFile(filepath.Join(l.Bin, "hostile")); hostileErr != nil {
			hostileErr = fmt.Errorf("%w (make build makes it)", hostileErr)
			return
		}
		hostileBin = filepath.Join(dir, "hostile")
		hostileErr = os.WriteFile(hostileBin, data, 0o755)
	})
	if hostileErr != nil {
		t.Fatalf("hostile: %v", hostileErr)
	}
	return hostileBin
}

// AsUser runs `hostile args...` once as the account and returns its error.
func (l *Lab) AsUser(t testing.TB, a Account, args ...string) error {
	t.Helper()
	cmd := exec.Command(l.hostile(t), args...)
	cmd.SysProcAttr = a.Cred()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Attack starts `hostile args...` as the account, a loop that runs until
// the returned stop is called; stop returns how many times its step worked.
// It has started looping when Attack returns.
func (l *Lab) Attack(t testing.TB, a Account, args ...string) (stop func() int) {
	t.Helper()
	cmd := exec.Command(l.hostile(t), args...)
	cmd.SysProcAttr = a.Cred()
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hostile %v: %v", args, err)
	}
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "started" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("hostile %v did not start: %q %v", args, line, err)
	}
	var once sync.Once
	n := 0
	stop = func() int {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			rest, _ := io.ReadAll(r)
			cmd.Wait()
			n, _ = strconv.Atoi(strings.TrimSpace(string(rest)))
		})
		return n
	}
	t.Cleanup(func() { stop() })
	return stop
}
