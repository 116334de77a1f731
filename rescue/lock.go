package rescue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// A node can get two agents for one job: a controller that dies between
// SendCommand and writing its record sends the command again when it
// resumes, and a timer pre-sync can overlap one started by a Rebalance
// Recommendation. Two agents writing one prefix race on the manifest: the
// later one may list a checksum the other's upload has replaced. So each
// job run has a lock on the node, taken with flock(2) on a root-owned file
// under the scratch root (see stateDir): the kernel drops it when its agent
// dies, however it dies, and users (who cannot open it) cannot hold it.
//
// A final rescue that finds the lock held waits for it (the holder works to
// the same deadline), then leaves the job to the holder if it wrote a final
// manifest, and rescues it itself if it did not (it died). A pre-sync that
// finds another pre-sync of the job leaves the job to it. Final rescues and
// pre-syncs lock apart: a final rescue must never wait on a pre-sync, which
// has no deadline and stops by itself once a final manifest is written.

// lockDir is the agent's directory in the node's scratch root. A job's
// directory cannot be it: the path template puts {job_id} below the root,
// and no job id or user name starts with a dot.
const lockDir = ".spotrescue"

// lockNameRe keeps a job id that names a lock file to a plain file name.
var lockNameRe = regexp.MustCompile(`^[0-9A-Za-z_+]{1,32}$`)

// lockPoll is how often a held lock is tried again.
const lockPoll = 100 * time.Millisecond

// jobLock is one job run's lock on this node.
type jobLock struct{ f *os.File }

// lockName is the lock file of a job run for this kind of plan.
func lockName(presync bool, pj PlanJob) string {
	kind := "rescue"
	if presync {
		kind = "presync"
	}
	return fmt.Sprintf("%s-%d.%s.lock", pj.JobID, pj.Run, kind)
}

// tryLock takes the job's lock if it is free. held reports another agent
// holding it; err a lock that cannot be taken at all (then the rescue goes
// on unlocked: a read-only root must not cost the data).
func (a *Agent) tryLock(node string, presync bool, pj PlanJob) (l *jobLock, held bool, err error) {
	if !lockNameRe.MatchString(pj.JobID) {
		return nil, false, fmt.Errorf("job id %q cannot name a lock file", pj.JobID)
	}
	dir, err := a.stateDir(node)
	if err != nil {
		return nil, false, fmt.Errorf("lock job %s: %w", pj.JobID, err)
	}
	defer dir.Close()
	f, err := dir.Open(lockName(presync, pj), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("lock job %s: %w", pj.JobID, err)
	}
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		return nil, true, nil
	case err != nil:
		f.Close()
		return nil, false, fmt.Errorf("lock job %s: %w", pj.JobID, err)
	}
	// Who holds it, for a final rescue that must stop a pre-sync.
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &jobLock{f: f}, false, nil
}

// A final rescue and a pre-sync of one job run must never upload to its
// prefix at once: a late pre-sync PUT could replace an object the final
// manifest lists. The controller cancels a pre-sync through SSM before the
// final rescue, but a cancelled command's process may still be running,
// and a rebalance pre-sync can start while a final rescue is under way. So
// a final rescue also takes the job's pre-sync lock, for its whole run,
// stopping the pre-sync that holds it (SIGTERM, then SIGKILL): no pre-sync
// of the job can start, or still be uploading, while it works.
const (
	presyncTerm = 3 * time.Second // what a pre-sync gets to stop cleanly
	presyncKill = 2 * time.Second // and to be gone after SIGKILL
)

// stopPresync takes the job's pre-sync lock for a final rescue, stopping
// the pre-sync agent that holds it.
func (a *Agent) stopPresync(node string, pj PlanJob, log *zap.Logger) (*jobLock, error) {
	l, held, err := a.tryLock(node, true, pj)
	if !held {
		return l, err
	}
	pid := a.lockHolder(node, pj)
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, presyncTerm}, {syscall.SIGKILL, presyncKill}} {
		if pid > 0 && isAgent(pid) {
			log.Info("stopping the job's pre-sync on this node before the final rescue", zap.String("job", pj.JobID), zap.Int("pid", pid), zap.String("signal", step.sig.String()))
			syscall.Kill(pid, step.sig)
		}
		deadline := time.Now().Add(step.wait)
		for time.Now().Before(deadline) {
			time.Sleep(lockPoll)
			if l, held, err := a.tryLock(node, true, pj); !held {
				return l, err
			}
		}
	}
	return nil, fmt.Errorf("the job's pre-sync (pid %d) is still running", pid)
}

// lockHolder is the pid written in a job's pre-sync lock, or 0.
func (a *Agent) lockHolder(node string, pj PlanJob) int {
	dir, err := a.stateDir(node)
	if err != nil {
		return 0
	}
	defer dir.Close()
	f, err := dir.Open(lockName(true, pj), os.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 16)
	n, _ := f.Read(buf)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid
}

// isAgent reports whether pid is a spotrescue agent rescue: a lock file's
// pid may be stale, and another process must never be signalled.
func isAgent(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 2 && strings.HasPrefix(filepath.Base(args[0]), "spotrescue") && slices.Contains(args, "agent") && slices.Contains(args, "rescue")
}

// stateDirMode lets users open a file there by name (a restore marker,
// 0644) but neither list nor write the directory, nor open a lock (0600).
const stateDirMode = 0o711

// stateDir opens the agent's directory in the node's scratch root, making
// it if needed: root's own, mode 0711, reached by handle. A scratch root is
// often world-writable (like /tmp), so what is at that name may be a
// user's directory or a symlink planted to hold or move the locks: the
// agent, as root, moves such an entry aside (it is evidence, not ours to
// delete) and makes its own. The root itself is never made: a node
// without it has nothing to lock.
func (a *Agent) stateDir(node string) (*confine.Dir, error) {
	root, err := confine.OpenRoot(a.root(node))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	for range 3 {
		if err := root.Mkdir(lockDir, stateDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		d, err := root.OpenDir(lockDir)
		if err == nil {
			info, serr := d.Stat()
			if serr == nil && info.UID == os.Geteuid() && info.Mode.Perm() == stateDirMode {
				return d, nil
			}
			d.Close()
		} else if !confine.IsSymlinkErr(err) && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed between our mkdir and open: make it again
		}
		if err := plantedAside(root, lockDir, a.Log); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s/%s keeps being replaced by another user", root.Name(), lockDir)
}

// waitLock takes the job's lock once its holder lets go, or gives up when
// ctx ends.
func (a *Agent) waitLock(ctx context.Context, node string, presync bool, pj PlanJob) (*jobLock, error) {
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		l, held, err := a.tryLock(node, presync, pj)
		if !held {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// unlock lets the next agent in. The file stays: removing it would let a
// waiter lock the removed file while a newcomer locks a new one.
func (l *jobLock) unlock() {
	if l != nil {
		l.f.Close()
	}
}

// locks is the set of job locks one Rescue holds.
type locks []*jobLock

func (ls locks) unlock() {
	for _, l := range ls {
		l.unlock()
	}
}

// lockJobs splits the plan's jobs into those this agent holds now and those
// another agent is rescuing. A final rescue also holds the pre-sync lock of
// each job it rescues (see stopPresync).
func (a *Agent) lockJobs(p *Plan, log *zap.Logger) (held locks, mine, theirs []int) {
	for i, pj := range p.Jobs {
		l, busy, err := a.tryLock(p.Node, p.Presync, pj)
		switch {
		case busy:
			theirs = append(theirs, i)
			continue
		case err != nil:
			log.Warn("cannot lock the job; rescuing it unlocked", zap.String("job", pj.JobID), zap.Error(err))
		default:
			held = append(held, l)
		}
		if !p.Presync {
			if pl, err := a.stopPresync(p.Node, pj, log); err != nil {
				log.Warn("cannot stop the job's pre-sync; rescuing beside it", zap.String("job", pj.JobID), zap.Error(err))
			} else if pl != nil {
				held = append(held, pl)
			}
		}
		mine = append(mine, i)
	}
	return held, mine, theirs
}

// lockWait is how long past the hard deadline a final rescue waits for
// another agent's lock: that agent's grace for uploads under way, then its
// manifest write.
const lockWait = putGrace + 12*time.Second

// afterOthers settles the jobs another agent held when this one started.
// A pre-sync leaves them to it. A final rescue waits for their locks, then
// reports the manifests the other agent wrote, and rescues itself, in
// whatever time is left, the jobs it left none for (it died).
func (a *Agent) afterOthers(ctx context.Context, p *Plan, d Deadlines, idx []int, results []JobResult, log *zap.Logger) {
	var held locks
	defer func() { held.unlock() }() // the locks taken below, not the empty set
	var orphans []int
	for _, i := range idx {
		pj := p.Jobs[i]
		results[i] = JobResult{JobID: pj.JobID, URI: "s3://" + p.Bucket + "/" + pj.Prefix, LeftToOther: true}
		log := log.With(zap.String("job", pj.JobID))
		if p.Presync {
			log.Info("another pre-sync of the job is running on this node; leaving the job to it")
			continue
		}
		log.Info("another agent on this node is rescuing the job; waiting for it")
		wait, cancel := context.WithDeadline(ctx, d.Hard.Add(lockWait))
		l, err := a.waitLock(wait, p.Node, false, pj)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			results[i].Err = fmt.Errorf("another agent on this node held it past the deadline: %w", err)
			continue
		case err != nil:
			log.Warn("cannot lock the job; rescuing it unlocked", zap.Error(err))
		default:
			held = append(held, l)
		}
		if pl, err := a.stopPresync(p.Node, pj, log); pl != nil {
			held = append(held, pl)
		} else if err != nil {
			log.Warn("cannot stop the job's pre-sync", zap.Error(err))
		}
		if m, err := a.finalManifest(ctx, p.Bucket, pj.Prefix); m != nil {
			log.Info("the other agent's rescue stands", zap.Bool("complete", m.Complete))
			results[i].Manifest = m
		} else {
			log.Warn("the other agent left no final manifest; rescuing the job", zap.NamedError("read", err))
			orphans = append(orphans, i)
		}
	}
	if len(orphans) > 0 {
		for k, r := range a.rescue(ctx, p.subset(orphans), d) {
			results[orphans[k]] = r
		}
	}
}

// finalManifest returns the last manifest a final rescue wrote at prefix,
// nil if there is none (only a pre-sync's, or the interim one of an agent
// that died mid-rescue).
func (a *Agent) finalManifest(ctx context.Context, bucket, prefix string) (*Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := ReadManifest(ctx, a.client(), bucket, prefix)
	if err != nil || m.Presync || m.Interim {
		return nil, err
	}
	return m, nil
}
