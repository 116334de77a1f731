//go:build lab

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// The Slurm hooks as slurmd runs them: the spotrescue binary, the Prolog
// as root and the TaskProlog as the job's user, with Slurm's environment,
// against a job user (a real account of the lab) who prepares traps in
// the places those hooks touch. Each test names its row of
// rescue/testdata/HOSTILE.md.

// hookSite is a scratch root and a configuration for one test.
type hookSite struct {
	l              *lab.Lab
	base, root     string // root is <base>/<node>, like /scratch
	config, spool  string
	layout         rescue.Layout
	template, node string
}

// newHookSite makes a world-traversable site whose scratch root is shared
// like /scratch (1777) and whose path template is template (below root).
func newHookSite(t *testing.T, template string) *hookSite {
	t.Helper()
	l := lab.Get(t)
	base, err := os.MkdirTemp("", "spotrescue-hooks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	s := &hookSite{l: l, base: base, node: "node-b", root: filepath.Join(base, "node-b"), spool: filepath.Join(base, "spool")}
	os.Mkdir(s.root, 0o777)
	os.Chmod(s.root, 0o1777)
	os.Mkdir(s.spool, 0o755)
	s.template = filepath.Join(base, "{node}", template)
	s.layout = rescue.Layout{Bucket: "spotrescue-lab", Prefix: "spotrescue", Cluster: "hooks" + fmt.Sprint(time.Now().UnixNano()%1e6), Spool: s.spool}
	s.config = filepath.Join(base, "spotrescue.yaml")
	yaml := fmt.Sprintf("cluster: %s\nregion: us-east-1\nbucket: spotrescue-lab\nprefix: spotrescue\nspool_dir: %s\nscratch:\n  root: %s\n  path_template: %s\n",
		s.layout.Cluster, s.spool, filepath.Join(base, "{node}"), s.template)
	if err := os.WriteFile(s.config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// slurmEnv is what slurmd gives the Prolog and TaskProlog of a job.
func (s *hookSite) slurmEnv(job string, u lab.Account, restarts int) []string {
	env := append(os.Environ(), "SLURM_JOB_ID="+job, "SLURM_JOB_USER="+u.Name, fmt.Sprintf("SLURM_JOB_UID=%d", u.UID),
		fmt.Sprintf("SLURM_JOB_GID=%d", u.GID), "SLURMD_NODENAME="+s.node, "SLURM_NODELIST="+s.node)
	if restarts > 0 {
		env = append(env, fmt.Sprintf("SLURM_RESTART_COUNT=%d", restarts))
	}
	return env
}

// prolog runs `spotrescue agent restore` as root, as the Prolog does, and
// returns its log.
func (s *hookSite) prolog(t *testing.T, job string, u lab.Account, restarts int) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.l.Bin, "spotrescue"), "agent", "restore", "--config", s.config)
	cmd.Env = s.slurmEnv(job, u, restarts)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// taskProlog runs `spotrescue taskprolog` as the job's user and returns
// the lines it prints for the task's environment.
func (s *hookSite) taskProlog(t *testing.T, job string, u lab.Account, restarts int) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.l.Bin, "spotrescue"), "taskprolog", "--config", s.config)
	cmd.Env = s.slurmEnv(job, u, restarts)
	cmd.SysProcAttr = u.Cred()
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Logf("taskprolog: %v: %s", err, stderr.String())
	}
	return out.String()
}

func statOf(t *testing.T, p string) (mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), int(st.Uid), int(st.Gid)
}

// HOSTILE.md: "a symlink planted at the path of the user's next job's
// scratch directory". With the per-user template and a /scratch/<user> the
// user owns, the user points their next job's directory at a root-owned
// directory. The root Prolog once chowned the target to the user (MkdirAll
// and Chown by path). Now no component is followed: the planted symlink is
// moved aside, the job gets a fresh directory of its own, and the target
// keeps its owner and mode.
func TestPrologNeverFollowsAPlantedSymlink(t *testing.T) {
	s := newHookSite(t, "{user}/{job_id}")
	alice := lab.User(t, lab.Alice)
	victim := filepath.Join(s.base, "victim")
	os.Mkdir(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "passwd"), []byte("root:x:0:0\n"), 0o644)
	vMode, vUID, _ := statOf(t, victim)

	// The first job makes /scratch/<user>, the user's, so they can reach
	// their jobs' directories.
	if out, err := s.prolog(t, "42", alice, 0); err != nil {
		t.Fatalf("prolog: %v\n%s", err, out)
	}
	userDir := filepath.Join(s.root, alice.Name)
	if mode, uid, _ := statOf(t, userDir); uid != alice.UID || !mode.IsDir() {
		t.Fatalf("%s: %v uid %d; want a directory of the user's", userDir, mode, uid)
	}
	if err := s.l.AsUser(t, alice, "write", filepath.Join(userDir, "42", "f"), "mine"); err != nil {
		t.Fatalf("the user cannot write in their job's directory: %v", err)
	}

	// The trap for the next job.
	next := filepath.Join(userDir, "43")
	if err := s.l.AsUser(t, alice, "symlink", victim, next); err != nil {
		t.Fatal(err)
	}
	out, err := s.prolog(t, "43", alice, 0)
	if err != nil {
		t.Fatalf("prolog: %v\n%s", err, out)
	}
	if mode, uid, _ := statOf(t, victim); mode != vMode || uid != vUID {
		t.Fatalf("the symlink's target became %v uid %d (was %v uid %d)", mode, uid, vMode, vUID)
	}
	if mode, uid, _ := statOf(t, next); !mode.IsDir() || uid != alice.UID || mode.Perm() != 0o700 {
		t.Errorf("the job's directory is %v uid %d; want a fresh directory of the user's, 0700", mode, uid)
	}
	if aside, _ := filepath.Glob(next + ".planted-*"); len(aside) != 1 || !strings.Contains(out, "planted") || !strings.Contains(out, next) {
		t.Errorf("the planted symlink was not kept aside and logged with its path: %v\n%s", aside, out)
	}
}

// HOSTILE.md: "a directory another user planted at a job's scratch path".
// The default template puts every job's directory in the shared 1777
// root; Mallory makes the directory of Alice's next job first. It is never
// adopted (chowned to Alice, with Mallory still able to read it): it is
// moved aside, Mallory's still, and Alice's job gets a fresh one.
func TestPrologNeverAdoptsAnotherUsersDirectory(t *testing.T) {
	s := newHookSite(t, "{job_id}")
	alice, mallory := lab.User(t, lab.Alice), lab.User(t, lab.Mallory)
	planted := filepath.Join(s.root, "44")
	if err := s.l.AsUser(t, mallory, "mkdir", planted); err != nil {
		t.Fatal(err)
	}
	if out, err := s.prolog(t, "44", alice, 0); err != nil {
		t.Fatalf("prolog: %v\n%s", err, out)
	}
	if _, uid, _ := statOf(t, planted); uid != alice.UID {
		t.Errorf("job 44's directory is uid %d's, not the job user's", uid)
	}
	aside, _ := filepath.Glob(planted + ".planted-*")
	if len(aside) != 1 {
		t.Fatalf("the planted directory was not kept aside: %v", aside)
	}
	if _, uid, _ := statOf(t, aside[0]); uid != mallory.UID {
		t.Errorf("the planted directory was given away: uid %d", uid)
	}
}

// HOSTILE.md: "the env file rewritten by the job's user" and "an oversized
// env file". Root restores whatever the env file names, so only a file
// root wrote is trusted: the one the controller writes is root's and
// read-only to everyone (the user can neither write nor chmod it); one
// the user owns (as older versions wrote them), pointing at another job's
// data, is refused by the Prolog and the TaskProlog alike, as is one too
// big to be ours.
func TestEnvFileOnlyRootCanWrite(t *testing.T) {
	s := newHookSite(t, "{job_id}")
	alice := lab.User(t, lab.Alice)
	ctx := context.Background()

	// Another job's rescued data: what a forged env file would point at.
	src := filepath.Join(s.base, "node-a", "99")
	os.MkdirAll(src, 0o700)
	os.WriteFile(filepath.Join(src, "bob.secret"), []byte("BOB'S DATA"), 0o600)
	agent := &rescue.Agent{S3: s.l.S3(), Log: zap.NewNop(), Root: filepath.Join(s.base, "{node}")}
	soon := time.Now().Add(time.Minute)
	if r := agent.Rescue(ctx, &rescue.Plan{ID: "bob", Node: "node-a", Bucket: "spotrescue-lab",
		Jobs: []rescue.PlanJob{{JobID: "99", Dir: src, Prefix: s.layout.NodePrefix("99", 0, "node-a")}}}, rescue.Deadlines{Soft: soon, Hard: soon})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}

	// The controller's env file for Alice's job 45: root's, 0444.
	if err := s.layout.WriteJobEnv("45", rescue.JobEnv{URI: s.layout.RunURI("45", 0), Status: "complete", Nodes: [][]string{{"node-a"}}}); err != nil {
		t.Fatal(err)
	}
	env := s.layout.EnvPath("45")
	if mode, uid, _ := statOf(t, env); uid != 0 || mode.Perm() != 0o444 {
		t.Errorf("env file %v uid %d; want root's, 0444", mode, uid)
	}
	if err := s.l.AsUser(t, alice, "open-write", env); err == nil {
		t.Error("the job's user opened the env file for writing")
	}

	forged := fmt.Sprintf("SPOT_RESCUE_URI=%s\nSPOT_RESCUE_STATUS=complete\nSPOT_RESCUE_RUN=0\nSPOT_RESCUE_NODES=node-a\n", s.layout.RunURI("99", 0))
	for _, tc := range []struct {
		name, want string
		write      func(p string)
	}{
		{"owned by the user, naming another job's data", "not root", func(p string) {
			os.WriteFile(p, []byte(forged), 0o600)
			os.Chown(p, alice.UID, alice.GID)
		}},
		{"root's but naming another job's data", "not the job's", func(p string) { os.WriteFile(p, []byte(forged), 0o444) }},
		{"root's but over a megabyte", "over the", func(p string) {
			os.WriteFile(p, append([]byte(forged), bytes.Repeat([]byte("#\n"), 1<<20)...), 0o444)
		}},
		{"a symlink to root's env file of another job", "symbolic link", func(p string) {
			s.layout.WriteJobEnv("99", rescue.JobEnv{URI: s.layout.RunURI("99", 0), Status: "complete", Nodes: [][]string{{"node-a"}}})
			os.Symlink(s.layout.EnvPath("99"), p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(env)
			os.RemoveAll(filepath.Join(s.root, "45"))
			tc.write(env)
			out, err := s.prolog(t, "45", alice, 1)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("prolog accepted the env file (err %v), or did not say why (%q):\n%s", err, tc.want, out)
			}
			if _, err := os.Stat(filepath.Join(s.root, "45", "bob.secret")); err == nil {
				t.Fatal("another job's data was restored into the user's directory")
			}
			if exports := s.taskProlog(t, "45", alice, 1); strings.Contains(exports, "SPOT_RESCUE_URI") {
				t.Errorf("the TaskProlog exported the forged file:\n%s", exports)
			}
		})
	}
}

// The Prolog's restore is bounded by restore.timeout, below Slurm's
// PrologEpilogTimeout: against an S3 that never answers, the Prolog ends
// in time, the job starts without its data, and the marker says failed.
func TestPrologRestoreIsBounded(t *testing.T) {
	s := newHookSite(t, "{job_id}")
	alice := lab.User(t, lab.Alice)
	ctx := context.Background()
	src := filepath.Join(s.base, "node-a", "46")
	os.MkdirAll(src, 0o700)
	os.WriteFile(filepath.Join(src, "big.dat"), bytes.Repeat([]byte("x"), 1<<20), 0o600)
	agent := &rescue.Agent{S3: s.l.S3(), Log: zap.NewNop(), Root: filepath.Join(s.base, "{node}")}
	soon := time.Now().Add(time.Minute)
	if r := agent.Rescue(ctx, &rescue.Plan{ID: "p46", Node: "node-a", Bucket: "spotrescue-lab",
		Jobs: []rescue.PlanJob{{JobID: "46", Dir: src, Prefix: s.layout.NodePrefix("46", 0, "node-a")}}}, rescue.Deadlines{Soft: soon, Hard: soon})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := s.layout.WriteJobEnv("46", rescue.JobEnv{URI: s.layout.RunURI("46", 0), Status: "complete", Nodes: [][]string{{"node-a"}}}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.config, append(mustReadFile(t, s.config), []byte("restore:\n  timeout: 10s\n")...), 0o644)
	// Every object read hangs for a minute.
	req, _ := http.NewRequest(http.MethodPut, s.l.Env["LAB_FAULTPROXY_URL"]+"/_fault/rules", strings.NewReader(`[{"service":"s3","operation":"GetObject","latency":"60s"}]`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("set faults: %v", err)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodPut, s.l.Env["LAB_FAULTPROXY_URL"]+"/_fault/rules", strings.NewReader(`[]`))
		http.DefaultClient.Do(req)
	})
	cmd := exec.Command(filepath.Join(s.l.Bin, "spotrescue"), "agent", "restore", "--config", s.config)
	cmd.Env = append(s.slurmEnv("46", alice, 1), "AWS_ENDPOINT_URL="+s.l.Env["LAB_FAULTPROXY_URL"])
	start := time.Now()
	out, _ := cmd.CombinedOutput()
	took := time.Since(start)
	if took > 20*time.Second {
		t.Errorf("the Prolog took %v with restore.timeout 10s", took.Round(time.Second))
	}
	if !strings.Contains(string(out), "restore failed") {
		t.Errorf("the Prolog did not say the restore failed:\n%s", out)
	}
	if exports := s.taskProlog(t, "46", alice, 1); !strings.Contains(exports, "SPOT_RESCUE_STATUS=failed") {
		t.Errorf("the job was not told its restore failed:\n%s", exports)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
