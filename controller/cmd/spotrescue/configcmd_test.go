package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/controller/config"
)

func runCLI(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), err
}

// The broken file from the README: every problem comes back in one run.
func TestConfigValidateListsEveryProblem(t *testing.T) {
	t.Setenv(config.EnvConfigPath, "")
	t.Setenv("SPOTRESCUE_BUKET", "x")
	file := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(file, []byte("region: us-east-1\nclustr: hpc\nqueue_url: https://sqs.us-east-1.amazonaws.com/1/q\nstate_table: t1\nbucket: b-1\nrescue:\n  concurrency: lots\nscratch:\n  path_template: /scratch/{user}\n"), 0o600)
	_, err := runCLI(t, "config", "validate", "--config", file, "--slurm-bin-dir", fakeSlurm(t))
	if err == nil {
		t.Fatal("broken config validated")
	}
	for _, want := range []string{"6 configuration problem(s)", "clustr: unknown setting", "rescue.concurrency", "SPOTRESCUE_BUKET", "cluster: required", "state_table", "does not contain {job_id}"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func TestConfigValidateAcceptsAGoodFileAndFlags(t *testing.T) {
	t.Setenv(config.EnvConfigPath, "")
	file := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(file, []byte("region: us-east-1\nqueue_url: https://sqs.us-east-1.amazonaws.com/1/q\nstate_table: spotrescue\nbucket: b-1\n"), 0o600)
	out, err := runCLI(t, "config", "validate", "--config", file, "--cluster", "hpc", "--slurm-bin-dir", fakeSlurm(t))
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("out=%q err=%v", out, err)
	}
}

// Subcommands that do not exist yet must not be offered.
func TestHelpListsOnlyBuiltCommands(t *testing.T) {
	out, err := runCLI(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range newRootCommand().Commands() {
		if c.Runnable() || c.HasSubCommands() {
			continue
		}
		t.Errorf("command %q is listed but does nothing", c.Name())
	}
	if !strings.Contains(out, "config") || !strings.Contains(out, "version") {
		t.Errorf("help: %s", out)
	}
}

// fakeSlurm is a bin dir with executables named like Slurm's commands.
func fakeSlurm(t *testing.T) string {
	dir := t.TempDir()
	for _, name := range config.SlurmCommands {
		os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755)
	}
	return dir
}

func TestConfigValidateChecksSlurmCommands(t *testing.T) {
	t.Setenv(config.EnvConfigPath, "")
	file := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(file, []byte("cluster: hpc\nregion: us-east-1\nqueue_url: https://sqs.us-east-1.amazonaws.com/1/q\nstate_table: spotrescue\nbucket: b-1\n"), 0o600)
	_, err := runCLI(t, "config", "validate", "--config", file, "--slurm-bin-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "is not an executable scontrol") {
		t.Fatalf("err = %v, want a missing scontrol", err)
	}
}

// A command's --help lists the settings it reads: the daemon's and config
// validate's every one, the others only theirs (simulate's is not a page of
// upload tuning). Every command still accepts every setting's flag, so a
// script passing one set of flags to all of them keeps working.
func TestCommandsOfferTheSettingsTheyRead(t *testing.T) {
	all := config.Settings()
	flagsOf := func(path ...string) []string {
		cmd, _, err := newRootCommand().Find(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range all {
			f := cmd.Flags().Lookup(strings.TrimPrefix(s.Flag, "--"))
			if f == nil {
				t.Errorf("%s does not accept %s", cmd.CommandPath(), s.Flag)
			} else if !f.Hidden {
				got = append(got, s.Path)
			}
		}
		return got
	}
	everything := flagsOf("controller")
	if len(everything) != len(all) || len(flagsOf("config", "validate")) != len(all) {
		t.Errorf("controller and config validate take %d and %d of %d settings", len(everything), len(flagsOf("config", "validate")), len(all))
	}
	want := map[string]string{
		"simulate":      "cluster region queue_url node_table",
		"jobs list":     "cluster region state_table",
		"jobs show":     "cluster region state_table",
		"agent rescue":  "cluster region bucket prefix spool_dir scratch.root scratch.path_template slurm.bin_dir rescue.concurrency restore.enabled restore.timeout",
		"agent restore": "cluster region bucket prefix spool_dir scratch.root scratch.path_template slurm.bin_dir rescue.concurrency restore.enabled restore.timeout",
		"taskprolog":    "cluster region bucket prefix spool_dir scratch.root scratch.path_template slurm.bin_dir rescue.concurrency restore.enabled restore.timeout",
		"inspect":       "cluster region node_table bucket prefix slurm.bin_dir scratch.root scratch.path_template rescue.states",
	}
	for cmd, paths := range want {
		got := flagsOf(strings.Fields(cmd)...)
		if !sameSet(got, strings.Fields(paths)) {
			t.Errorf("%s offers %v, want %s", cmd, got, paths)
		}
	}
}

func sameSet(a, b []string) bool {
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
