package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/spotrescue/spotrescue/rescue"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validYAML = `
cluster: hpc
region: eu-west-1
queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/spotrescue
state_table: spotrescue-hpc
bucket: hpc-rescue
`

func TestDefaults(t *testing.T) {
	c, probs, err := Load(Sources{})
	if err != nil || len(probs) > 0 {
		t.Fatalf("Load() = %v, %v", probs, err)
	}
	want := map[string]string{
		"prefix":                      "spotrescue",
		"spool_dir":                   "/opt/parallelcluster/shared/spotrescue",
		"scratch.root":                "/scratch",
		"scratch.path_template":       "/scratch/{job_id}",
		"slurm.bin_dir":               "/opt/slurm/bin",
		"ssm.document":                "SpotRescue-Rescue",
		"deadline.safety_margin":      "15s",
		"deadline.give_up_after":      "10m0s",
		"restore.timeout":             "5m0s",
		"controller.spool_retention":  "336h0m0s",
		"rescue.concurrency":          fmt.Sprint(rescue.DefaultConcurrency), // one default, the agent's
		"restore.enabled":             "true",
		"metrics.listen":              "127.0.0.1:9464",
		"rescue.states":               "RUNNING,COMPLETING,SUSPENDED",
		"rescue.checkpoint_grace":     "10s",
		"rescue.checkpoint_signal":    "",
		"fallback.after":              "0",
		"rescue.checksum":             "CRC32C",
		"rescue.presync_on_rebalance": "true",
		"rescue.pack_small_files":     "auto",
		"rescue.presync_every":        "0s",
		"controller.workers":          "256",
		"controller.receivers":        "8",
		"controller.lease_ttl":        "0s",
		"dry_run":                     "false",
		"node_table":                  "",
	}
	for _, f := range fields(c) {
		if w, ok := want[f.Path]; ok && f.get() != w {
			t.Errorf("default %s = %q, want %q", f.Path, f.get(), w)
		}
	}
}

func TestClustermgtdSuppliesClusterRegionAndTable(t *testing.T) {
	conf := writeFile(t, "clustermgtd.conf", "[clustermgtd]\ncluster_name = prod-a\nregion = ap-northeast-1\ndynamodb_table = parallelcluster-slurm-prod-a-x\nloop_time = 60\n")
	c, probs, err := Load(Sources{Clustermgtd: conf})
	if err != nil || len(probs) > 0 {
		t.Fatalf("Load() = %v, %v", probs, err)
	}
	if c.Cluster != "prod-a" || c.Region != "ap-northeast-1" || c.NodeTable != "parallelcluster-slurm-prod-a-x" {
		t.Fatalf("got cluster=%q region=%q node_table=%q", c.Cluster, c.Region, c.NodeTable)
	}
}

func TestNodeTableDefaultsFromCluster(t *testing.T) {
	c, _, err := Load(Sources{File: writeFile(t, "c.yaml", validYAML)})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeTable != "parallelcluster-slurm-hpc" {
		t.Fatalf("node_table = %q", c.NodeTable)
	}
}

// Each source overrides the one before: clustermgtd < file < env < flag.
func TestPrecedence(t *testing.T) {
	conf := writeFile(t, "clustermgtd.conf", "cluster_name = from-clustermgtd\nregion = us-east-1\n")
	file := writeFile(t, "c.yaml", "cluster: from-file\nregion: us-west-2\nprefix: file-prefix\nrescue:\n  concurrency: 4\n")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--cluster=from-flag", "--dry-run"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"SPOTRESCUE_CLUSTER=from-env", "SPOTRESCUE_PREFIX=env-prefix", "SPOTRESCUE_DEADLINE_SAFETY_MARGIN=20s", "HOME=/root"}
	c, probs, err := Load(Sources{Clustermgtd: conf, File: file, Env: env, Flags: fs})
	if err != nil || len(probs) > 0 {
		t.Fatalf("Load() = %v, %v", probs, err)
	}
	checks := []struct{ name, got, want string }{
		{"cluster (flag beats env, file, clustermgtd)", c.Cluster, "from-flag"},
		{"prefix (env beats file)", c.Prefix, "env-prefix"},
		{"region (file beats clustermgtd)", c.Region, "us-west-2"},
		{"node_table (derived from final cluster)", c.NodeTable, "parallelcluster-slurm-from-flag"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	if c.Rescue.Concurrency != 4 || c.Deadline.SafetyMargin.Std() != 20*time.Second || !c.DryRun {
		t.Errorf("concurrency=%d margin=%s dry_run=%v", c.Rescue.Concurrency, c.Deadline.SafetyMargin, c.DryRun)
	}
}

func TestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, _, err := Load(Sources{File: missing}); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	if _, _, err := Load(Sources{File: missing, FileRequired: true}); err == nil {
		t.Fatal("required missing file: no error")
	}
}

func TestSyntaxErrorIsAnError(t *testing.T) {
	_, _, err := Load(Sources{File: writeFile(t, "c.yaml", "cluster: [unclosed\n")})
	if err == nil || !strings.Contains(err.Error(), "c.yaml") {
		t.Fatalf("err = %v, want a parse error naming the file", err)
	}
}

// A broken file reports every problem at once, each with where and how to fix it.
func TestLoadReportsEveryProblem(t *testing.T) {
	file := writeFile(t, "c.yaml", `cluster: hpc
clustr: typo
scratch:
  rooot: /scratch
  path_template: [a, b]
rescue:
  concurrency: lots
deadline:
  safety_margin: soon
dry_run: maybe
metrics: 9464
`)
	_, probs, err := Load(Sources{File: file, Env: []string{"SPOTRESCUE_BUKET=x", "SPOTRESCUE_RESCUE_CONCURRENCY=many", "SPOTRESCUE_X\nc.yaml:1: forged=1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"c.yaml:2: clustr: unknown setting; fix: did you mean cluster?",
		"c.yaml:4: scratch.rooot: unknown setting; fix: did you mean scratch.root?",
		"c.yaml:5: scratch.path_template: wrong type; fix: set it to a string",
		`c.yaml:7: rescue.concurrency: "lots" is not a whole number`,
		`c.yaml:9: deadline.safety_margin: "soon" is not a duration like 15s or 2m`,
		`c.yaml:10: dry_run: "maybe" is not true or false`,
		"c.yaml:11: metrics: expected a mapping of settings",
		"env: SPOTRESCUE_BUKET: unknown setting",
		`env: "SPOTRESCUE_X\nc.yaml:1: forged": unknown setting`,
		`env SPOTRESCUE_RESCUE_CONCURRENCY: rescue.concurrency: "many" is not a whole number`,
	}
	assertProblems(t, probs, want)
}

func assertProblems(t *testing.T, probs Problems, want []string) {
	t.Helper()
	got := make([]string, len(probs))
	for i, p := range probs {
		got[i] = p.String()
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(g, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %q in:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
	}
}

func validConfig(t *testing.T) *Config {
	t.Helper()
	c, probs, err := Load(Sources{File: writeFile(t, "c.yaml", validYAML)})
	if err != nil || len(probs) > 0 {
		t.Fatalf("Load() = %v, %v", probs, err)
	}
	if probs := c.Validate(RoleController); len(probs) > 0 {
		t.Fatalf("valid config has problems: %v", probs)
	}
	return c
}

func TestValidateMessages(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"cluster name", func(c *Config) { c.Cluster = "1bad_name" }, `cluster: "1bad_name" is not a ParallelCluster cluster name; fix: use letters, digits and hyphens`},
		{"packing", func(c *Config) { c.Rescue.PackSmallFiles = "sometimes" }, `rescue.pack_small_files: "sometimes" is not a packing mode; fix: use auto (the default), always or never`},
		{"region", func(c *Config) { c.Region = "Europe" }, `region: "Europe" is not an AWS region; fix: use a region code such as us-east-1`},
		{"queue url", func(c *Config) { c.QueueURL = "spotrescue" }, `queue_url: "spotrescue" is not an SQS queue URL; fix: use the QueueUrl output`},
		{"state table", func(c *Config) { c.StateTable = "a b" }, `state_table: "a b" is not a DynamoDB table name`},
		{"node table", func(c *Config) { c.NodeTable = "x" }, `node_table: "x" is not a DynamoDB table name; fix: use the dynamodb_table value`},
		{"bucket", func(c *Config) { c.Bucket = "My_Bucket" }, `bucket: "My_Bucket" is not an S3 bucket name`},
		{"prefix slash", func(c *Config) { c.Prefix = "/rescue/" }, `prefix: "/rescue/" is not a usable key prefix`},
		{"prefix dotdot", func(c *Config) { c.Prefix = "a/../b" }, `prefix: "a/../b" is not a usable key prefix`},
		{"spool dir", func(c *Config) { c.SpoolDir = "shared/spotrescue" }, `spool_dir: "shared/spotrescue" is not a clean absolute path`},
		{"slurm bin dir", func(c *Config) { c.Slurm.BinDir = "/opt/slurm/../bin" }, `slurm.bin_dir: "/opt/slurm/../bin" is not a clean absolute path`},
		{"scratch root", func(c *Config) { c.Scratch.Root = "scratch" }, `scratch.root: "scratch" is not a clean absolute path`},
		{"scratch root placeholder", func(c *Config) { c.Scratch.Root = "/scratch/{user}" }, `scratch.root: placeholder {user} cannot be used in the root`},
		{"template placeholder", func(c *Config) { c.Scratch.PathTemplate = "/scratch/{job_id}/{host}" }, `scratch.path_template: unknown placeholder {host}`},
		{"template job id", func(c *Config) { c.Scratch.PathTemplate = "/scratch/{user}" }, `scratch.path_template: "/scratch/{user}" does not contain {job_id}; fix: include {job_id} so that two jobs never share`},
		{"template relative", func(c *Config) { c.Scratch.PathTemplate = "scratch/{job_id}" }, `scratch.path_template: "scratch/{job_id}" is not a clean absolute path`},
		{"template outside root", func(c *Config) { c.Scratch.PathTemplate = "/tmp/{job_id}" }, `scratch.path_template: "/tmp/{job_id}" is outside scratch.root "/scratch"`},
		{"document", func(c *Config) { c.SSM.Document = "x" }, `ssm.document: "x" is not an SSM document name`},
		{"margin too small", func(c *Config) { c.Deadline.SafetyMargin = 0 }, `deadline.safety_margin: 0s leaves no usable rescue window; fix: set it between 1s and 100s`},
		{"margin too large", func(c *Config) { c.Deadline.SafetyMargin = Duration(2 * time.Minute) }, `deadline.safety_margin: 2m0s leaves no usable rescue window`},
		{"concurrency", func(c *Config) { c.Rescue.Concurrency = 0 }, `rescue.concurrency: 0 is out of range; fix: set it between 1 and 1024`},
		{"workers", func(c *Config) { c.Controller.Workers = 0 }, `controller.workers: 0 is out of range`},
		{"receivers", func(c *Config) { c.Controller.Receivers = 500 }, `controller.receivers: 500 is out of range`},
		{"listen", func(c *Config) { c.Metrics.Listen = "9464" }, `metrics.listen: "9464" is not host:port`},
		{"listen port", func(c *Config) { c.Metrics.Listen = "127.0.0.1:http" }, `metrics.listen: port "http" is not a number`},
		{"listen host", func(c *Config) { c.Metrics.Listen = "head-node:9464" }, `metrics.listen: host "head-node" is not an IP address`},
		{"states empty", func(c *Config) { c.Rescue.States = nil }, `rescue.states: no job state is rescued; fix: list at least RUNNING`},
		{"states unknown", func(c *Config) { c.Rescue.States = []string{"RUNNING", "PENDING"} }, `rescue.states: "PENDING" is not a state in which a job holds a node`},
		{"signal", func(c *Config) { c.Rescue.CheckpointSignal = "usr1; kill" }, `rescue.checkpoint_signal: "usr1; kill" is not a signal; fix: use a name like USR1`},
		{"grace", func(c *Config) { c.Rescue.CheckpointGrace = Duration(90 * time.Second) }, `rescue.checkpoint_grace: 1m30s takes more than half of the 1m45s rescue window; fix: set it between 0s and 52.5s`},
		{"lease ttl", func(c *Config) { c.Controller.LeaseTTL = Duration(time.Second) }, `controller.lease_ttl: 1s is out of range; fix: set it between 3s and 5m`},
		{"presync every", func(c *Config) { c.Rescue.PresyncEvery = Duration(time.Minute) }, `rescue.presync_every: 1m0s would keep the nodes uploading; fix: set it to 5m or more, or 0 to turn it off`},
		{"checksum", func(c *Config) { c.Rescue.Checksum = "MD5" }, `rescue.checksum: "MD5" is not a checksum the agent computes; fix: use CRC32C or SHA256`},
		{"priority", func(c *Config) { c.Rescue.Priority = []string{"*.ckpt", "[bad"} }, `rescue.priority: "[bad" is not a glob pattern`},
		{"fallback negative", func(c *Config) { c.Fallback.After = -1 }, `fallback.after: -1 is negative`},
		{"fallback partition", func(c *Config) { c.Fallback.After = 2 }, `fallback.partition: "" is not a partition name; fix: name the on-demand partition`},
		{"notify outcome", func(c *Config) { c.Notify.Outcomes = []string{"failed", "bad"} }, `notify.outcomes: "bad" is not an outcome; fix: list some of complete, partial, failed and skipped`},
		{"notify topic", func(c *Config) { c.Notify.SNSTopic = "spotrescue-notices" }, `notify.sns_topic_arn: "spotrescue-notices" is not an SNS topic ARN; fix: use the topic's ARN`},
		{"notify webhook http", func(c *Config) { c.Notify.WebhookURL = "http://hooks.example.com/T0/B0/secret" }, `notify.webhook_url: is not an https:// URL; fix: use the endpoint's https:// URL`},
		{"required", func(c *Config) { c.Bucket = "" }, `bucket: required but not set; fix: set bucket in the config file, SPOTRESCUE_BUCKET, or --bucket`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(c)
			assertProblems(t, c.Validate(RoleController), []string{tc.want})
		})
	}
}

func TestRolesRequireWhatTheyUse(t *testing.T) {
	c := Default()
	c.Cluster = "hpc"
	if probs := c.Validate(RoleAgent); len(probs) > 0 {
		t.Errorf("agent needs only the cluster: %v", probs)
	}
	assertProblems(t, c.Validate(RoleClient), []string{"region: required", "state_table: required"})
	if n := len(c.Validate(RoleController)); n != 4 {
		t.Errorf("controller without region, queue_url, state_table, bucket: %d problems, want 4", n)
	}
}

func TestEverySettingHasEnvAndFlag(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	for _, s := range Settings() {
		if s.Help == "" {
			t.Errorf("%s has no help text", s.Path)
		}
		if fs.Lookup(strings.TrimPrefix(s.Flag, "--")) == nil {
			t.Errorf("%s: flag %s not bound", s.Path, s.Flag)
		}
		if !strings.HasPrefix(s.Env, EnvPrefix) {
			t.Errorf("%s: env %s", s.Path, s.Env)
		}
	}
}

// The README's configuration reference lists every setting with its variable.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		row := fmt.Sprintf("| `%s` | `%s` |", s.Path, s.Env)
		if !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the row for %s (%s)", s.Path, s.Env)
		}
	}
}

func TestCheckSlurm(t *testing.T) {
	dir := t.TempDir()
	c := Default()
	c.Slurm.BinDir = dir
	for _, name := range []string{"squeue", "sinfo", "scontrol"} {
		os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "scancel"), []byte("#!/bin/sh\n"), 0o644)
	assertProblems(t, c.CheckSlurm(), []string{"slurm.bin_dir: " + filepath.Join(dir, "scancel") + " is not an executable scancel; fix: point slurm.bin_dir"})
	os.Chmod(filepath.Join(dir, "scancel"), 0o755)
	if probs := c.CheckSlurm(); len(probs) != 0 {
		t.Errorf("complete bin dir: %v", probs)
	}
}

// rescue.pack_small_files: auto by default; true and false, from before
// auto, still mean always and never (TestValidateMessages: anything else).
func TestPackSmallFiles(t *testing.T) {
	for _, tc := range []struct {
		value        string
		always, late bool
	}{{"auto", false, true}, {"always", true, false}, {"never", false, false}, {"true", true, false}, {"false", false, false}} {
		c, probs, err := Load(Sources{File: writeFile(t, "c.yaml", validYAML+"rescue:\n  pack_small_files: "+tc.value+"\n")})
		if err != nil || len(probs) > 0 {
			t.Fatalf("%s: %v, %v", tc.value, probs, err)
		}
		if always, late := c.Rescue.Packing(); always != tc.always || late != tc.late {
			t.Errorf("%s: always %v late %v, want %v %v", tc.value, always, late, tc.always, tc.late)
		}
	}
}
