package deploy

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spotrescue/spotrescue/controller/config"
)

const (
	installer       = "parallelcluster/install-headnode.sh"
	clusterFragment = "parallelcluster/cluster-config.yaml"
)

// Every shell file that ships is shellcheck clean.
func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is missing: apt-get install shellcheck (make deps does)")
	}
	files := []string{installer, "slurm/prolog.sh", "slurm/taskprolog.sh", "../hack/deps.sh", "../hack/lab/up.sh", "../hack/lab/down.sh", "../hack/lab/with-lab.sh"}
	out, err := exec.Command(sc, append([]string{"--severity=style"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck %v: %v\n%s", files, err, out)
	}
	// And it would say so: an unquoted expansion is reported.
	bad := filepath.Join(t.TempDir(), "bad.sh")
	os.WriteFile(bad, []byte("#!/bin/sh\nrm -rf $1/x\n"), 0o755)
	if out, err := exec.Command(sc, bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "SC2086") {
		t.Fatalf("shellcheck passed an unquoted expansion: %v\n%s", err, out)
	}
}

type customAction struct {
	Script string   `yaml:"Script"`
	Args   []string `yaml:"Args"`
}

type iamPolicy struct {
	Policy string `yaml:"Policy"`
}

// fragment is deploy/parallelcluster/cluster-config.yaml, aliases resolved.
type fragment struct {
	HeadNode struct {
		CustomActions map[string]customAction `yaml:"CustomActions"`
		Iam           struct {
			AdditionalIamPolicies []iamPolicy `yaml:"AdditionalIamPolicies"`
			S3Access              []struct {
				BucketName        string `yaml:"BucketName"`
				KeyName           string `yaml:"KeyName"`
				EnableWriteAccess bool   `yaml:"EnableWriteAccess"`
			} `yaml:"S3Access"`
		} `yaml:"Iam"`
	} `yaml:"HeadNode"`
	Scheduling struct {
		Scheduler     string `yaml:"Scheduler"`
		SlurmSettings struct {
			CustomSlurmSettings []map[string]string `yaml:"CustomSlurmSettings"`
		} `yaml:"SlurmSettings"`
		SlurmQueues []struct {
			Name         string `yaml:"Name"`
			CapacityType string `yaml:"CapacityType"`
			Iam          struct {
				AdditionalIamPolicies []iamPolicy `yaml:"AdditionalIamPolicies"`
			} `yaml:"Iam"`
		} `yaml:"SlurmQueues"`
	} `yaml:"Scheduling"`
}

var placeholder = regexp.MustCompile(`<([A-Za-z]+)>`)

// loadFragment reads the cluster configuration fragment with every <Output>
// placeholder replaced by the evaluated stack's output, as an operator would.
func loadFragment(t *testing.T, st *stack, extra map[string]string) fragment {
	t.Helper()
	b, err := os.ReadFile(clusterFragment)
	if err != nil {
		t.Fatal(err)
	}
	var unknown []string
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue // comments explain the placeholders
		}
		lines[i] = placeholder.ReplaceAllStringFunc(l, func(m string) string {
			name := m[1 : len(m)-1]
			if v, ok := extra[name]; ok {
				return v
			}
			if v, ok := st.Outputs[name]; ok {
				return v
			}
			unknown = append(unknown, name)
			return m
		})
	}
	text := strings.Join(lines, "\n")
	if len(unknown) > 0 {
		t.Fatalf("%s names %v, which are not outputs of the stack", clusterFragment, unknown)
	}
	var f fragment
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", clusterFragment, err)
	}
	return f
}

func policies(l []iamPolicy) []string {
	var out []string
	for _, p := range l {
		out = append(out, p.Policy)
	}
	return out
}

func TestClusterConfigFragment(t *testing.T) {
	st, err := evaluate(loadTemplate(t), map[string]string{"ClusterName": "hpc"})
	if err != nil {
		t.Fatal(err)
	}
	f := loadFragment(t, st, map[string]string{"ArtifactsBucket": "artifacts", "ReleasePath": "spotrescue/v1"})
	for _, when := range []string{"OnNodeConfigured", "OnNodeUpdated"} {
		a, ok := f.HeadNode.CustomActions[when]
		if !ok {
			t.Errorf("no HeadNode CustomActions %s", when)
			continue
		}
		if !strings.HasSuffix(a.Script, "/deploy/parallelcluster/install-headnode.sh") {
			t.Errorf("%s runs %q", when, a.Script)
		}
		for _, flag := range []string{"--release", "--queue-url", "--state-table", "--bucket", "--document", "--prefix", "--install-dir"} {
			if !slices.Contains(a.Args, flag) {
				t.Errorf("%s Args lack %s", when, flag)
			}
		}
	}
	if got := policies(f.HeadNode.Iam.AdditionalIamPolicies); !slices.Equal(got, []string{st.Outputs["HeadNodePolicyArn"]}) {
		t.Errorf("head node policies %v", got)
	}
	if len(f.HeadNode.Iam.S3Access) != 1 || f.HeadNode.Iam.S3Access[0].EnableWriteAccess {
		t.Errorf("S3Access %+v: want read-only access to the release", f.HeadNode.Iam.S3Access)
	}
	if f.Scheduling.Scheduler != "slurm" || len(f.Scheduling.SlurmQueues) == 0 {
		t.Fatalf("scheduling %+v", f.Scheduling)
	}
	for _, q := range f.Scheduling.SlurmQueues {
		got := policies(q.Iam.AdditionalIamPolicies)
		if !slices.Contains(got, st.Outputs["ComputeNodePolicyArn"]) || !slices.Contains(got, "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore") {
			t.Errorf("queue %s policies %v: want the compute node policy and AmazonSSMManagedInstanceCore", q.Name, got)
		}
	}
	var taskProlog []string
	for _, s := range f.Scheduling.SlurmSettings.CustomSlurmSettings {
		if v, ok := s["TaskProlog"]; ok {
			taskProlog = append(taskProlog, v)
		}
	}
	if !slices.Equal(taskProlog, []string{st.Params["InstallDir"] + "/taskprolog.sh"}) {
		t.Errorf("CustomSlurmSettings TaskProlog %v, want where the installer puts it", taskProlog)
	}
}

// installEnv is a head node in a directory: a release, ParallelCluster's
// clustermgtd configuration, and a systemctl that records its calls.
type installEnv struct {
	t       *testing.T
	dir     string
	root    string
	release string
	calls   string // systemctl log
	args    []string
	st      *stack
}

var (
	buildOnce sync.Once
	builtDir  string // removed by TestMain
	builtBin  string
	buildErr  error
)

// spotrescueBinary builds the real binary once per test run: the installer
// runs its `version` and `config validate`.
func spotrescueBinary(t *testing.T) string {
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go is not on PATH: the test builds the real binary")
			return
		}
		if builtDir, buildErr = os.MkdirTemp("", "spotrescue-deploy-test-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "spotrescue")
		if out, err := exec.Command(goBin, "build", "-o", builtBin, "../controller/cmd/spotrescue").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build spotrescue: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

func newInstallEnv(t *testing.T) *installEnv {
	bin := spotrescueBinary(t)
	dir := t.TempDir()
	e := &installEnv{t: t, dir: dir, root: filepath.Join(dir, "root"), release: filepath.Join(dir, "release"), calls: filepath.Join(dir, "systemctl.log")}
	for _, f := range []string{"slurm/prolog.sh", "slurm/taskprolog.sh", "systemd/spotrescue.service"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(e.release, "deploy", f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bin)
	if err == nil {
		err = os.WriteFile(filepath.Join(e.release, "spotrescue"), b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(e.root, "etc/parallelcluster/slurm_plugin/parallelcluster_clustermgtd.conf")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	// As ParallelCluster writes it (excerpt).
	os.WriteFile(conf, []byte("[clustermgtd]\ncluster_name = hpc\nregion = eu-west-1\nproxy = NONE\ndynamodb_table = parallelcluster-slurm-hpc\nheartbeat_file_path = /opt/slurm/etc/pcluster/.slurm_plugin/clustermgtd_heartbeat\n"), 0o644)
	// The controller's validation wants Slurm's commands (below ROOT here).
	for _, c := range config.SlurmCommands {
		p := filepath.Join(e.root, "opt/slurm/bin", c)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	}
	stub := filepath.Join(dir, "systemctl")
	os.WriteFile(stub, []byte("#!/bin/sh\necho \"$*\" >>'"+e.calls+"'\n"), 0o755)

	// The Args an operator pastes: the fragment's, filled from the stack's
	// outputs, with the release in a local directory instead of S3.
	e.st, err = evaluate(loadTemplate(t), map[string]string{"ClusterName": "hpc"})
	if err != nil {
		t.Fatal(err)
	}
	f := loadFragment(t, e.st, map[string]string{"ArtifactsBucket": "artifacts", "ReleasePath": "spotrescue/v1"})
	e.args = slices.Clone(f.HeadNode.CustomActions["OnNodeConfigured"].Args)
	i := slices.Index(e.args, "--release")
	if i < 0 {
		t.Fatal("the fragment's Args have no --release")
	}
	e.args[i+1] = e.release + "/"
	return e
}

// run runs the installer with args and returns its exit code and output,
// in an environment with nothing of the caller's SPOTRESCUE_* or AWS_*.
func (e *installEnv) run(args ...string) (int, string) {
	cmd := exec.Command("bash", installer)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "ROOT=" + e.root, "SYSTEMCTL=" + filepath.Join(e.dir, "systemctl")}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return 0, string(out)
}

// systemctlCalls returns the calls logged since the last look.
func (e *installEnv) systemctlCalls() []string {
	b, _ := os.ReadFile(e.calls)
	os.Remove(e.calls)
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

type fileState struct {
	data  []byte
	mode  fs.FileMode
	mtime time.Time
}

// snapshot records every file below root.
func (e *installEnv) snapshot() map[string]fileState {
	out := map[string]fileState{}
	filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, _ := d.Info()
		b, _ := os.ReadFile(p)
		out[strings.TrimPrefix(p, e.root)] = fileState{b, info.Mode(), info.ModTime()}
		return nil
	})
	return out
}

func (e *installEnv) read(p string) string {
	b, err := os.ReadFile(filepath.Join(e.root, p))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func TestInstallHeadnode(t *testing.T) {
	e := newInstallEnv(t)
	installDir := e.st.Outputs["InstallDir"]
	bin := installDir + "/bin/spotrescue"

	code, out := e.run(e.args...)
	if code != 0 {
		t.Fatalf("first install: exit %d\n%s", code, out)
	}
	if got := e.systemctlCalls(); !slices.Equal(got, []string{"daemon-reload", "enable_--now_spotrescue.service"}) {
		t.Errorf("first install ran systemctl %v", got)
	}

	// The configuration: what the stack's outputs and clustermgtd say, valid
	// for the controller and for the agent, and the same for both.
	headCfg, nodeCfg := e.read("/etc/spotrescue/config.yaml"), e.read(installDir+"/config.yaml")
	if headCfg != nodeCfg {
		t.Errorf("the compute nodes' copy differs:\n%s\n---\n%s", headCfg, nodeCfg)
	}
	cfg, probs, err := config.Load(config.Sources{File: filepath.Join(e.root, "etc/spotrescue/config.yaml"), FileRequired: true})
	if err != nil || len(probs) > 0 {
		t.Fatalf("load the installed config: %v %v\n%s", err, probs, headCfg)
	}
	want := map[string]string{
		"cluster": "hpc", "region": "eu-west-1", "queue_url": e.st.Outputs["QueueUrl"], "state_table": e.st.Outputs["StateTable"],
		"bucket": e.st.Outputs["BucketName"], "prefix": e.st.Outputs["Prefix"], "ssm.document": e.st.Outputs["DocumentName"], "spool_dir": installDir,
	}
	got := map[string]string{
		"cluster": cfg.Cluster, "region": cfg.Region, "queue_url": cfg.QueueURL, "state_table": cfg.StateTable,
		"bucket": cfg.Bucket, "prefix": cfg.Prefix, "ssm.document": cfg.SSM.Document, "spool_dir": cfg.SpoolDir,
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("config %s = %q, want %q", k, got[k], want[k])
		}
	}
	for _, role := range []config.Role{config.RoleController, config.RoleAgent, config.RoleClient} {
		if p := cfg.Validate(role); len(p) > 0 {
			t.Errorf("installed config, role %d: %v", role, p)
		}
	}

	// The binary, the hooks and the unit, rendered for the real paths.
	rel, _ := os.ReadFile(filepath.Join(e.release, "spotrescue"))
	if !bytes.Equal([]byte(e.read(bin)), rel) {
		t.Error("the installed binary is not the release's")
	}
	node := map[string]string{"SPOTRESCUE_BIN": bin, "SPOTRESCUE_CONFIG": installDir + "/config.yaml", "PROLOG_LOG": "/var/log/spotrescue/prolog.log"}
	files := map[string]struct {
		content string
		mode    fs.FileMode
	}{
		bin:                           {string(rel), 0o755},
		"/etc/spotrescue/config.yaml": {headCfg, 0o644},
		installDir + "/config.yaml":   {headCfg, 0o644},
		"/opt/slurm/etc/scripts/prolog.d/90-spotrescue.sh": {render(t, "slurm/prolog.sh", node), 0o755},
		installDir + "/taskprolog.sh":                      {render(t, "slurm/taskprolog.sh", node), 0o755},
		"/etc/systemd/system/spotrescue.service": {render(t, "systemd/spotrescue.service", map[string]string{
			"SPOTRESCUE_BIN": bin, "SPOTRESCUE_CONFIG": "/etc/spotrescue/config.yaml", "SPOTRESCUE_SPOOL": installDir}), 0o644},
	}
	snap := e.snapshot()
	for p, w := range files {
		s, ok := snap[p]
		if !ok {
			t.Errorf("%s was not installed", p)
			continue
		}
		if string(s.data) != w.content || s.mode.Perm() != w.mode {
			t.Errorf("%s: mode %v, content:\n%s\nwant mode %v, content:\n%s", p, s.mode.Perm(), s.data, w.mode, w.content)
		}
	}
	if len(snap) != len(files)+1+len(config.SlurmCommands) { // + clustermgtd.conf and Slurm
		t.Errorf("installed files %v, want exactly %d", slices.Sorted(maps.Keys(snap)), len(files))
	}
	if fi, err := os.Stat(filepath.Join(e.root, "var/log/spotrescue")); err != nil || !fi.IsDir() {
		t.Errorf("/var/log/spotrescue: %v", err)
	}
	// The TaskProlog is where the cluster configuration says.
	if tp := e.st.Outputs["TaskProlog"]; snap[tp].data == nil {
		t.Errorf("no TaskProlog at %s", tp)
	}
	// The installed unit passes systemd-analyze verify once its paths exist
	// (they are below ROOT here).
	unit := strings.ReplaceAll(e.read("/etc/systemd/system/spotrescue.service"), installDir, e.root+installDir)
	vdir := t.TempDir()
	os.WriteFile(filepath.Join(vdir, "spotrescue.service"), []byte(unit), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", filepath.Join(vdir, "spotrescue.service")).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}

	// Idempotent: the same arguments change nothing and restart nothing.
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtimes
	if code, out := e.run(e.args...); code != 0 {
		t.Fatalf("second install: exit %d\n%s", code, out)
	}
	if got := e.systemctlCalls(); !slices.Equal(got, []string{"enable_--now_spotrescue.service"}) {
		t.Errorf("an unchanged reinstall ran systemctl %v, want only enable --now", got)
	}
	for p, s := range e.snapshot() {
		if before := snap[p]; !bytes.Equal(before.data, s.data) || !before.mtime.Equal(s.mtime) || before.mode != s.mode {
			t.Errorf("an unchanged reinstall rewrote %s", p)
		}
	}

	// A changed setting restarts the controller, without a daemon-reload.
	changed := slices.Clone(e.args)
	changed[slices.Index(changed, "--bucket")+1] = "other-rescue-bucket"
	if code, out := e.run(changed...); code != 0 {
		t.Fatalf("reinstall with another bucket: exit %d\n%s", code, out)
	}
	if got := e.systemctlCalls(); !slices.Equal(got, []string{"enable_--now_spotrescue.service", "restart_spotrescue.service"}) {
		t.Errorf("a changed configuration ran systemctl %v, want enable --now and restart", got)
	}
	if !strings.Contains(e.read("/etc/spotrescue/config.yaml"), `bucket: "other-rescue-bucket"`) || !strings.Contains(e.read(installDir+"/config.yaml"), `bucket: "other-rescue-bucket"`) {
		t.Error("the new bucket is not in both configurations")
	}

	// A new release: the binary is replaced, the previous one kept (linked,
	// so agents running it over NFS keep working), the controller restarted.
	wrapper := "#!/bin/sh\nexec '" + spotrescueBinary(t) + "' \"$@\"\n"
	os.WriteFile(filepath.Join(e.release, "spotrescue"), []byte(wrapper), 0o755)
	if code, out := e.run(changed...); code != 0 {
		t.Fatalf("upgrade: exit %d\n%s", code, out)
	}
	if got := e.systemctlCalls(); !slices.Equal(got, []string{"enable_--now_spotrescue.service", "restart_spotrescue.service"}) {
		t.Errorf("an upgrade ran systemctl %v, want enable --now and restart", got)
	}
	if e.read(bin) != wrapper || e.read(bin+".previous") != string(rel) {
		t.Error("after an upgrade: want the new binary in place and the old one as .previous")
	}

	// Other settings come from --extra-config and are validated too.
	extra := filepath.Join(e.dir, "extra.yaml")
	os.WriteFile(extra, []byte("rescue:\n  checkpoint_signal: USR1\nscratch:\n  path_template: /scratch/{user}/{job_id}\n"), 0o644)
	if code, out := e.run(append(slices.Clone(changed), "--extra-config", extra)...); code != 0 {
		t.Fatalf("install with --extra-config: exit %d\n%s", code, out)
	}
	cfg, probs, err = config.Load(config.Sources{File: filepath.Join(e.root, "etc/spotrescue/config.yaml"), FileRequired: true})
	if err != nil || len(probs) > 0 || cfg.Rescue.CheckpointSignal != "USR1" || cfg.Scratch.PathTemplate != "/scratch/{user}/{job_id}" {
		t.Errorf("--extra-config not applied: %v %v %+v", err, probs, cfg)
	}
	e.systemctlCalls()
}

// A bad argument or an invalid configuration fails with a clear message and
// leaves a working installation exactly as it was.
func TestInstallHeadnodeRefusesBadInput(t *testing.T) {
	e := newInstallEnv(t)
	if code, out := e.run(e.args...); code != 0 {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	e.systemctlCalls()
	before := e.snapshot()
	with := func(flag, value string) []string {
		a := slices.Clone(e.args)
		if i := slices.Index(a, flag); i >= 0 {
			a[i+1] = value
			return a
		}
		return append(a, flag, value)
	}
	badExtra := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(badExtra, []byte("scratch:\n  path_template: /scratch/{user}\n"), 0o644)
	without := slices.Clone(e.args)
	i := slices.Index(without, "--queue-url")
	without = slices.Delete(without, i, i+2)
	for name, c := range map[string]struct {
		args []string
		code int
		msg  string
	}{
		"missing flag":           {without, 2, "--queue-url is required"},
		"unknown flag":           {append(slices.Clone(e.args), "--bukcet", "x"), 2, "unknown argument: --bukcet"},
		"flag without value":     {append(slices.Clone(e.args), "--prefix"), 2, "--prefix needs a value"},
		"bad table name":         {with("--state-table", "t"), 1, "--state-table"},
		"bad install dir":        {with("--install-dir", "/opt/x#y"), 1, "--install-dir"},
		"missing release":        {with("--release", filepath.Join(e.dir, "nowhere")), 1, "cannot fetch"},
		"invalid extra settings": {with("--extra-config", badExtra), 1, "does not contain {job_id}"},
	} {
		code, out := e.run(c.args...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s", name, code, c.code, c.msg, out)
		}
		if c.code == 2 && !strings.Contains(out, "usage:") {
			t.Errorf("%s: no usage shown", name)
		}
		if got := e.systemctlCalls(); len(got) > 0 {
			t.Errorf("%s: systemctl ran %v", name, got)
		}
		for p, s := range e.snapshot() {
			if b := before[p]; !bytes.Equal(b.data, s.data) || !b.mtime.Equal(s.mtime) {
				t.Errorf("%s: %s changed", name, p)
			}
		}
	}
	// The controller's checks run too: no Slurm, no install.
	os.Remove(filepath.Join(e.root, "opt/slurm/bin/scontrol"))
	if code, out := e.run(e.args...); code != 1 || !strings.Contains(out, "is not an executable scontrol") {
		t.Errorf("without scontrol: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(e.root, "opt/slurm/bin/scontrol"), []byte("#!/bin/sh\n"), 0o755)
	if code, out := e.run("--help"); code != 0 || !strings.Contains(out, "--release LOCATION") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	// Without clustermgtd's configuration (not a head node) and no --cluster.
	os.Remove(filepath.Join(e.root, "etc/parallelcluster/slurm_plugin/parallelcluster_clustermgtd.conf"))
	if code, out := e.run(e.args...); code != 1 || !strings.Contains(out, "no --cluster") {
		t.Errorf("no clustermgtd.conf: exit %d\n%s", code, out)
	}
	if code, out := e.run(append(slices.Clone(e.args), "--cluster", "hpc", "--region", "eu-west-1")...); code != 0 {
		t.Errorf("explicit --cluster and --region: exit %d\n%s", code, out)
	}
}
