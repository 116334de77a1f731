package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Role is what a command needs from the configuration.
type Role int

const (
	// RoleController is the daemon: it needs everything.
	RoleController Role = iota
	// RoleAgent runs on compute nodes: scratch and spool, nothing about queues or tables.
	RoleAgent
	// RoleClient is an operator command that reads the state table.
	RoleClient
	// RoleDrill injects events into the queue (spotrescue simulate).
	RoleDrill
)

var required = map[Role][]string{
	RoleController: {"cluster", "region", "queue_url", "state_table", "bucket"}, // node_table derives from cluster
	RoleAgent:      {"cluster"},
	RoleClient:     {"cluster", "region", "state_table"},
	RoleDrill:      {"cluster", "region", "queue_url"},
}

// Patterns are the one definition of what each named setting may hold:
// config validation uses them, and deploy's tests check that the
// CloudFormation parameters and the head node installer use exactly these
// (a value one accepts and another refuses would fail at the first rescue,
// or at every requeue). They follow the AWS and ParallelCluster naming
// rules, so a typo is caught here rather than as an opaque API error. The
// prefix keeps to letters, digits and -_. (not all of S3's safe
// characters): it is part of the URI in every job's env file and Slurm
// AdminComment, which take nothing a shell would interpret.
var Patterns = map[string]string{
	"cluster":      `^[a-zA-Z][a-zA-Z0-9-]{0,59}$`,
	"region":       `^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$`,
	"state_table":  `^[a-zA-Z0-9_.-]{3,255}$`,
	"bucket":       `^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`,
	"prefix":       `^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*$`,
	"ssm.document": `^[a-zA-Z0-9_.-]{3,128}$`,
}

var (
	clusterRe  = regexp.MustCompile(Patterns["cluster"])
	regionRe   = regexp.MustCompile(Patterns["region"])
	tableRe    = regexp.MustCompile(Patterns["state_table"])
	bucketRe   = regexp.MustCompile(Patterns["bucket"])
	prefixRe   = regexp.MustCompile(Patterns["prefix"])
	documentRe = regexp.MustCompile(Patterns["ssm.document"])
	placeRe    = regexp.MustCompile(`\{[^}]*\}`)
)

// Placeholders the scratch path template may use.
var Placeholders = []string{"{job_id}", "{user}", "{array_job_id}", "{array_task_id}", "{node}"}

// Validate returns every problem with c for the given role.
func (c *Config) Validate(role Role) Problems {
	var v validator
	for _, path := range required[role] {
		v.require(c, path)
	}
	v.check(c.Cluster != "" && !clusterRe.MatchString(c.Cluster), "cluster", fmt.Sprintf("%q is not a ParallelCluster cluster name", c.Cluster), "use letters, digits and hyphens, starting with a letter, at most 60 characters")
	v.check(c.Region != "" && !regionRe.MatchString(c.Region), "region", fmt.Sprintf("%q is not an AWS region", c.Region), "use a region code such as us-east-1")
	v.queueURL(c.QueueURL)
	v.check(c.StateTable != "" && !tableRe.MatchString(c.StateTable), "state_table", fmt.Sprintf("%q is not a DynamoDB table name", c.StateTable), "use 3-255 letters, digits, '_', '-' or '.'")
	v.check(c.NodeTable != "" && !tableRe.MatchString(c.NodeTable), "node_table", fmt.Sprintf("%q is not a DynamoDB table name", c.NodeTable), "use the dynamodb_table value from "+ClustermgtdPath)
	v.check(c.Bucket != "" && (!bucketRe.MatchString(c.Bucket) || strings.Contains(c.Bucket, "..")), "bucket", fmt.Sprintf("%q is not an S3 bucket name", c.Bucket), "use 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit")
	v.check(!prefixRe.MatchString(c.Prefix) || hasDotSegment(c.Prefix), "prefix", fmt.Sprintf("%q is not a usable key prefix", c.Prefix), "use path segments of letters, digits, '-', '_' and '.' separated by '/', without leading or trailing '/' and without '.' or '..' segments")
	v.absPath("spool_dir", c.SpoolDir)
	v.absPath("slurm.bin_dir", c.Slurm.BinDir)
	v.scratch(c.Scratch)
	v.check(!documentRe.MatchString(c.SSM.Document), "ssm.document", fmt.Sprintf("%q is not an SSM document name", c.SSM.Document), "use 3-128 letters, digits, '_', '-' or '.'")
	margin := c.Deadline.SafetyMargin.Std()
	v.check(margin < time.Second || margin >= 100*time.Second, "deadline.safety_margin", fmt.Sprintf("%s leaves no usable rescue window", margin), "set it between 1s and 100s (EC2 warns 120s ahead)")
	v.check(c.Rescue.Concurrency < 1 || c.Rescue.Concurrency > 1024, "rescue.concurrency", fmt.Sprintf("%d is out of range", c.Rescue.Concurrency), "set it between 1 and 1024")
	v.check(c.Controller.Workers < 1 || c.Controller.Workers > 10000, "controller.workers", fmt.Sprintf("%d is out of range", c.Controller.Workers), "set it between 1 and 10000")
	v.check(c.Controller.Receivers < 1 || c.Controller.Receivers > 100, "controller.receivers", fmt.Sprintf("%d is out of range", c.Controller.Receivers), "set it between 1 and 100")
	v.listen(c.Metrics.Listen)
	v.policy(c)
	return v.probs
}

type validator struct{ probs Problems }

func (v *validator) check(bad bool, path, msg, fix string) {
	if bad {
		v.probs = append(v.probs, Problem{Field: path, Msg: msg, Fix: fix})
	}
}

func (v *validator) require(c *Config, path string) {
	for _, f := range fields(c) {
		if f.Path == path && f.get() == "" {
			v.probs = append(v.probs, Problem{Field: path, Msg: "required but not set", Fix: fmt.Sprintf("set %s in the config file, %s, or --%s", path, f.EnvName(), f.FlagName())})
		}
	}
}

func (v *validator) queueURL(s string) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	v.check(err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "",
		"queue_url", fmt.Sprintf("%q is not an SQS queue URL", s), "use the QueueUrl output of the spotrescue stack, like https://sqs.us-east-1.amazonaws.com/123456789012/spotrescue")
}

func (v *validator) absPath(path, s string) {
	v.check(!filepath.IsAbs(s) || filepath.Clean(s) != s, path, fmt.Sprintf("%q is not a clean absolute path", s), "use an absolute path without '..', '//' or a trailing '/'")
}

func (v *validator) scratch(s Scratch) {
	before := len(v.probs)
	v.absPath("scratch.root", s.Root)
	for _, ph := range placeRe.FindAllString(s.Root, -1) {
		v.check(ph != "{node}", "scratch.root", fmt.Sprintf("placeholder %s cannot be used in the root", ph), "only {node} may appear in scratch.root")
	}
	rootOK := len(v.probs) == before
	t := s.PathTemplate
	for _, ph := range placeRe.FindAllString(t, -1) {
		v.check(!known(ph), "scratch.path_template", fmt.Sprintf("unknown placeholder %s", ph), "use only "+strings.Join(Placeholders, " "))
	}
	// {job_id} is what keeps two jobs from ever sharing a directory (and so an S3 prefix).
	v.check(!strings.Contains(t, "{job_id}"), "scratch.path_template", fmt.Sprintf("%q does not contain {job_id}", t), "include {job_id} so that two jobs never share a scratch directory")
	v.check(!filepath.IsAbs(t) || filepath.Clean(t) != t, "scratch.path_template", fmt.Sprintf("%q is not a clean absolute path", t), "use an absolute path without '..', '//' or a trailing '/'")
	v.check(rootOK && filepath.IsAbs(t) && !strings.HasPrefix(t, strings.TrimSuffix(s.Root, "/")+"/"), "scratch.path_template", fmt.Sprintf("%q is outside scratch.root %q", t, s.Root), "put the per-job directory below scratch.root")
}

func (v *validator) listen(s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.check(true, "metrics.listen", fmt.Sprintf("%q is not host:port", s), "use an address like 127.0.0.1:9464")
		return
	}
	v.check(port == "" || strings.Trim(port, "0123456789") != "", "metrics.listen", fmt.Sprintf("port %q is not a number", port), "use an address like 127.0.0.1:9464")
	v.check(host != "" && host != "localhost" && net.ParseIP(host) == nil, "metrics.listen", fmt.Sprintf("host %q is not an IP address", host), "use 127.0.0.1, or the address Prometheus scrapes")
}

var (
	signalRe    = regexp.MustCompile(`^(SIG)?[A-Z][A-Z0-9]{1,7}$|^[0-9]{1,2}$`)
	partitionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// rescuableStates are the states in which a job's processes hold a node.
	rescuableStates = map[string]bool{"RUNNING": true, "COMPLETING": true, "SUSPENDED": true, "CONFIGURING": true}
)

func (v *validator) policy(c *Config) {
	r := c.Rescue
	v.check(len(r.States) == 0, "rescue.states", "no job state is rescued", "list at least RUNNING")
	for _, s := range r.States {
		v.check(!rescuableStates[s], "rescue.states", fmt.Sprintf("%q is not a state in which a job holds a node", s), "use RUNNING, COMPLETING, SUSPENDED or CONFIGURING")
	}
	v.check(r.CheckpointSignal != "" && !signalRe.MatchString(r.CheckpointSignal), "rescue.checkpoint_signal", fmt.Sprintf("%q is not a signal", r.CheckpointSignal), "use a name like USR1 or SIGTERM, or a number")
	window := 120*time.Second - c.Deadline.SafetyMargin.Std()
	v.check(window > 0 && (r.CheckpointGrace.Std() < 0 || r.CheckpointGrace.Std() > window/2), "rescue.checkpoint_grace", fmt.Sprintf("%s takes more than half of the %s rescue window", r.CheckpointGrace, window), fmt.Sprintf("set it between 0s and %s", window/2))
	v.check(c.Deadline.GiveUpAfter.Std() < 10*time.Second || c.Deadline.GiveUpAfter.Std() > 24*time.Hour, "deadline.give_up_after", fmt.Sprintf("%s is out of range", c.Deadline.GiveUpAfter), "set it between 10s and 24h (10m is a good start): a job stays held until then")
	v.check(c.Restore.Timeout.Std() < 10*time.Second, "restore.timeout", fmt.Sprintf("%s leaves a restore no time", c.Restore.Timeout), "set it to 10s or more, below Slurm's PrologEpilogTimeout")
	v.check(c.Controller.SpoolRetention.Std() < time.Hour, "controller.spool_retention", fmt.Sprintf("%s would remove env files before their jobs run again", c.Controller.SpoolRetention), "set it to 1h or more (longer than your longest queue wait)")
	ttl := c.Controller.LeaseTTL.Std()
	v.check(ttl != 0 && (ttl < 3*time.Second || ttl > 5*time.Minute), "controller.lease_ttl", fmt.Sprintf("%s is out of range", c.Controller.LeaseTTL), "set it between 3s and 5m (15s is a good start), or 0 for a single controller")
	v.check(r.PresyncEvery.Std() != 0 && r.PresyncEvery.Std() < 5*time.Minute, "rescue.presync_every", fmt.Sprintf("%s would keep the nodes uploading", r.PresyncEvery), "set it to 5m or more, or 0 to turn it off")
	switch strings.ToLower(strings.TrimSpace(r.PackSmallFiles)) {
	case PackAuto, PackAlways, PackNever, "true", "false":
	default:
		v.check(true, "rescue.pack_small_files", fmt.Sprintf("%q is not a packing mode", r.PackSmallFiles), "use auto (the default), always or never")
	}
	v.check(r.Checksum != "CRC32C" && r.Checksum != "SHA256", "rescue.checksum", fmt.Sprintf("%q is not a checksum the agent computes", r.Checksum), "use CRC32C or SHA256")
	for _, p := range r.Priority {
		_, err := path.Match(p, "")
		v.check(err != nil || strings.Trim(p, "/") == "", "rescue.priority", fmt.Sprintf("%q is not a glob pattern", p), "use patterns like *.ckpt or checkpoints/*")
	}
	c.validateNotify(v)
	f := c.Fallback
	v.check(f.After < 0, "fallback.after", fmt.Sprintf("%d is negative", f.After), "set 0 to turn the fallback off, or a count of interruptions")
	v.check(f.After > 0 && !partitionRe.MatchString(f.Partition), "fallback.partition", fmt.Sprintf("%q is not a partition name", f.Partition), "name the on-demand partition jobs move to, or set fallback.after to 0")
	avoid := c.Steer.AvoidFor.Std()
	v.check(avoid < 0 || avoid > 24*time.Hour, "steer.avoid_for", fmt.Sprintf("%s is out of range", c.Steer.AvoidFor), "set it between 1s and 24h (15m is the default), or 0 to turn steering off")
}

var snsTopicRe = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$`)

func (c *Config) validateNotify(v *validator) {
	n := c.Notify
	for _, o := range n.Outcomes {
		v.check(!slices.Contains([]string{"complete", "partial", "failed", "skipped"}, o), "notify.outcomes", fmt.Sprintf("%q is not an outcome", o), "list some of complete, partial, failed and skipped")
	}
	v.check(n.SNSTopic != "" && !snsTopicRe.MatchString(n.SNSTopic), "notify.sns_topic_arn", fmt.Sprintf("%q is not an SNS topic ARN", n.SNSTopic), "use the topic's ARN, arn:aws:sns:<region>:<account>:<name> (the stack's NotifyTopicArn output)")
	if n.WebhookURL != "" {
		u, err := url.Parse(n.WebhookURL)
		loopback := err == nil && (u.Hostname() == "localhost" || net.ParseIP(u.Hostname()).IsLoopback())
		ok := err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http" && loopback)
		// The URL is often a secret (a Slack webhook's is): never echo it.
		v.check(!ok, "notify.webhook_url", "is not an https:// URL", "use the endpoint's https:// URL (plain http only to a loopback address)")
	}
}

func known(ph string) bool {
	for _, p := range Placeholders {
		if p == ph {
			return true
		}
	}
	return false
}

func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// SlurmCommands are the Slurm clients spotrescue runs.
var SlurmCommands = []string{"squeue", "sinfo", "scontrol", "scancel"}

// CheckSlurm reports Slurm commands missing from slurm.bin_dir. It reads
// the filesystem, so it is separate from Validate; the controller and
// `config validate` call it.
func (c *Config) CheckSlurm() Problems {
	var v validator
	for _, name := range SlurmCommands {
		p := filepath.Join(c.Slurm.BinDir, name)
		fi, err := os.Stat(p)
		v.check(err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0, "slurm.bin_dir", fmt.Sprintf("%s is not an executable %s", p, name), "point slurm.bin_dir at the directory holding Slurm's commands (ParallelCluster: /opt/slurm/bin)")
	}
	return v.probs
}
