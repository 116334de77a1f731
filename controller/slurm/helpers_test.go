package slurm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Slurm prints local times; the 22.05 fixtures were captured in UTC.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// fakeRunner answers commands from a function and records them.
type fakeRunner struct {
	mu     sync.Mutex
	calls  []string
	handle func(cmd string) ([]byte, error)
}

func (f *fakeRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := commandLine(name, args)
	f.mu.Lock()
	f.calls = append(f.calls, cmd)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f.handle(cmd)
}

func (f *fakeRunner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// failed is what a failing Slurm command looks like from the exec Runner.
func failed(cmd, stderr string) error {
	return &CommandError{Cmd: cmd, Stderr: stderr, Err: errors.New("exit status 1")}
}

// fixtureFile maps a command line to the file of testdata/<dir> that
// answers it.
func fixtureFile(dir, cmd string) string {
	switch {
	case cmd == "scontrol --version":
		return "version.txt"
	case cmd == "squeue --json --states=all":
		return "squeue.json"
	case cmd == "squeue -h -t all -O "+squeueFormat():
		return "squeue.txt"
	case cmd == "sinfo --json":
		return "sinfo.json"
	case cmd == "scontrol --json show node": // every node (hack/slurmrecord)
		return "scontrol_show_nodes.json"
	case cmd == "scontrol show node":
		return "scontrol_show_nodes.txt"
	}
	for prefix, pattern := range map[string]string{
		"scontrol --json show job ":  "scontrol_show_job_%s.json",
		"scontrol show job ":         "scontrol_show_job_%s.txt",
		"scontrol --json show node ": "scontrol_show_node_%s.json",
		"scontrol show node ":        "scontrol_show_node_%s.txt",
	} {
		if arg, ok := strings.CutPrefix(cmd, prefix); ok {
			if a, ok := fixtureAlias[release(dir)][arg]; ok {
				arg = a
			}
			return strings.Replace(pattern, "%s", arg, 1)
		}
	}
	return ""
}

// fixtureFiles are the fixtures matching pattern: of each release
// (testdata/<release>/) and of each format of a recording
// (testdata/<release>/<format>/), but not a recording's scenario.json.
func fixtureFiles(pattern string) []string {
	a, _ := filepath.Glob(filepath.Join("testdata", "*", pattern))
	b, _ := filepath.Glob(filepath.Join("testdata", "*", "*", pattern))
	var out []string
	for _, f := range append(a, b...) {
		if filepath.Base(f) != "scenario.json" && !strings.HasPrefix(f, filepath.Join("testdata", "fuzz")) {
			out = append(out, f)
		}
	}
	return out
}

// fixtureAlias answers a job id, per release directory, from the capture
// of the id it shares: scontrol shows every task of an array and every
// component of a heterogeneous job for the array or leader id, so those
// files hold a superset of what the aliased command prints, and Job picks
// its record. Each directory has its own ids: a recording's may be another
// capture's.
var fixtureAlias = map[string]map[string]string{
	"22.05": {"14": "4", "4_4": "4", "4_5": "4", "6": "5"},
	"23.02": {"123_4": "123", "123_5": "123", "127": "123", "131": "130"},
}

// release is the release directory of a fixture directory ("24.11" of
// "24.11/v0.0.42").
func release(dir string) string {
	r, _, _ := strings.Cut(filepath.ToSlash(dir), "/")
	return r
}

// The recordings' aliases are read from the recordings themselves
// (recordedAliases), since their ids change with each recording.
func init() {
	for _, r := range recordings {
		aliases, err := recordedAliases(r)
		if err != nil {
			panic(fmt.Sprintf("aliases of testdata/%s: %v", r.dir, err))
		}
		fixtureAlias[r.dir] = aliases
	}
}

// fixtureClient answers from testdata/<dir>; override, when it returns
// true, answers instead.
func fixtureClient(t *testing.T, dir string, override func(cmd string) ([]byte, error, bool)) (*Client, *fakeRunner) {
	t.Helper()
	f := &fakeRunner{handle: func(cmd string) ([]byte, error) {
		if override != nil {
			if out, err, ok := override(cmd); ok {
				return out, err
			}
		}
		name := fixtureFile(dir, cmd)
		if name == "" {
			return nil, failed(cmd, "no fixture for this command")
		}
		data, err := os.ReadFile(filepath.Join("testdata", dir, name))
		if err != nil {
			return nil, failed(cmd, "slurm_load_jobs error: Invalid job id specified")
		}
		return data, nil
	}}
	return New("/opt/slurm/bin", WithRunner(f), WithRetry(3, time.Millisecond)), f
}

// failJSON makes every --json command fail as a Slurm without JSON support
// would, to drive the text readers.
func failJSON(cmd string) ([]byte, error, bool) {
	if strings.Contains(cmd, "--json") {
		return nil, failed(cmd, "squeue: unrecognized option '--json'"), true
	}
	return nil, nil, false
}

// failText makes the text readers fail, to drive the JSON fallbacks.
func failText(cmd string) ([]byte, error, bool) {
	if strings.HasPrefix(cmd, "scontrol show ") {
		return []byte("garbage that is not scontrol output\n"), nil, true
	}
	return nil, nil, false
}

func byID(t *testing.T, jobs []Job) map[string]Job {
	t.Helper()
	m := map[string]Job{}
	for _, j := range jobs {
		if _, dup := m[j.ID]; dup {
			t.Fatalf("job %s listed twice", j.ID)
		}
		m[j.ID] = j
	}
	return m
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
