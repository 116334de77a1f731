// Package config loads and validates spotrescue's configuration.
//
// Settings come, in increasing precedence, from built-in defaults, the
// ParallelCluster clustermgtd configuration (when present), one YAML file,
// SPOTRESCUE_* environment variables and command-line flags. Every leaf
// setting has one dotted path (for example "scratch.root"); the environment
// variable and the flag are derived from that path, so the three spellings can
// never drift apart.
package config

import (
	"strings"
	"time"
)

// DefaultPath is where the head node installer writes the configuration.
const DefaultPath = "/etc/spotrescue/config.yaml"

// ClustermgtdPath is the ParallelCluster daemon configuration that names the
// cluster, its region and its node table.
const ClustermgtdPath = "/etc/parallelcluster/slurm_plugin/parallelcluster_clustermgtd.conf"

// Config is the whole configuration of the controller, the node agent and the
// operator commands. Field tags give the YAML key; `help` is shown by --help
// and in `spotrescue config validate` messages.
type Config struct {
	Cluster    string `yaml:"cluster" help:"ParallelCluster cluster name"`
	Region     string `yaml:"region" help:"AWS region of the cluster"`
	QueueURL   string `yaml:"queue_url" help:"URL of the SQS queue EventBridge delivers interruption events to"`
	StateTable string `yaml:"state_table" help:"DynamoDB table that holds rescue records"`
	NodeTable  string `yaml:"node_table" help:"ParallelCluster DynamoDB table mapping instances to Slurm nodes (default parallelcluster-slurm-<cluster>)"`
	Bucket     string `yaml:"bucket" help:"S3 bucket rescued data is uploaded to"`
	Prefix     string `yaml:"prefix" help:"key prefix inside the bucket"`
	SpoolDir   string `yaml:"spool_dir" help:"directory shared with compute nodes for rescue plans and job env files"`
	DryRun     bool   `yaml:"dry_run" help:"log every decision but change nothing in Slurm, S3 or SSM"`

	Controller Controller `yaml:"controller"`
	Scratch    Scratch    `yaml:"scratch"`
	Slurm      Slurm      `yaml:"slurm"`
	SSM        SSM        `yaml:"ssm"`
	Deadline   Deadline   `yaml:"deadline"`
	Rescue     Rescue     `yaml:"rescue"`
	Fallback   Fallback   `yaml:"fallback"`
	Steer      Steer      `yaml:"steer"`
	Restore    Restore    `yaml:"restore"`
	Metrics    Metrics    `yaml:"metrics"`
	Notify     Notify     `yaml:"notify"`
}

// Controller sizes the daemon's concurrency.
type Controller struct {
	Workers   int      `yaml:"workers" help:"records reconciled at once; a mass reclaim dispatches up to 50 instances per SSM call from this many"`
	Receivers int      `yaml:"receivers" help:"concurrent SQS long polls"`
	LeaseTTL  Duration `yaml:"lease_ttl" help:"run several controllers for high availability: the one holding the cluster's lease (in the state table) for this long acts, renewing it; 0 for a single controller"`
	// SpoolRetention bounds how long plans and finished jobs' env files
	// stay in the shared spool directory.
	SpoolRetention Duration `yaml:"spool_retention" help:"plans and the env files of jobs that are gone are removed from the spool directory after this long"`
}

// Scratch describes where jobs keep node-local data.
type Scratch struct {
	Root         string `yaml:"root" help:"node-local scratch mount; the agent never reads or writes outside it ({node} expands to the Slurm node name)"`
	PathTemplate string `yaml:"path_template" help:"per-job scratch directory, inside root; placeholders {job_id} {user} {array_job_id} {array_task_id} {node}"`
}

// Slurm locates the Slurm client commands.
type Slurm struct {
	BinDir string `yaml:"bin_dir" help:"directory holding squeue, sinfo, scontrol and scancel"`
}

// SSM names the Run Command document that runs the agent.
type SSM struct {
	Document string `yaml:"document" help:"name of the SSM document that runs 'spotrescue agent rescue'"`
}

// Deadline controls how much of the two-minute warning the rescue may use.
type Deadline struct {
	SafetyMargin Duration `yaml:"safety_margin" help:"time kept free before the instance is reclaimed"`
	GiveUpAfter  Duration `yaml:"give_up_after" help:"a rescue still unfinished this long after its deadline is closed with what S3 holds, its job released, and the reason recorded"`
}

// Rescue tunes the controller and the upload.
type Rescue struct {
	Concurrency int `yaml:"concurrency" help:"files uploaded and downloaded in parallel per node by the agent (requests in flight; memory for file data stays at 64 MiB whatever this is)"`
	// States are the job states whose jobs are rescued.
	States             []string `yaml:"states" help:"job states that are rescued (RUNNING, COMPLETING, SUSPENDED, CONFIGURING)"`
	CheckpointSignal   string   `yaml:"checkpoint_signal" help:"signal sent to the job (scancel --signal --full) before the upload so it can checkpoint; empty for none"`
	CheckpointGrace    Duration `yaml:"checkpoint_grace" help:"time the job gets after the checkpoint signal, taken from the deadline"`
	Priority           []string `yaml:"priority" help:"glob patterns of files saved first, in order (e.g. *.ckpt); the rest follow newest first"`
	Checksum           string   `yaml:"checksum" help:"whole-file checksum recorded in manifests and verified on restore: CRC32C or SHA256"`
	PackSmallFiles     string   `yaml:"pack_small_files" help:"auto: one object per file while the rescue can finish that way, then the small files left go into shared pack objects; always: files under 2 MiB always in packs (far fewer S3 requests, not browsable one object per file); never: one object per file even past the deadline"`
	PresyncOnRebalance bool     `yaml:"presync_on_rebalance" help:"on a Rebalance Recommendation, upload the node's jobs' scratch ahead of time so the final rescue moves only what changed"`
	PresyncEvery       Duration `yaml:"presync_every" help:"also pre-sync every node's running jobs this often (at least 5m); 0 turns it off"`
}

// Fallback moves jobs that Spot keeps interrupting to on-demand capacity.
type Fallback struct {
	After     int    `yaml:"after" help:"after this many Spot interruptions of the same job, requeue it into fallback.partition; 0 turns it off"`
	Partition string `yaml:"partition" help:"on-demand partition for jobs that reached fallback.after interruptions"`
}

// Steer keeps a requeued job off the capacity that was just reclaimed.
type Steer struct {
	AvoidFor Duration `yaml:"avoid_for" help:"keep a job requeued after a Spot interruption off the interrupted ParallelCluster compute resource (its <queue>-st|dy-<name>-<n> nodes) this long, when other nodes of its partitions can run it; 0 turns it off"`
}

// Restore controls what the next run of a rescued job gets.
type Restore struct {
	Enabled bool     `yaml:"enabled" help:"restore rescued data into the job's scratch directory in the Prolog"`
	Timeout Duration `yaml:"timeout" help:"longest a restore (and a task's wait for another task's restore) may take; keep it below Slurm's PrologEpilogTimeout"`
}

// Metrics configures the Prometheus and health endpoint.
type Metrics struct {
	Listen string `yaml:"listen" help:"address of /metrics, /healthz and /readyz"`
}

// Notify tells people about finished rescues.
type Notify struct {
	Outcomes   []string `yaml:"outcomes" help:"outcomes of a finished rescue to notify about: complete, partial, failed, skipped"`
	SNSTopic   string   `yaml:"sns_topic_arn" help:"SNS topic to publish a notice of each finished rescue to; empty for none"`
	WebhookURL string   `yaml:"webhook_url" help:"HTTPS endpoint to POST a notice of each finished rescue to (Slack-compatible JSON); empty for none"`
}

// Default returns the built-in defaults, before any source is applied.
func Default() Config {
	return Config{
		Prefix:   "spotrescue",
		SpoolDir: "/opt/parallelcluster/shared/spotrescue",
		Scratch: Scratch{
			Root:         "/scratch",
			PathTemplate: "/scratch/{job_id}",
		},
		Controller: Controller{Workers: 256, Receivers: 8, SpoolRetention: Duration(14 * 24 * time.Hour)},
		Slurm:      Slurm{BinDir: "/opt/slurm/bin"},
		SSM:        SSM{Document: "SpotRescue-Rescue"},
		Deadline:   Deadline{SafetyMargin: Duration(15 * time.Second), GiveUpAfter: Duration(10 * time.Minute)},
		Rescue: Rescue{Concurrency: 64, // rescue.DefaultConcurrency (config_test.go checks)
			States: []string{"RUNNING", "COMPLETING", "SUSPENDED"}, CheckpointGrace: Duration(10 * time.Second),
			Checksum: "CRC32C", PackSmallFiles: PackAuto, PresyncOnRebalance: true},
		Steer:   Steer{AvoidFor: Duration(15 * time.Minute)},
		Restore: Restore{Enabled: true, Timeout: Duration(5 * time.Minute)},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Notify:  Notify{Outcomes: []string{"failed", "partial"}},
	}
}

// The values of rescue.pack_small_files; true and false, its values before
// auto existed, still mean always and never.
const (
	PackAuto   = "auto"
	PackAlways = "always"
	PackNever  = "never"
)

// Packing says whether the agent packs small files from the start
// (always) or once one object per file would miss the deadline (late).
func (r Rescue) Packing() (always, late bool) {
	switch strings.ToLower(strings.TrimSpace(r.PackSmallFiles)) {
	case PackAlways, "true":
		return true, false
	case PackNever, "false":
		return false, false
	}
	return false, true
}
