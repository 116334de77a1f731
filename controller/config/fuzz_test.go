package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// checkProblems: every problem, from any source, names the field (or the
// key or variable) it is about and says what is wrong.
func checkProblems(t *testing.T, what string, probs Problems) {
	t.Helper()
	for _, p := range probs {
		if strings.TrimSpace(p.Field) == "" || p.Msg == "" {
			t.Fatalf("%s: problem without a field or message: %#v", what, p)
		}
	}
}

func validateAll(t *testing.T, c *Config) {
	t.Helper()
	for _, role := range []Role{RoleController, RoleAgent, RoleClient, RoleDrill} {
		checkProblems(t, "validate", c.Validate(role))
	}
}

// FuzzLoadFile: any bytes as the YAML file. Load either refuses the file
// with an error or returns a config and the problems with it, each naming
// its field; validating what was loaded does the same.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("cluster: hpc\nscratch:\n  root: /scratch\n  path_template: /scratch/{user}/{job_id}\nrescue:\n  states: [RUNNING, SUSPENDED]\n  checkpoint_grace: 10s\n"))
	f.Add([]byte("rescue:\n  concurrency: many\n  states: [[RUNNING]]\nmetrics: 5\nbukcet: x\n\"\": 1\n[a]: 1\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		// Fuzz functions of one process run one at a time: one file will do.
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, probs, err := Load(Sources{File: p, FileRequired: true})
		if err != nil {
			if c != nil || probs != nil {
				t.Fatalf("config %v and problems %v with error %v", c, probs, err)
			}
			return
		}
		checkProblems(t, "load", probs)
		validateAll(t, c)
	})
}

// FuzzLoadEnv: any value for any setting's variable, and any variable with
// the SPOTRESCUE_ prefix. A string setting takes the value verbatim; every
// problem names its field.
func FuzzLoadEnv(f *testing.F) {
	settings := Settings()
	f.Add(uint8(0), "hpc", "SPOTRESCUE_BUKCET=x")
	f.Add(uint8(5), "-1", "SPOTRESCUE_=")
	f.Add(uint8(9), "1e9h", "SPOTRESCUE_RESCUE_STATES=RUNNING,,\x00")
	f.Fuzz(func(t *testing.T, pick uint8, value, raw string) {
		s := settings[int(pick)%len(settings)]
		env := []string{s.Env + "=" + value, EnvPrefix + raw}
		c, probs, err := Load(Sources{Env: env})
		if err != nil {
			t.Fatalf("env is never a plain error: %v", err)
		}
		checkProblems(t, "env", probs)
		validateAll(t, c)
		overridden := strings.HasPrefix(raw, strings.TrimPrefix(s.Env, EnvPrefix)+"=") || s.Path == "node_table" && value == ""
		for _, x := range fields(c) {
			if x.Path == s.Path && x.value.Kind() == reflect.String && !overridden && x.get() != value {
				t.Fatalf("%s=%q read as %q", s.Env, value, x.get())
			}
		}
	})
}
