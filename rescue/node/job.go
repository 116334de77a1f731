package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/confine"
)

// Job is what Slurm tells the Prolog and the TaskProlog about the starting
// job, as spotrescue names it.
type Job struct {
	ID, User, Node, NodeList, ArrayJobID, ArrayTaskID string
	UID, GID                                          int
	// Group is the heterogeneous job component this node runs (0 otherwise).
	Group int
	// Restarts is the restart count of the starting run.
	Restarts int
	// Step is the step the TaskProlog runs for: "" for the batch script
	// (Slurm 22.05 sets no SLURM_STEP_ID there), a number for srun's.
	Step string
	// Lookup asks slurmctld for a job's array ids, for the Prolog, which
	// Slurm does not give them (see arrayIDs); nil when not needed.
	Lookup func(ctx context.Context, jobID string) (arrayJobID, arrayTaskID string, err error)
}

// JobFromEnv reads the job from the variables Slurm sets for the Prolog
// and the TaskProlog.
func JobFromEnv(getenv func(string) string) Job {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	uid, _ := strconv.Atoi(getenv("SLURM_JOB_UID"))
	gid, err := strconv.Atoi(getenv("SLURM_JOB_GID"))
	if err != nil {
		gid = -1
	}
	// A heterogeneous job is known by its leader's id everywhere but in the
	// Prolog's SLURM_JOB_ID, which is the component's: leader + offset.
	jobID, group := getenv("SLURM_JOB_ID"), 0
	if het := getenv("SLURM_HET_JOB_ID"); het != "" && het != jobID {
		comp, err1 := strconv.Atoi(jobID)
		leader, err2 := strconv.Atoi(het)
		if err1 == nil && err2 == nil && comp > leader {
			jobID, group = het, comp-leader
		}
	}
	restarts, _ := strconv.Atoi(first("SLURM_JOB_RESTART_COUNT", "SLURM_RESTART_COUNT")) // unset on a first run
	return Job{
		ID: jobID, Group: group, User: first("SLURM_JOB_USER", "USER"), Restarts: restarts, Node: getenv("SLURMD_NODENAME"),
		// The Prolog gets only SLURM_NODELIST.
		NodeList:   first("SLURM_JOB_NODELIST", "SLURM_NODELIST"),
		ArrayJobID: getenv("SLURM_ARRAY_JOB_ID"), ArrayTaskID: getenv("SLURM_ARRAY_TASK_ID"),
		UID: uid, GID: gid, Step: getenv("SLURM_STEP_ID"),
	}
}

// arrayIDs fills in the array ids when the scratch path template needs them
// and the environment did not say: Slurm 22.05 gives the Prolog no
// SLURM_ARRAY_* variables (the TaskProlog has them), so the Prolog asks
// slurmctld. Without them the Prolog would make and restore into another
// directory than the one the job and the controller use.
func (j *Job) arrayIDs(ctx context.Context, template string) error {
	if j.ArrayJobID != "" || !strings.Contains(template, "{array_job_id}") && !strings.Contains(template, "{array_task_id}") {
		return nil
	}
	if j.Lookup == nil {
		return fmt.Errorf("the scratch path template needs the job's array ids, which Slurm did not give")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a, t, err := j.Lookup(ctx, j.ID)
	if err != nil {
		return fmt.Errorf("the scratch path template needs the job's array ids, which Slurm does not give the Prolog: %w", err)
	}
	j.ArrayJobID, j.ArrayTaskID = a, t
	return nil
}

func (j Job) scratchVars() rescue.ScratchVars {
	return rescue.NewScratchVars(j.ID, j.User, j.ArrayJobID, j.ArrayTaskID, j.Node)
}

// scratch is the job's scratch directory on this node, made or opened by
// handle (see rescue.Scratch.Prepare): as root in the Prolog, which gives
// it to the job's user, and as that user in the TaskProlog.
func (j Job) scratch(s Settings, log *zap.Logger) (*confine.Dir, error) {
	sc, err := rescue.NewScratch(s.ScratchRoot, s.PathTemplate, j.scratchVars())
	if err != nil {
		return nil, err
	}
	dir, err := sc.Prepare(j.UID, j.GID, log)
	if err != nil {
		return nil, fmt.Errorf("scratch directory %s: %w", sc.Path(), err)
	}
	return dir, nil
}
