// Command slurmrecord records what a real Slurm prints, for the Slurm
// adapter's fixtures (controller/slurm/testdata). Against a running lab
// (hack/lab/up.sh; SLURM=24.11 for Debian trixie's Slurm) it submits a
// cluster's worth of jobs in every shape the adapter reads (a plain job, a
// name with spaces, array tasks and a pending array remainder, a two-node
// job, a heterogeneous job, a requeued job, user- and admin-held jobs, a
// job with excluded and required nodes, a finished job) and a draining
// node, then saves each command's output under -out, named as the
// fixtures' runner looks them up: one directory per JSON data format
// (-parsers, `--json=<parser>`) and text/ for the text forms. scenario.json
// names the job id of each role, so that tests say "the requeued job"
// rather than an id that changes with each recording. The jobs are
// cancelled and the node resumed at the end.
//
//	make lab-up-24.11
//	source /tmp/spotrescue-lab-24.11/lab.env
//	go run ./hack/slurmrecord -out controller/slurm/testdata/24.11
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spotrescue/spotrescue/controller/slurm"
)

// scenario is the role of each recorded job: its numeric job id.
type scenario struct {
	Slurm     string            `json:"slurm"`
	Jobs      map[string]string `json:"jobs"`
	Nodes     []string          `json:"nodes"`
	Drained   string            `json:"drained"`
	DrainNote string            `json:"drain_reason"`
}

const drainReason = "recorded: draining node"

func main() {
	out := flag.String("out", "", "directory to write (e.g. controller/slurm/testdata/24.11)")
	parsers := flag.String("parsers", "v0.0.40,v0.0.41,v0.0.42", "JSON data formats to record, comma-separated")
	flag.Parse()
	if *out == "" || os.Getenv("SLURM_CONF") == "" {
		log.Fatal("usage: source <lab>/lab.env; slurmrecord -out <dir> [-parsers v0.0.40,...]")
	}
	replace(*out)
	sc := &scenario{Jobs: map[string]string{}, Nodes: []string{"compute-1", "compute-4", "pc-dy-c5-1"}, Drained: "compute-4", DrainNote: drainReason}
	current = sc
	defer cleanup(sc)
	submit(sc)
	sc.Slurm = strings.TrimSpace(run("scontrol", "--version"))
	for _, p := range strings.Split(*parsers, ",") {
		record(filepath.Join(*out, p), sc, "--json="+p)
	}
	record(filepath.Join(*out, "text"), sc, "")
	b, _ := json.MarshalIndent(sc, "", "  ")
	must(os.WriteFile(filepath.Join(*out, "scenario.json"), append(b, '\n'), 0o644))
	log.Printf("recorded %s into %s", sc.Slurm, *out)
}

// replace clears a previous recording at dir (one with a scenario.json),
// whose files are named for job ids this one will not have; any other
// non-empty directory is refused.
func replace(dir string) {
	entries, err := os.ReadDir(dir)
	switch {
	case os.IsNotExist(err) || err == nil && len(entries) == 0:
		return
	case err != nil:
		fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "scenario.json")); err != nil {
		fatalf("%s holds files but no scenario.json: not a recording to replace", dir)
	}
	must(os.RemoveAll(dir))
}

// submit builds the cluster: every node busy, so the pending jobs stay so.
func submit(sc *scenario) {
	dir, err := os.MkdirTemp("", "slurmrecord")
	must(err)
	het := filepath.Join(dir, "het.sh")
	must(os.WriteFile(het, []byte("#!/bin/bash\n#SBATCH -n1 --exclusive\n#SBATCH hetjob\n#SBATCH -n1 --exclusive\nsleep 600\n"), 0o755))
	sleep := []string{"-o", "/dev/null", "--wrap", "sleep 600"}
	sc.Jobs["completed"] = sbatch("-J", "completed", "-w", "compute-1", "-o", "/dev/null", "--wrap", "true")
	waitState(sc.Jobs["completed"], "COMPLETED")
	sc.Jobs["plain"] = sbatch(append([]string{"-J", "plain", "-w", "compute-1", "-n1"}, sleep...)...)
	sc.Jobs["spaces"] = sbatch(append([]string{"-J", "a name  with spaces", "-w", "compute-1", "-n1"}, sleep...)...)
	sc.Jobs["requeued"] = sbatch(append([]string{"-J", "requeued", "-w", "compute-1", "-n1"}, sleep...)...)
	sc.Jobs["array"] = sbatch(append([]string{"-J", "array", "-w", "compute-2", "-n1", "--array=1-3%2"}, sleep...)...)
	sc.Jobs["twonode"] = sbatch(append([]string{"-J", "twonode", "-N2", "-n2", "-w", "compute-[3-4]"}, sleep...)...)
	sc.Jobs["het"] = sbatch("-J", "het", "-p", "pc", "-o", "/dev/null", het)
	sc.Jobs["userheld"] = sbatch(append([]string{"-J", "userheld", "-H", "-n1"}, sleep...)...)
	sc.Jobs["adminheld"] = sbatch(append([]string{"-J", "adminheld", "-n1"}, sleep...)...)
	sc.Jobs["excluded"] = sbatch(append([]string{"-J", "excluded", "-n1", "-x", "compute-1", "-w", "compute-2", "--begin=now+1hour"}, sleep...)...)
	run("scontrol", "hold", sc.Jobs["adminheld"])
	for _, role := range []string{"plain", "spaces", "requeued", "twonode", "het"} {
		waitState(sc.Jobs[role], "RUNNING")
	}
	waitState(sc.Jobs["array"]+"_1", "RUNNING")
	run("scontrol", "requeue", sc.Jobs["requeued"])
	waitFor("job "+sc.Jobs["requeued"]+" to run again", func() bool { // back on compute-1, restart count 1
		out := run("scontrol", "show", "job", sc.Jobs["requeued"])
		return strings.Contains(out, "JobState=RUNNING") && strings.Contains(out, "Restarts=1")
	})
	run("scontrol", "update", "nodename="+sc.Drained, "state=drain", "reason="+drainReason)
	time.Sleep(2 * time.Second) // let slurmctld's view settle: a job seen mid-transition is not what a fixture should hold
}

// record saves every command's output into dir: flag is "--json=<parser>"
// for a JSON directory, "" for the text forms.
func record(dir string, sc *scenario, flag string) {
	must(os.MkdirAll(dir, 0o755))
	save := func(name string, args ...string) {
		must(os.WriteFile(filepath.Join(dir, name), []byte(run(args[0], args[1:]...)), 0o644))
	}
	save("version.txt", "scontrol", "--version")
	if flag == "" {
		save("squeue.txt", append([]string{"squeue"}, slurm.SqueueTextArgs()...)...)
		for _, id := range sc.Jobs {
			save("scontrol_show_job_"+id+".txt", "scontrol", "show", "job", id)
		}
		for _, n := range sc.Nodes {
			save("scontrol_show_node_"+n+".txt", "scontrol", "show", "node", n)
		}
		save("scontrol_show_nodes.txt", "scontrol", "show", "node")
		return
	}
	// Not sinfo: the adapter reads it only on 22.05 (sinfo --json there is
	// the one JSON listing of nodes), and later releases print another shape.
	save("squeue.json", "squeue", flag, "--states=all")
	for _, id := range sc.Jobs {
		save("scontrol_show_job_"+id+".json", "scontrol", flag, "show", "job", id)
	}
	for _, n := range sc.Nodes {
		save("scontrol_show_node_"+n+".json", "scontrol", flag, "show", "node", n)
	}
	save("scontrol_show_nodes.json", "scontrol", flag, "show", "node")
}

func cleanup(sc *scenario) {
	for _, id := range sc.Jobs {
		exec.Command("scancel", id).Run()
	}
	if sc.Drained != "" {
		exec.Command("scontrol", "update", "nodename="+sc.Drained, "state=resume").Run()
	}
}

func sbatch(args ...string) string {
	out := run("sbatch", append([]string{"--parsable"}, args...)...)
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";") // "<id>;<cluster>" on a federation
	return id
}

// waitState waits for a job (or array task) to reach state.
func waitState(id, state string) {
	waitFor("job "+id+" to reach "+state, func() bool {
		out, _ := exec.Command("squeue", "-h", "-t", "all", "-j", id, "-o", "%T").Output()
		return strings.Contains(string(out), state)
	})
}

// waitFor waits up to a minute for cond.
func waitFor(what string, cond func() bool) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	fatalf("timed out waiting for %s", what)
}

// current is the scenario being built, cancelled on a fatal error too.
var current *scenario

func fatalf(format string, args ...any) {
	if current != nil {
		cleanup(current)
	}
	log.Fatalf(format, args...)
}

func run(name string, args ...string) string {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func must(err error) {
	if err != nil {
		fatalf("slurmrecord: %v", err)
	}
}
