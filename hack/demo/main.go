// Command demo shows a rescue end to end in the lab (`make demo`): a job
// writes checkpoint files to its node's scratch, a Spot interruption
// warning arrives for that node, and the job runs again on another node
// with its files restored and SPOT_RESCUE_* set.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

const metricsAddr = "127.0.0.1:9464"

// jobScript checkpoints on its first run; a resumed run reports what it got back.
const jobScript = `#!/bin/bash
if [ -z "${SPOT_RESCUE_URI:-}" ]; then
  echo "first run on $SLURMD_NODENAME, writing to $SPOT_RESCUE_SCRATCH"
  cd "$SPOT_RESCUE_SCRATCH" && mkdir -p checkpoints
  for step in 1 2 3; do head -c 3000000 /dev/urandom > checkpoints/step-$step.ckpt; done
  echo "epoch=3 loss=0.042" > progress.txt
  touch .ready
  sleep 600
else
  echo "resumed run $SLURM_RESTART_COUNT on $SLURMD_NODENAME"
  env | grep '^SPOT_RESCUE_' | sort
  cd "$SPOT_RESCUE_DIR" && find . -type f | sort | xargs sha256sum | sed 's/^/sum /'
  echo "continuing from $(cat progress.txt)"
fi
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run() error {
	l, err := lab.Load()
	if err != nil {
		return fmt.Errorf("lab is not up: %w", err)
	}
	stop, err := startController(l)
	if err != nil {
		return err
	}
	defer stop()
	var interrupted string
	// ParallelCluster replaces a reclaimed node's instance and resumes the
	// node; the lab's node never went away, so it is resumed here, whatever
	// happens: the lab is left as the demo found it.
	defer func() {
		if interrupted != "" {
			l.Command("scontrol", "update", "nodename="+interrupted, "state=resume").Run()
		}
	}()

	say("Submitting a job that writes checkpoint files to its node's /scratch")
	id, node, err := submit(l)
	if err != nil {
		return err
	}
	dir := filepath.Join(l.Scratch(node), id)
	before, err := checksums(dir)
	if err != nil {
		return err
	}
	fmt.Printf("job %s runs on %s; its scratch (%s) holds:\n", id, node, dir)
	for _, p := range sortedKeys(before) {
		fmt.Printf("  %-28s sha256 %s…\n", p, before[p][:16])
	}

	say("EC2 warns: Spot interruption for %s (%s) in 120 s", node, l.Instances[node])
	interrupted = node
	out, err := l.Command(filepath.Join(l.Bin, "spotrescue"), "simulate", "--node", node).CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		return err
	}

	say("The controller holds the job, drains the node, has the node upload the job's scratch, and requeues it")
	rec, err := followRecord(l, id)
	if err != nil {
		return err
	}
	fmt.Printf("outcome %s: %d files, %d bytes saved to %s\n", rec.Outcome, rec.Files, rec.Bytes, rec.URI)
	fmt.Printf("(the %d files listed above: three 3 MB checkpoints, progress.txt and the empty .ready marker)\n", len(before))
	fmt.Printf("%s; warning to requeue took %s\n", rec.Requeue, rec.Times.Requeued.Sub(rec.Times.Detected).Round(time.Millisecond))

	say("Slurm runs the job again on another node; its Prolog restores the data, its TaskProlog exports SPOT_RESCUE_*")
	output, err := waitResumed(l, id)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(output, "\n") {
		if !strings.HasPrefix(line, "sum ") && line != "" {
			fmt.Println("  " + line)
		}
	}
	return compare(before, output)
}

func startController(l *lab.Lab) (func(), error) {
	logPath := filepath.Join(l.Dir, "log", "demo-controller.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(l.Bin, "spotrescue"), "controller", "--metrics-listen", metricsAddr)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	fmt.Printf("controller running (pid %d), logs in %s, metrics on http://%s/metrics\n", cmd.Process.Pid, logPath, metricsAddr)
	stop := func() {
		fmt.Println("\nstopping the controller (it finishes its last 20 s long poll first)")
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logFile.Close()
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, nil
			}
		}
	}
	stop()
	return nil, fmt.Errorf("controller not ready; see %s", logPath)
}

func submit(l *lab.Lab) (id, node string, err error) {
	dir := filepath.Join(l.Dir, "demo")
	os.MkdirAll(dir, 0o777)
	script := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(script, []byte(jobScript), 0o755); err != nil {
		return "", "", err
	}
	out, err := l.Command("sbatch", "--parsable", "-J", "demo", "--open-mode=append", "-o", filepath.Join(dir, "job-%j.out"), script).Output()
	if err != nil {
		return "", "", fmt.Errorf("sbatch: %w", err)
	}
	id = strings.TrimSpace(string(out))
	err = waitFor(60*time.Second, "job "+id+" to write its checkpoints", func() bool {
		node = jobField(l, id, "BatchHost")
		_, err := os.Stat(filepath.Join(l.Scratch(node), id, ".ready"))
		return node != "" && err == nil
	})
	return id, node, err
}

// followRecord prints each phase of the job's record until it is Done.
func followRecord(l *lab.Lab, id string) (*state.Record, error) {
	store := state.New(l.DynamoDB(), "spotrescue-lab")
	start := time.Now()
	var last state.Phase
	var rec *state.Record
	err := waitFor(2*time.Minute, "the rescue of job "+id, func() bool {
		r, err := store.Get(context.Background(), state.Key{Cluster: "lab", JobID: id, Run: 0})
		if err != nil {
			return false
		}
		if r.Phase != last {
			fmt.Printf("  +%-6s %s\n", time.Since(start).Round(10*time.Millisecond), r.Phase)
			last = r.Phase
		}
		rec = r
		return r.Phase == state.Done
	})
	return rec, err
}

func waitResumed(l *lab.Lab, id string) (string, error) {
	var output string
	err := waitFor(2*time.Minute, "job "+id+" to run again", func() bool {
		b, _ := os.ReadFile(jobField(l, id, "StdOut"))
		output = string(b)
		return strings.Contains(output, "continuing from")
	})
	return output, err
}

// compare checks the resumed run's checksums against the first run's files.
func compare(before map[string]string, output string) error {
	after := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "sum" {
			after[f[2]] = f[1]
		}
	}
	for p, sum := range before {
		if after[p] != sum {
			return fmt.Errorf("%s differs after the restore", p)
		}
	}
	say("All %d files saved are byte-identical on the new node: the job resumed instead of restarting", len(before))

	return nil
}

func checksums(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out["./"+rel] = hex.EncodeToString(sum[:])
		return nil
	})
	return out, err
}

func jobField(l *lab.Lab, id, field string) string {
	out, _ := l.Command("scontrol", "-o", "show", "job", id).Output()
	for _, kv := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == field {
			return v
		}
	}
	return ""
}

func waitFor(timeout time.Duration, what string, cond func() bool) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
