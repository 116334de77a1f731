package config

import (
	"slices"
	"strings"
	"testing"
)

// Hostile and malformed configuration: each case is refused as a whole
// (a plain error), reported as problems that name their fields, or read as
// shown. controller/testdata/HOSTILE.md lists them with the controller's
// cases.
func TestHostileConfigFiles(t *testing.T) {
	cases := []struct {
		name, yaml string
		err        string   // a plain error containing this, or
		fields     []string // the fields of the problems Load reports, in order
		check      func(c *Config) bool
	}{
		{name: "not YAML", yaml: "cluster: [unclosed", err: "parse"},
		{name: "tab indentation", yaml: "scratch:\n\troot: /x", err: "parse"},
		{name: "a single value", yaml: "hello", err: "expected a mapping of settings"},
		{name: "a list", yaml: "- cluster: hpc", err: "expected a mapping of settings"},
		{name: "only ---", yaml: "---\n", check: func(c *Config) bool { return c.Scratch.Root == "/scratch" }},
		{name: "only ~", yaml: "~", check: func(c *Config) bool { return c.Scratch.Root == "/scratch" }},
		{name: "empty key", yaml: `"": 1`, fields: []string{`""`}},
		{name: "list as a key", yaml: "[cluster]: hpc", fields: []string{"(a list as a key)"}},
		{name: "mapping as a key", yaml: "{cluster: a}: hpc", fields: []string{"(a mapping as a key)"}},
		{name: "empty key in a section", yaml: "scratch:\n  \"\": /x", fields: []string{`scratch.""`}},
		{name: "merge key", yaml: "<<: {cluster: evil}", fields: []string{"<<"}},
		{name: "alias for a section", yaml: "scratch: &s {root: /a}\nrescue: *s", fields: []string{"rescue"}},
		{name: "self-referencing alias", yaml: "a: &x [*x]", fields: []string{"a"}},
		{name: "list item that is a list", yaml: "rescue:\n  states: [RUNNING, [SUSPENDED]]", fields: []string{"rescue.states"}},
		{name: "list item that is a mapping", yaml: "rescue:\n  states: [{RUNNING: 1}]", fields: []string{"rescue.states"}},
		{name: "number too big", yaml: "rescue:\n  concurrency: 99999999999999999999", fields: []string{"rescue.concurrency"}},
		{name: "number as a string", yaml: "rescue:\n  concurrency: \"16\"", fields: []string{"rescue.concurrency"}},
		{name: "bool as yes", yaml: "dry_run: yes", fields: []string{"dry_run"}},
		{name: "duration overflow", yaml: "deadline:\n  safety_margin: 9999999999h", fields: []string{"deadline.safety_margin"}},
		{name: "section as a value", yaml: "metrics: 5", fields: []string{"metrics"}},
		{name: "value as a section", yaml: "cluster:\n  name: hpc", fields: []string{"cluster"}},
		{name: "typo", yaml: "bukcet: x", fields: []string{"bukcet"}},
		// Quoted, so a key cannot start a line of its own in the report.
		{name: "key with a newline", yaml: "? \"a\\nb\"\n: 1", fields: []string{`"a\nb"`}},
		{name: "blank key", yaml: "\" \": 1", fields: []string{`" "`}},
		{name: "dotted key at the top", yaml: "scratch.root: /data", check: func(c *Config) bool { return c.Scratch.Root == "/data" }},
		{name: "key given twice (last wins, not reported)", yaml: "bucket: first\nbucket: second", check: func(c *Config) bool { return c.Bucket == "second" }},
		{name: "NUL in a string", yaml: "cluster: \"a\\0b\"", check: func(c *Config) bool { return c.Cluster == "a\x00b" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, probs, err := Load(Sources{File: writeFile(t, "c.yaml", tc.yaml), FileRequired: true})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q (problems %v)", err, tc.err, probs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, p := range probs {
				fields = append(fields, p.Field)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Fatalf("problems on %q, want %q: %v", fields, tc.fields, probs)
			}
			if tc.check != nil && !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
			validateAll(t, c)
		})
	}
}

// Values a setting may hold that would be dangerous where it is used are
// refused by Validate, which names the field.
func TestHostileConfigValues(t *testing.T) {
	cases := []struct {
		env, value, field string
	}{
		{"SPOTRESCUE_CLUSTER", "hpc\nrm -rf /", "cluster"},
		{"SPOTRESCUE_CLUSTER", "../etc", "cluster"},
		{"SPOTRESCUE_PREFIX", "a/../../b", "prefix"},
		{"SPOTRESCUE_PREFIX", "/abs", "prefix"},
		{"SPOTRESCUE_BUCKET", "my..bucket", "bucket"},
		{"SPOTRESCUE_SPOOL_DIR", "relative/spool", "spool_dir"},
		{"SPOTRESCUE_SPOOL_DIR", "/opt/../etc", "spool_dir"},
		{"SPOTRESCUE_SLURM_BIN_DIR", "/opt/slurm/bin/", "slurm.bin_dir"},
		{"SPOTRESCUE_SCRATCH_ROOT", "/scratch/{user}", "scratch.root"},
		{"SPOTRESCUE_SCRATCH_PATH_TEMPLATE", "/scratch/{job_name}/{job_id}", "scratch.path_template"},
		{"SPOTRESCUE_SCRATCH_PATH_TEMPLATE", "/scratch/../{job_id}", "scratch.path_template"},
		{"SPOTRESCUE_SCRATCH_PATH_TEMPLATE", "/tmp/{job_id}", "scratch.path_template"},
		{"SPOTRESCUE_SSM_DOCUMENT", "doc; id", "ssm.document"},
		{"SPOTRESCUE_RESCUE_CHECKPOINT_SIGNAL", "USR1; reboot", "rescue.checkpoint_signal"},
		{"SPOTRESCUE_FALLBACK_PARTITION", "od part", "fallback.partition"},
		{"SPOTRESCUE_METRICS_LISTEN", "evil.example.com:80", "metrics.listen"},
		{"SPOTRESCUE_QUEUE_URL", "file:///etc/passwd", "queue_url"},
		{"SPOTRESCUE_RESCUE_STATES", "RUNNING,PENDING", "rescue.states"},
	}
	for _, tc := range cases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			env := []string{tc.env + "=" + tc.value}
			if tc.field == "fallback.partition" {
				env = append(env, "SPOTRESCUE_FALLBACK_AFTER=2")
			}
			c, probs, err := Load(Sources{Env: env})
			if err != nil || len(probs) != 0 {
				t.Fatalf("load: %v %v", probs, err)
			}
			found := false
			for _, p := range c.Validate(RoleAgent) {
				found = found || p.Field == tc.field
			}
			if !found {
				t.Errorf("Validate does not flag %s", tc.field)
			}
		})
	}
}

func TestHostileEnvironment(t *testing.T) {
	for entry, field := range map[string]string{
		"SPOTRESCUE_=x":                        "SPOTRESCUE_",
		"SPOTRESCUE_BUKCET=x":                  "SPOTRESCUE_BUKCET",
		"SPOTRESCUE_RESCUE_CONCURRENCY=\x00":   "rescue.concurrency",
		"SPOTRESCUE_RESCUE_CONCURRENCY=1e3":    "rescue.concurrency",
		"SPOTRESCUE_DRY_RUN=yes":               "dry_run",
		"SPOTRESCUE_DEADLINE_SAFETY_MARGIN=15": "deadline.safety_margin",
	} {
		_, probs, err := Load(Sources{Env: []string{entry, "OTHER=1", "NOEQUALS"}})
		if err != nil || len(probs) != 1 || probs[0].Field != field {
			t.Errorf("%q: %v, %v; want one problem on %s", entry, probs, err, field)
		}
	}
}
