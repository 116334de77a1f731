// Package state is spotrescue's durable memory: one DynamoDB record per
// interrupted job run, moved through its phases by conditional writes, plus
// short-lived interruption items that de-duplicate events.
//
// The controller is level-triggered: whatever it has done is written here
// before the next step starts, so a restarted controller lists the records
// that are not Done and carries on.
package state

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Phase is where a job run's rescue stands.
type Phase string

// Phases in the order a rescue moves through them. Rescued, Partial and
// Failed are alternatives: the outcome of the upload.
const (
	Detected   Phase = "Detected"
	Held       Phase = "Held"
	Dispatched Phase = "Dispatched"
	Rescued    Phase = "Rescued"
	Partial    Phase = "Partial"
	Failed     Phase = "Failed"
	Requeued   Phase = "Requeued"
	Done       Phase = "Done"
)

// Phases lists every phase in order.
var Phases = []Phase{Detected, Held, Dispatched, Rescued, Partial, Failed, Requeued, Done}

// Terminal reports whether nothing more will happen to a record in phase p.
func (p Phase) Terminal() bool { return p == Done }

// Outcome is what the upload achieved, kept after the record is Done.
type Outcome string

// Outcomes of a rescue; they are also SPOT_RESCUE_STATUS values.
const (
	OutcomeComplete Outcome = "complete"
	OutcomePartial  Outcome = "partial"
	OutcomeFailed   Outcome = "failed"
	// OutcomeSkipped: nothing was uploaded because the job was gone before the rescue started.
	OutcomeSkipped Outcome = "skipped"
)

// Key names one run of one job: a job interrupted three times has three keys.
type Key struct {
	Cluster string
	JobID   string
	Run     int // SLURM_RESTART_COUNT of the interrupted run (0 for the first run)
}

func (k Key) String() string { return fmt.Sprintf("%s/%s/%d", k.Cluster, k.JobID, k.Run) }

// ParseKey is the inverse of Key.String; work queues carry keys as strings.
func ParseKey(s string) (Key, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Key{}, fmt.Errorf("parse key %q: want cluster/job/run", s)
	}
	run, err := strconv.Atoi(parts[2])
	if err != nil || run < 0 {
		return Key{}, fmt.Errorf("parse key %q: run %q is not a restart count", s, parts[2])
	}
	if _, err := naming.ParseJobID(parts[1]); err != nil {
		return Key{}, fmt.Errorf("parse key %q: %w", s, err)
	}
	return Key{Cluster: parts[0], JobID: parts[1], Run: run}, nil
}

// Record is one interrupted job run and everything done about it.
type Record struct {
	Key
	Version int64 // incremented by every write; writes are conditional on it
	Phase   Phase

	User        string // job owner, for the env file's ownership and for queries
	UID         int
	Name        string // job name, for operators
	Display     string // job id as users see it: 123_4 for an array task
	ArrayJobID  string
	ArrayTaskID string

	Event     string    // id of the event that started the rescue
	EventTime time.Time // when EC2 sent the warning
	Deadline  time.Time // when the upload must be finished (event + 120 s - margin)
	Drill     bool      // started by `spotrescue simulate`
	UserHeld  bool      // the job was held by its user before we held it; keep that hold
	// KeptHold says whose hold the job had besides ours (an administrator's,
	// or Slurm's own after MaxBatchRequeue failed launches): spotrescue
	// then lifts nothing, as `scontrol release` would lift that hold too.
	KeptHold string `dynamodbav:",omitempty"`
	Nodes    []Node // every node of the job, interrupted or not

	URI     string  // s3:// prefix of this run's rescued data
	Outcome Outcome // what the upload achieved
	Bytes   int64
	Files   int64
	// Requests is what the upload cost in S3 requests (from the manifests).
	Requests int64 `dynamodbav:",omitempty"`

	// The interrupted run's start and size, from Slurm when the rescue
	// began: the compute its rescued data stands for. 0 CPUs when Slurm
	// did not say (squeue's text columns).
	Started    time.Time `dynamodbav:",omitempty"`
	CPUs, GPUs int       `dynamodbav:",omitempty"`
	// Saved is the compute a later run was spared by starting from the
	// rescued data; nil until one does.
	Saved *Saved `dynamodbav:",omitempty"`

	Requeue  string // what happened at requeue time and why
	Fallback string // partition the job was moved to after repeated interruptions
	// Steer is how the requeued job was kept off the reclaimed compute
	// resource, or why it was not; nil when steering was off or did not
	// apply (nodes not named as ParallelCluster names them).
	Steer *Steer `dynamodbav:",omitempty"`

	Times    Times
	Attempts int      // failed reconcile attempts since the last success
	Errors   []string // most recent errors, newest last
}

// Node is the part of a rescue that happens on one node.
type Node struct {
	Name        string
	Instance    string
	Interrupted bool   // this node's instance got the warning
	Gone        bool   // EC2 reported the instance shutting down or terminated
	Group       int    // heterogeneous job component the node belongs to (0 otherwise)
	Command     string // SSM command id of the upload
	Status      string // SSM invocation status, as last observed
	Complete    bool   // the manifest says every file was saved
	Bytes       int64
	Files       int64
	Problem     string `dynamodbav:",omitempty"` // why what the node saved is not counted (an unusable manifest)
}

// Steer is the exclusion of a reclaimed compute resource's nodes from a
// requeued job (Slurm's ExcNodeList), and its lifting.
type Steer struct {
	// Avoided is the hostlist of the reclaimed compute resources' nodes
	// in the job's partitions.
	Avoided string
	// Set is the job's ExcNodeList as spotrescue set it (Avoided plus
	// Kept); Kept, what the job's user had excluded, given back at Until.
	Set, Kept string `dynamodbav:",omitempty"`
	Until     time.Time
	// Skipped says why the job was not steered (no other compute resource
	// of its partitions could run it, say); the other fields are then empty.
	Skipped string `dynamodbav:",omitempty"`
	// Lifted says what happened at Until: lifted, or why not.
	Lifted string `dynamodbav:",omitempty"`
}

// Saved is the compute a rescue preserved: the interrupted run's time from
// its start to the upload's start (what the rescued data holds), times its
// CPUs and GPUs, counted once a later run starts from that data.
type Saved struct {
	Run        int       // the run that resumed
	Node       string    // where it restored the data first
	Resumed    time.Time // when that run's restore finished
	Seconds    int64     // the interrupted run's time the data preserved
	CPUSeconds int64
	GPUSeconds int64 `dynamodbav:",omitempty"`
	// NotCounted says why no compute is counted although a run resumed
	// (the run's start or CPUs are unknown), or that none resumed in time.
	NotCounted string `dynamodbav:",omitempty"`
}

// Times records when each phase was entered.
type Times struct {
	Detected   time.Time
	Held       time.Time
	Dispatched time.Time
	Finished   time.Time // upload outcome known
	Requeued   time.Time
	Done       time.Time
}

// maxErrors bounds the error history kept on a record.
const maxErrors = 5

// AddError appends err to the record's recent errors.
func (r *Record) AddError(err error) {
	r.Attempts++
	r.Errors = append(r.Errors, fmt.Sprintf("%s %s", time.Now().UTC().Format(time.RFC3339), err))
	if len(r.Errors) > maxErrors {
		r.Errors = r.Errors[len(r.Errors)-maxErrors:]
	}
}

// Clone returns a deep copy: records are handed between goroutines and
// caches that must not share slices.
func (r *Record) Clone() *Record {
	c := *r
	c.Nodes = append([]Node(nil), r.Nodes...)
	c.Errors = append([]string(nil), r.Errors...)
	if r.Steer != nil {
		st := *r.Steer
		c.Steer = &st
	}
	if r.Saved != nil {
		sv := *r.Saved
		c.Saved = &sv
	}
	return &c
}

// AwaitsResume reports whether a later run starting from r's data would be
// counted as compute saved: a finished rescue (not a drill) of data that a
// requeued job can restore, not counted yet.
func (r *Record) AwaitsResume() bool {
	return r.Phase == Done && !r.Drill && r.Saved == nil && strings.HasPrefix(r.Requeue, "requeued") &&
		(r.Outcome == OutcomeComplete || r.Outcome == OutcomePartial)
}
