package slurm

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Job is one job record of slurmctld: a plain job, one task of a job array
// or one component of a heterogeneous job.
type Job struct {
	// ID is the numeric job_id ("125"), which SLURM_JOB_ID shows inside the
	// job. Commands take it, but see Target for array tasks.
	ID string
	// Display is what users see: "123_4" for an array task, "123+1" for a
	// heterogeneous component, "123_[5-9%2]" for the not yet started tasks
	// of an array, otherwise ID.
	Display      string
	ArrayJobID   string // "" when not part of an array
	ArrayTaskID  string // "" when not an array task (also for "123_[5-9]")
	HetJobID     string // "" when not heterogeneous
	HetJobOffset int    // 0 when not heterogeneous
	Name, User   string
	UID          int
	// State is the base state (PENDING, RUNNING, COMPLETED, ...). Where
	// Slurm reports only a flag, as 22.05 and 23.02 and the text output do
	// for a completing job, State is that flag (COMPLETING, REQUEUED,
	// CONFIGURING, ...).
	State string
	// Flags are the state flags besides the base state, from 23.11's state
	// arrays (["COMPLETED","COMPLETING"] gives COMPLETING) or from a state
	// that is itself a flag, so that Completing works on every version.
	Flags        []string
	Reason       string   // state_reason: "JobHeldUser", "JobHeldAdmin", "None", ...
	Nodes        []string // expanded node list; for a completing job, the nodes not yet released
	BatchHost    string
	Batch        bool  // submitted with sbatch
	Requeue      bool  // false when submitted with --no-requeue
	Restarts     int   // restart_cnt, SLURM_RESTART_COUNT of the current or next run
	Priority     int64 // 0 when held
	AdminComment string
	Partition    string
	Account      string
	SubmitTime   time.Time
	StartTime    time.Time // zero when not started (or unknown)
	// ExcNodes is the job's excluded node list (sbatch -x, SetExcludedNodes)
	// as Slurm prints it, a hostlist such as "queue1-dy-c5xlarge-[1-3]",
	// kept unexpanded so that it can be handed back to SetExcludedNodes
	// with a node added. "" when none, and when read from squeue's text
	// columns, which do not carry it.
	ExcNodes string
	// ReqNodes is the node list the job asked for (sbatch -w), the same
	// way; "" when none.
	ReqNodes string
	// NodeCount and CPUs are what the job was allocated or, while it is
	// pending, the least it asked for (scontrol prints a pending job's
	// range "1-4"). 0 when read from squeue's text columns.
	NodeCount, CPUs int
	// GPUs is the job's gres/gpu count: allocated, or requested while
	// nothing is allocated (see gpusOf). 0 when read from squeue's text
	// columns.
	GPUs int
}

var (
	// baseStates are the JOB_STATE_BASE names.
	baseStates = map[string]bool{
		"PENDING": true, "RUNNING": true, "SUSPENDED": true, "COMPLETED": true,
		"CANCELLED": true, "FAILED": true, "TIMEOUT": true, "NODE_FAIL": true,
		"PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true, "OUT_OF_MEMORY": true,
	}
	terminalStates = map[string]bool{
		"COMPLETED": true, "CANCELLED": true, "FAILED": true, "TIMEOUT": true,
		"NODE_FAIL": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true,
		"OUT_OF_MEMORY": true,
	}
	// activeStates hold resources on nodes: what an interruption puts at
	// risk. CONFIGURING is a job whose nodes are booting, STOPPED one that
	// was stopped in place, SIGNALING and RESIZING are transient states of
	// a running job.
	activeStates = map[string]bool{
		"RUNNING": true, "SUSPENDED": true, "COMPLETING": true, "CONFIGURING": true,
		"STOPPED": true, "SIGNALING": true, "RESIZING": true,
	}
	// requeueFlags mark a job on its way back to PENDING, whatever its base.
	requeueFlags = []string{"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT"}
)

// Target is how commands should address the job: "123_4" for an array task,
// because the last task of an array shares its numeric id with the array
// itself and a command given that number acts on every task; ID otherwise.
func (j *Job) Target() string {
	if j.ArrayJobID != "" && j.ArrayTaskID != "" {
		return j.ArrayJobID + "_" + j.ArrayTaskID
	}
	return j.ID
}

// Active reports whether the job holds resources on its nodes: RUNNING,
// SUSPENDED or COMPLETING (also as a flag, e.g. RUNNING+COMPLETING).
func (j *Job) Active() bool {
	return activeStates[j.State] || j.Completing() || j.hasFlag("CONFIGURING") || j.hasFlag("STOPPED")
}

// Finished reports whether the job has ended for good: a terminal state that
// is neither completing nor on its way back to the queue. A job that was
// requeued reads PENDING (or REQUEUED) and is not finished.
func (j *Job) Finished() bool {
	if !terminalStates[j.State] || j.Completing() {
		return false
	}
	for _, f := range requeueFlags {
		if j.hasFlag(f) {
			return false
		}
	}
	return true
}

// Completing reports whether the job is still releasing its nodes.
func (j *Job) Completing() bool { return j.State == "COMPLETING" || j.hasFlag("COMPLETING") }

// HeldByUser reports a hold the job's user placed (sbatch -H, scontrol
// hold by the user, scontrol uhold). An administrator's hold on top of it
// replaces the reason, and a release lifts both: see Client.Release.
func (j *Job) HeldByUser() bool { return j.Reason == "JobHeldUser" }

// HeldByAdmin reports an administrator's hold (scontrol hold by root or
// SlurmUser; spotrescue's own hold is one too).
func (j *Job) HeldByAdmin() bool { return j.Reason == "JobHeldAdmin" }

// HeldBySlurm reports a hold Slurm placed itself, such as
// launch_failed_requeued_held after MaxBatchRequeue failed launches.
func (j *Job) HeldBySlurm() bool { return j.Held() && !j.HeldByUser() && !j.HeldByAdmin() }

// Held reports a user or administrator hold. The reason is JobHeldUser or
// JobHeldAdmin, except in scontrol's text output, which shows the state
// description instead when there is one (such as
// "launch_failed_requeued_held"); the priority is then 0.
func (j *Job) Held() bool {
	if j.Reason == "JobHeldUser" || j.Reason == "JobHeldAdmin" {
		return true
	}
	return j.Priority == 0 && strings.Contains(strings.ToLower(j.Reason), "held")
}

// OnNode reports whether the job is allocated node.
func (j *Job) OnNode(node string) bool { return slices.Contains(j.Nodes, node) }

func (j *Job) hasFlag(f string) bool { return slices.Contains(j.Flags, f) }

// setState fills State and Flags from Slurm's state names: a 23.11+ array
// (["RUNNING","COMPLETING"]), or one name, possibly joined with '+'.
func (j *Job) setState(names []string) {
	var all []string
	for _, n := range names {
		for _, p := range strings.Split(n, "+") {
			if p = strings.ToUpper(strings.TrimSpace(p)); p != "" {
				all = append(all, p)
			}
		}
	}
	j.State, j.Flags = "", nil
	for _, n := range all {
		if baseStates[n] && j.State == "" {
			j.State = n
			continue
		}
		j.Flags = append(j.Flags, n)
	}
	if j.State == "" && len(all) > 0 {
		j.State = all[0] // only a flag is known: it stands for the state
	}
}

// ids is a job's identity as read from any source, before it becomes a Job.
type ids struct {
	jobID, arrayJobID, arrayTaskID uint64
	hasTask                        bool
	taskStr                        string // "5-9%2" for a not yet split array record
	hetJobID, hetOffset            uint64
}

// setIDs fills the id fields and Display. An array_job_id of 0 (or one
// equal to a job without task) means no array; het_job_id 0 means no
// heterogeneous job.
func (j *Job) setIDs(x ids) {
	j.ID = strconv.FormatUint(x.jobID, 10)
	j.Display = j.ID
	j.ArrayJobID, j.ArrayTaskID, j.HetJobID, j.HetJobOffset = "", "", "", 0
	switch {
	case x.arrayJobID > 0 && x.hasTask:
		j.ArrayJobID = strconv.FormatUint(x.arrayJobID, 10)
		j.ArrayTaskID = strconv.FormatUint(x.arrayTaskID, 10)
		j.Display = j.ArrayJobID + "_" + j.ArrayTaskID
	case x.arrayJobID > 0 && x.taskStr != "":
		j.ArrayJobID = strconv.FormatUint(x.arrayJobID, 10)
		j.Display = j.ArrayJobID + "_[" + x.taskStr + "]"
	case x.hetJobID > 0:
		j.HetJobID = strconv.FormatUint(x.hetJobID, 10)
		j.HetJobOffset = int(min(x.hetOffset, 1<<20))
		j.Display = j.HetJobID + "+" + strconv.Itoa(j.HetJobOffset)
	}
}

// setNodes expands Slurm's node list; "", "(null)" and "None assigned"
// mean none.
func (j *Job) setNodes(list string) error {
	if list == "None assigned" {
		list = ""
	}
	nodes, err := naming.ExpandHostlist(list)
	j.Nodes = nodes
	return err
}

// maxCount bounds the node, CPU and GPU counts read from Slurm, so that a
// broken or hostile value cannot overflow what callers add up.
const maxCount = 1 << 20

// gpusOf counts the GPUs of a TRES string such as
// "cpu=4,mem=1000M,node=1,billing=4,gres/gpu=2". With typed GRES Slurm
// lists the total ("gres/gpu=2") and each type ("gres/gpu:a100=2") as
// well, so typed entries are summed only when there is no total. Other
// gres/gpu TRES (gres/gpumem, gres/gpuutil) are not GPUs. A count that does
// not parse is 0; the result is never negative and at most maxCount.
func gpusOf(tres string) int {
	var total, typed uint64
	haveTotal := false
	for _, item := range strings.Split(nullText(tres), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(item), "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			n = 0
		}
		n = min(n, maxCount)
		switch {
		case k == "gres/gpu" && !haveTotal:
			total, haveTotal = n, true
		case strings.HasPrefix(k, "gres/gpu:"):
			typed = min(typed+n, maxCount)
		}
	}
	if haveTotal {
		return int(total)
	}
	return int(typed)
}
