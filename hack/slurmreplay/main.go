// Command slurmreplay stands in for Slurm's squeue, sinfo, scontrol and
// scancel by replaying recorded outputs: install it (or symlinks to it)
// under those names in a directory and point spotrescue's slurm.bin_dir at
// it. It answers read commands from files in $SLURMREPLAY_DIR, named like
// the fixtures in controller/slurm/testdata (squeue.json, version.txt,
// scontrol_show_job_<id>.txt, ...), accepts every change (hold, release,
// requeue, update, scancel) and appends each command line to
// $SLURMREPLAY_LOG when set, so a test or benchmark can count Slurm calls.
//
// It exists for what the lab's real Slurm cannot do: other Slurm versions
// (23.02, 23.11, 24.x) and clusters of a thousand nodes.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	record(name, args)
	file, change := answer(name, args)
	if change {
		return
	}
	if file == "" {
		fail("slurmreplay: no recorded output for %s %s", name, strings.Join(args, " "))
	}
	data, err := os.ReadFile(filepath.Join(os.Getenv("SLURMREPLAY_DIR"), file))
	if err != nil {
		// What scontrol says for what it does not know.
		if strings.Contains(file, "_node_") {
			fail("Node %s not found", strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "scontrol_show_node_"), filepath.Ext(file)))
		}
		fail("slurm_load_jobs error: Invalid job id specified")
	}
	os.Stdout.Write(data)
}

// answer maps a command line to the recorded file that answers it, or
// reports that it is a change, which always succeeds.
func answer(name string, args []string) (file string, change bool) {
	line := strings.Join(args, " ")
	switch name {
	case "scancel":
		return "", true
	case "sinfo":
		if line == "--json" {
			return "sinfo.json", false
		}
	case "squeue":
		switch {
		case strings.HasPrefix(line, "--json"):
			return "squeue.json", false
		case strings.HasPrefix(line, "-h -t all -O "):
			return "squeue.txt", false
		}
	case "scontrol":
		if line == "--version" {
			return "version.txt", false
		}
		for prefix, pattern := range map[string]string{
			"--json show job ":  "scontrol_show_job_%s.json",
			"show job ":         "scontrol_show_job_%s.txt",
			"--json show node ": "scontrol_show_node_%s.json",
			"show node ":        "scontrol_show_node_%s.txt",
		} {
			if arg, ok := strings.CutPrefix(line, prefix); ok {
				return strings.Replace(pattern, "%s", arg, 1), false
			}
		}
		if len(args) > 0 && (args[0] == "hold" || args[0] == "uhold" || args[0] == "release" || args[0] == "requeue" || args[0] == "update") {
			return "", true
		}
	}
	return "", false
}

func record(name string, args []string) {
	path := os.Getenv("SLURMREPLAY_LOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(append([]string{name}, args...), " "))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
