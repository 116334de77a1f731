package controller

import (
	"fmt"
	"slices"
	"time"

	"github.com/spotrescue/spotrescue/controller/agents"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// Policy holds the operator's choices about jobs.
type Policy struct {
	States            []string      // job states that are rescued; empty means RUNNING, COMPLETING, SUSPENDED
	Signal            string        // sent with scancel --signal before the upload; "" for none
	Grace             time.Duration // time the job gets to checkpoint after Signal
	FallbackAfter     int           // interruptions of one job before it moves to FallbackPartition; 0 for never
	FallbackPartition string
	AvoidFor          time.Duration // keep a requeued job off the reclaimed compute resource this long; 0 for never
	Presync           bool          // copy a node's jobs' scratch on a Rebalance Recommendation
	PresyncEvery      time.Duration // and every node's this often; 0 for never
}

var defaultStates = []string{"RUNNING", "COMPLETING", "SUSPENDED"}

// skipReason says why the policy does not rescue j, or "" if it does.
// Interactive jobs are left alone: their processes live with the user's
// session, and nothing could resume them.
func (p Policy) skipReason(j *slurm.Job) string {
	states := p.States
	if len(states) == 0 {
		states = defaultStates
	}
	if !j.Batch {
		return "interactive job (not submitted with sbatch)"
	}
	for _, s := range states {
		if j.State == s || slices.Contains(j.Flags, s) {
			return ""
		}
	}
	return fmt.Sprintf("state %s is not in rescue.states", j.State)
}

// Unit is what one record rescues: a job, or every component of a
// heterogeneous job under its leader, whose id Slurm's hold, requeue and
// release act on for the whole job and which the job's tasks see as
// SLURM_JOB_ID.
type Unit struct {
	Job   *slurm.Job // the job, or the leader component
	Nodes []state.Node
}

// Skip is a job on the node that is not rescued, and why.
type Skip struct {
	Job    *slurm.Job
	Reason string
}

// Decide splits the jobs allocated node into what a warning for node
// rescues and what it leaves alone. `spotrescue inspect` shows the same.
func Decide(p Policy, jobs []slurm.Job, node string) (units []Unit, skipped []Skip) {
	components := map[string][]*slurm.Job{}
	for i := range jobs {
		if j := &jobs[i]; j.HetJobID != "" {
			components[j.HetJobID] = append(components[j.HetJobID], j)
		}
	}
	seen := map[string]bool{}
	for i := range jobs {
		j := &jobs[i]
		if !j.OnNode(node) || !j.Active() {
			continue // ended or not started: nothing of it is on the node
		}
		if why := p.skipReason(j); why != "" {
			skipped = append(skipped, Skip{Job: j, Reason: why})
			continue
		}
		parts := []*slurm.Job{j}
		if j.HetJobID != "" {
			if seen[j.HetJobID] {
				continue
			}
			seen[j.HetJobID] = true
			parts = components[j.HetJobID]
			slices.SortFunc(parts, func(a, b *slurm.Job) int { return a.HetJobOffset - b.HetJobOffset })
			if parts[0].ID != j.HetJobID {
				skipped = append(skipped, Skip{Job: j, Reason: "heterogeneous job whose leader Slurm did not list"})
				continue
			}
		}
		u := Unit{Job: parts[0]}
		for _, part := range parts {
			for _, n := range part.Nodes {
				u.Nodes = append(u.Nodes, state.Node{Name: n, Group: part.HetJobOffset})
			}
		}
		units = append(units, u)
	}
	return units, skipped
}

// jobRecord is a record of j's current run with what Slurm says of the job:
// the start of a rescue record, and what a pre-sync's request is built from.
func jobRecord(cluster string, j *slurm.Job) *state.Record {
	return &state.Record{
		Key:  state.Key{Cluster: cluster, JobID: j.ID, Run: j.Restarts},
		User: j.User, UID: j.UID, Name: j.Name, Display: j.Display, ArrayJobID: j.ArrayJobID, ArrayTaskID: j.ArrayTaskID,
		UserHeld: j.HeldByUser(), KeptHold: keptHold(j),
		Started: j.StartTime.UTC(), CPUs: j.CPUs, GPUs: j.GPUs,
	}
}

// planner says where a job's data is on a node (the scratch path template)
// and where it goes in S3: the one place the agents' requests are built.
type planner struct {
	layout   rescue.Layout
	template string
}

// dir is rec's job's scratch directory on node.
func (p planner) dir(rec *state.Record, node string) (string, error) {
	return rescue.ScratchDir(p.template, rescue.NewScratchVars(rec.JobID, rec.User, rec.ArrayJobID, rec.ArrayTaskID, node))
}

// ScratchDir is j's scratch directory on node, from the scratch path
// template: what the agent saves, and `spotrescue inspect` shows.
func ScratchDir(template string, j *slurm.Job, node string) (string, error) {
	return planner{template: template}.dir(jobRecord("", j), node)
}

// request asks for rec's data on node to be saved.
func (p planner) request(rec *state.Record, node, instance string, deadline, reclaim time.Time, presync bool) (agents.Request, error) {
	dir, err := p.dir(rec, node)
	if err != nil {
		return agents.Request{}, err
	}
	uid := rec.UID
	return agents.Request{
		Instance: instance, Node: node, Presync: presync, Deadline: deadline, Reclaim: reclaim,
		Job: rescue.PlanJob{JobID: rec.JobID, Run: rec.Run, Dir: dir, Prefix: p.layout.NodePrefix(rec.JobID, rec.Run, node), UID: &uid},
	}, nil
}
