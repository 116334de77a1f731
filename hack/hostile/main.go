// Command hostile is the job user of the node-side security tests: run as a
// real unprivileged user, it does to its own scratch tree what an attacker
// would while the root agent, Prolog or restore works there.
//
//	hostile swap A B        exchange A and B (renameat2 RENAME_EXCHANGE) until
//	                        SIGTERM, then print how many times it did
//	hostile churn DIR NAME TARGET
//	                        until SIGTERM: make DIR/NAME a symlink to TARGET,
//	                        remove it, make it a directory, remove it, pause
//	hostile symlink TARGET LINK
//	hostile mkdir DIR
//	hostile write FILE TEXT
//	hostile open-write FILE exit 0 if FILE can be opened for writing
//	hostile flock FILE      exit 0 if FILE can be opened and locked
//
// The lab's tests (rescue, controller/cmd/spotrescue) start it with the
// credentials of the lab's users (hack/lab/up.sh makes them).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: hostile swap|churn|symlink|mkdir|write|open-write|flock <args>")
	}
	need := map[string]int{"swap": 2, "churn": 3, "symlink": 2, "mkdir": 1, "write": 2, "open-write": 1, "flock": 1}
	if n, ok := need[args[0]]; !ok || len(args)-1 != n {
		return fmt.Errorf("%s: wrong arguments %q", args[0], args[1:])
	}
	a := args[1:]
	switch args[0] {
	case "swap":
		return loop(func() bool {
			return unix.Renameat2(unix.AT_FDCWD, a[0], unix.AT_FDCWD, a[1], unix.RENAME_EXCHANGE) == nil
		})
	case "churn":
		// Each entry stands for a moment, and so does nothing: a root
		// process looking at the directory sees all three.
		p := filepath.Join(a[0], a[1])
		return loop(func() bool {
			ok := os.Symlink(a[2], p) == nil
			time.Sleep(time.Millisecond)
			os.Remove(p)
			ok = os.Mkdir(p, 0o777) == nil || ok
			time.Sleep(time.Millisecond)
			os.Remove(p)
			time.Sleep(2 * time.Millisecond)
			return ok
		})
	case "symlink":
		return os.Symlink(a[0], a[1])
	case "mkdir":
		return os.Mkdir(a[0], 0o777)
	case "write":
		return os.WriteFile(a[0], []byte(a[1]), 0o644)
	case "open-write":
		f, err := os.OpenFile(a[0], os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	case "flock":
		f, err := os.OpenFile(a[0], os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	return nil
}

// loop runs step until SIGTERM or SIGINT and prints how often it worked.
func loop(step func() bool) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var done atomic.Bool
	go func() { <-stop; done.Store(true) }()
	fmt.Println("started")
	n := 0
	for !done.Load() {
		if step() {
			n++
		}
	}
	fmt.Println(n)
	return nil
}
