package rescue

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// One agent per job run and kind of plan on a node; the lock goes with its
// holder, and the job's other run, or a pre-sync, is not held up by it.
func TestJobLockIsOnePerJobRunAndKind(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Root: filepath.Join(root, "{node}")}
	os.Mkdir(filepath.Join(root, "n1"), 0o755)
	job := PlanJob{JobID: "42_7", Run: 1}
	first, held, err := a.tryLock("n1", false, job)
	if err != nil || held {
		t.Fatalf("first lock: held=%v err=%v", held, err)
	}
	if _, held, _ := a.tryLock("n1", false, job); !held {
		t.Fatal("a second agent took a held job's lock")
	}
	for _, other := range []struct {
		presync bool
		job     PlanJob
	}{{true, job}, {false, PlanJob{JobID: "42_7", Run: 2}}, {false, PlanJob{JobID: "43", Run: 1}}} {
		l, held, err := a.tryLock("n1", other.presync, other.job)
		if err != nil || held {
			t.Errorf("%+v was held up: held=%v err=%v", other, held, err)
		}
		l.unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*lockPoll)
	defer cancel()
	if _, err := a.waitLock(ctx, "n1", false, job); err == nil {
		t.Fatal("waitLock returned while the lock was held")
	}
	first.unlock()
	again, err := a.waitLock(context.Background(), "n1", false, job)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again.unlock()
}

// A scratch root is often world-writable: a lock directory that is not the
// agent's own, or a symlink, cannot hold or move the locks. Root moves the
// planted entry aside (kept, not deleted) and locks in a directory of its
// own; anyone else refuses it (the rescue then goes on unlocked). A
// missing root is not created.
func TestJobLockRefusesADirectoryItDoesNotOwn(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Root: filepath.Join(root, "{node}")}
	job := PlanJob{JobID: "42", Run: 0}

	os.Mkdir(filepath.Join(root, "open"), 0o777)
	os.Mkdir(filepath.Join(root, "open", lockDir), 0o777)
	os.Chmod(filepath.Join(root, "open", lockDir), 0o777)
	os.Mkdir(filepath.Join(root, "linked"), 0o755)
	elsewhere := t.TempDir()
	os.Symlink(elsewhere, filepath.Join(root, "linked", lockDir))
	for _, node := range []string{"open", "linked"} {
		l, held, err := a.tryLock(node, false, job)
		if os.Geteuid() != 0 {
			if err == nil || held {
				t.Errorf("%s: lock taken (held=%v, err=%v)", node, held, err)
			}
			continue
		}
		if err != nil || held {
			t.Fatalf("%s: root did not take the lock in a directory of its own: held=%v, err=%v", node, held, err)
		}
		l.unlock()
		info, err := os.Lstat(filepath.Join(root, node, lockDir))
		if err != nil || !info.IsDir() || info.Mode().Perm() != 0o711 {
			t.Errorf("%s: lock directory %v, %v; want root's, 0711", node, info.Mode(), err)
		}
		aside, _ := filepath.Glob(filepath.Join(root, node, lockDir+".planted-*"))
		if len(aside) != 1 {
			t.Errorf("%s: the planted entry was not kept aside: %v", node, aside)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("a lock was written through the planted symlink: %v", entries)
	}
	if _, _, err := a.tryLock("missing", false, job); err == nil {
		t.Error("locked on a node without a scratch root")
	}
	if _, err := os.Stat(filepath.Join(root, "missing")); !os.IsNotExist(err) {
		t.Errorf("the missing scratch root was created: %v", err)
	}
	if _, _, err := a.tryLock("open", false, PlanJob{JobID: "../../etc/x"}); err == nil {
		t.Error("a job id with a path in it named a lock file")
	}
}

// Jobs another agent holds are reported as left to it: a pre-sync leaves
// them at once; a final rescue waits, and without S3 to show the other's
// manifest, gives up at its deadline with an error naming the job.
func TestRescueLeavesHeldJobsToTheirAgent(t *testing.T) {
	root := t.TempDir()
	a := &Agent{Root: filepath.Join(root, "{node}"), Log: zaptest.NewLogger(t)}
	os.Mkdir(filepath.Join(root, "n1"), 0o755)
	job := PlanJob{JobID: "42", Run: 3, Dir: filepath.Join(root, "n1", "42"), Prefix: "x/42/run-3/n1/"}
	pre, _, _ := a.tryLock("n1", true, job)
	defer pre.unlock()
	r := a.Rescue(context.Background(), &Plan{ID: "p2", Node: "n1", Bucket: "b", Presync: true, Jobs: []PlanJob{job}}, Deadlines{})
	if len(r) != 1 || !r[0].LeftToOther || r[0].Err != nil || r[0].Manifest != nil {
		t.Fatalf("pre-sync result: %+v", r)
	}
	t.Log(r[0].Summary())

	fin, _, _ := a.tryLock("n1", false, job)
	defer fin.unlock()
	past := time.Now().Add(-lockWait - time.Second)
	r = a.Rescue(context.Background(), &Plan{ID: "p3", Node: "n1", Bucket: "b", Jobs: []PlanJob{job}}, Deadlines{Soft: past, Hard: past})
	if len(r) != 1 || !r[0].LeftToOther || r[0].Err == nil {
		t.Fatalf("final result: %+v", r)
	}
	t.Log(r[0].Summary())
}
