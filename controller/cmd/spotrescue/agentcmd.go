package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/confine"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

func newAgentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run on a compute node: save (rescue) or bring back (restore) a job's scratch data",
	}
	cmd.AddCommand(newAgentRescueCommand(g), newAgentRestoreCommand(g))
	return cmd
}

func newAgentRescueCommand(g *globals) *cobra.Command {
	var planID, instance string
	cmd := &cobra.Command{
		Use:   "rescue --plan <id>",
		Short: "Upload the scratch data of the jobs in a rescue plan to S3 (run by SSM)",
		Long: `Reads the plan the controller wrote for this instance in the shared spool
directory, uploads each job's scratch directory to S3 in parallel (files
matching the plan's priority patterns first, then newest first), stops
starting files at the deadline (from IMDS spot/instance-action when reachable,
else the plan's), aborts what is still in flight at the hard stop, and writes
each job's manifest last. Files a previous manifest at the prefix (a pre-sync)
already holds unchanged are not sent again. A pre-sync plan has no deadline.
Prints one summary line per job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			return runAgentRescue(cmd.Context(), cfg, log, planID, instance)
		},
	}
	withConfig(cmd, agentSettings...)
	cmd.Flags().StringVar(&planID, "plan", "", "rescue plan id (from the SSM document's Plan parameter)")
	cmd.Flags().StringVar(&instance, "instance", "", "this instance's id (default $AWS_SSM_INSTANCE_ID, else IMDS)")
	cmd.MarkFlagRequired("plan")
	return cmd
}

func runAgentRescue(ctx context.Context, cfg *config.Config, log *zap.Logger, planID, instance string) error {
	if !rescue.ValidPlanID(planID) {
		return fmt.Errorf("--plan %q is not a plan id", planID)
	}
	awsCfg, err := awsConfig(ctx, cfg.Region)
	if err != nil {
		return err
	}
	meta := imds.NewFromConfig(awsCfg)
	if instance == "" {
		instance = os.Getenv("AWS_SSM_INSTANCE_ID") // set by the SSM agent
	}
	if instance == "" {
		if instance, err = rescue.InstanceID(ctx, meta); err != nil {
			return fmt.Errorf("find this instance's id: %w", err)
		}
	}
	if !naming.ValidInstance(instance) {
		return fmt.Errorf("instance id %q is not valid", instance)
	}
	plan, err := layoutOf(cfg).ReadPlan(planID, instance)
	if err != nil {
		return err
	}
	if plan.Region != "" {
		awsCfg.Region = plan.Region
	}
	// The agent adds the plan's node, instance and id to its own lines.
	agent := &rescue.Agent{S3: newS3(awsCfg), Log: log, Root: cfg.Scratch.Root, Concurrency: cfg.Rescue.Concurrency}
	log = log.With(zap.String("node", plan.Node), zap.String("instance", instance), zap.String("plan", plan.ID))
	d := rescue.ResolveDeadlines(plan.Deadline, plan.Reclaim.Sub(plan.Deadline), time.Time{})
	if !plan.Presync {
		// A pre-sync has no deadline (the agent ignores it), so IMDS is only
		// asked when the instance is really going.
		d = rescue.ResolveDeadlines(plan.Deadline, plan.Reclaim.Sub(plan.Deadline), instanceAction(ctx, meta, log))
	}
	var failed []error
	for _, r := range agent.Rescue(ctx, plan, d) {
		if r.Err != nil {
			log.Error("job not rescued", zap.String("job", r.JobID), zap.Error(r.Err))
			failed = append(failed, r.Err)
		}
		// One plain line per job: what an operator reads in the SSM output.
		fmt.Println(r.Summary())
	}
	return errors.Join(failed...)
}

// instanceAction asks IMDS briefly: an unreachable IMDS must not eat the deadline.
func instanceAction(ctx context.Context, meta *imds.Client, log *zap.Logger) time.Time {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t, err := rescue.InstanceAction(ctx, meta)
	if err != nil {
		log.Info("IMDS spot/instance-action not available; using the plan's deadline", zap.Error(err))
	}
	return t
}

func newAgentRestoreCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a rescued job's scratch data before its next run (the Slurm Prolog)",
		Long: `Run by the Slurm Prolog as root on each node of a starting job. Creates the job's
scratch directory, and if the job was rescued, downloads the files its manifest
lists, verifies every checksum and renames them into place. Reads SLURM_JOB_ID,
SLURM_JOB_UID, SLURM_JOB_USER, SLURMD_NODENAME and SLURM_JOB_NODELIST.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			return runAgentRestore(cmd.Context(), cfg, log, prologEnv())
		},
	}
	withConfig(cmd, agentSettings...)
	return cmd
}

// jobEnv is what Slurm tells the Prolog and TaskProlog about the job.
type jobEnv struct {
	JobID, User, Node, NodeList, ArrayJobID, ArrayTaskID string
	UID, GID                                             int
	// Group is the heterogeneous job component this node runs (0 otherwise).
	Group int
	// Restarts is the restart count of the starting run.
	Restarts int
}

func prologEnv() jobEnv {
	uid, _ := strconv.Atoi(os.Getenv("SLURM_JOB_UID"))
	gid, err := strconv.Atoi(os.Getenv("SLURM_JOB_GID"))
	if err != nil {
		gid = -1
	}
	user := os.Getenv("SLURM_JOB_USER")
	if user == "" {
		user = os.Getenv("USER")
	}
	// A heterogeneous job is known by its leader's id everywhere but in the
	// Prolog's SLURM_JOB_ID, which is the component's: leader + offset.
	jobID, group := os.Getenv("SLURM_JOB_ID"), 0
	if het := os.Getenv("SLURM_HET_JOB_ID"); het != "" && het != jobID {
		comp, err1 := strconv.Atoi(jobID)
		leader, err2 := strconv.Atoi(het)
		if err1 == nil && err2 == nil && comp > leader {
			jobID, group = het, comp-leader
		}
	}
	restarts, _ := strconv.Atoi(firstEnv("SLURM_JOB_RESTART_COUNT", "SLURM_RESTART_COUNT")) // unset on a first run
	return jobEnv{
		JobID: jobID, Group: group, User: user, Restarts: restarts, Node: os.Getenv("SLURMD_NODENAME"),
		// The Prolog gets only SLURM_NODELIST.
		NodeList:   firstEnv("SLURM_JOB_NODELIST", "SLURM_NODELIST"),
		ArrayJobID: os.Getenv("SLURM_ARRAY_JOB_ID"), ArrayTaskID: os.Getenv("SLURM_ARRAY_TASK_ID"),
		UID: uid, GID: gid,
	}
}

// arrayIDs fills in the array ids when the scratch path template needs them
// and the environment did not say: Slurm 22.05 gives the Prolog no
// SLURM_ARRAY_* variables (the TaskProlog has them), so the Prolog asks
// slurmctld. Without them the Prolog would make and restore into another
// directory than the one the job and the controller use.
func (e *jobEnv) arrayIDs(ctx context.Context, cfg *config.Config) error {
	t := cfg.Scratch.PathTemplate
	if e.ArrayJobID != "" || !strings.Contains(t, "{array_job_id}") && !strings.Contains(t, "{array_task_id}") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	j, err := slurm.New(cfg.Slurm.BinDir, slurm.WithRetry(2, time.Second)).Job(ctx, e.JobID)
	if err != nil {
		return fmt.Errorf("the scratch path template needs the job's array ids, which Slurm does not give the Prolog: %w", err)
	}
	e.ArrayJobID, e.ArrayTaskID = j.ArrayJobID, j.ArrayTaskID
	return nil
}

func (e jobEnv) scratchVars() rescue.ScratchVars {
	return rescue.NewScratchVars(e.JobID, e.User, e.ArrayJobID, e.ArrayTaskID, e.Node)
}

func (e jobEnv) scratchDir(cfg *config.Config) (string, error) {
	return rescue.ScratchDir(cfg.Scratch.PathTemplate, e.scratchVars())
}

// scratch is the job's scratch directory on this node, made or opened by
// handle (see rescue.Scratch.Prepare): as root in the Prolog, which gives
// it to the job's user, and as that user in the TaskProlog.
func (e jobEnv) scratch(cfg *config.Config, log *zap.Logger) (*confine.Dir, error) {
	s, err := rescue.NewScratch(cfg.Scratch.Root, cfg.Scratch.PathTemplate, e.scratchVars())
	if err != nil {
		return nil, err
	}
	dir, err := s.Prepare(e.UID, e.GID, log)
	if err != nil {
		return nil, fmt.Errorf("scratch directory %s: %w", s.Path(), err)
	}
	return dir, nil
}

// layoutOf is where the cluster's rescued data and spool files are.
func layoutOf(cfg *config.Config) rescue.Layout {
	return rescue.Layout{Bucket: cfg.Bucket, Prefix: cfg.Prefix, Cluster: cfg.Cluster, Spool: cfg.SpoolDir}
}

func runAgentRestore(ctx context.Context, cfg *config.Config, log *zap.Logger, env jobEnv) error {
	if err := env.arrayIDs(ctx, cfg); err != nil {
		return err
	}
	dir, err := env.scratch(cfg, log.With(zap.String("job", env.JobID), zap.String("node", env.Node)))
	if err != nil {
		return err
	}
	defer dir.Close()
	if !cfg.Restore.Enabled {
		return nil
	}
	saved, err := layoutOf(cfg).ReadJobEnv(env.JobID)
	if errors.Is(err, rescue.ErrNoEnv) {
		return nil // never rescued: nothing to restore
	}
	if err != nil {
		return err
	}
	// Bounded below Slurm's PrologEpilogTimeout: a Prolog that runs past it
	// fails the node; one that gives up starts the job without its data.
	ctx, cancel := context.WithTimeout(ctx, cfg.Restore.Timeout.Std())
	defer cancel()
	_, err = restoreJob(ctx, cfg, log, env, dir, saved)
	return err
}

// Statuses of a restore besides the rescued data's own.
const (
	restoreNone = "none" // this node has nothing to get back
	restoreKept = "kept" // the scratch directory already held the job's data
)

// restoreJob brings a rescued job's data back into dir for the starting
// run and leaves a marker saying what it did, for the TaskProlog. The
// Prolog runs it as root; the TaskProlog as the job's user when slurmd
// skipped the Prolog (it does for a requeued job that comes back to a node
// within the credential lifetime).
func restoreJob(ctx context.Context, cfg *config.Config, log *zap.Logger, env jobEnv, dir *confine.Dir, saved *rescue.JobEnv) (*rescue.Restored, error) {
	// The agent adds the job and node to its own lines.
	agent := &rescue.Agent{Log: log, Root: cfg.Scratch.Root, Concurrency: cfg.Rescue.Concurrency}
	log = log.With(zap.String("job", env.JobID), zap.String("node", env.Node))
	res := &rescue.Restored{JobID: env.JobID, Run: env.Restarts, From: saved.Run, Dir: dir.Name(), Status: restoreNone}
	from := rankPeer(env, saved.Nodes)
	switch {
	case saved.Status == "failed":
		res.Status = "failed"
	case from == "":
		log.Info("nothing to restore on this node", zap.Any("rescued_nodes", saved.Nodes))
	default:
		awsCfg, err := awsConfig(ctx, cfg.Region)
		if err != nil {
			return nil, err
		}
		agent.S3 = newS3(awsCfg)
		got, err := agent.Restore(ctx, rescue.RestoreRequest{JobID: env.JobID, Run: saved.Run, Node: env.Node, From: from, URI: saved.URI, Dir: dir, UID: env.UID, GID: env.GID})
		switch {
		case errors.Is(err, rescue.ErrInUse):
			// A run of the job since the rescue used this node's directory:
			// what it left is at least as new as what was rescued.
			log.Info("the scratch directory already holds the job's data; the rescued run is not restored over it", zap.Error(err))
			res.Status = restoreKept
		case err != nil:
			log.Error("restore failed; the job starts without its rescued data", zap.Error(err))
			res.Status, res.Error = "failed", err.Error()
		default:
			res.Status, res.Files, res.Bytes = got.Status, got.Files, got.Bytes
		}
	}
	if err := agent.WriteMarker(env.Node, dir, res); err != nil {
		log.Warn("cannot leave the restore marker", zap.Error(err))
	}
	return res, nil
}

// rankPeer returns the rescued node whose data this node gets: the one at
// the same position in the node list of the same job component.
func rankPeer(env jobEnv, rescued [][]string) string {
	if env.Group >= len(rescued) {
		return ""
	}
	nodes, err := naming.ExpandHostlist(env.NodeList)
	if err != nil || len(nodes) == 0 {
		nodes = []string{env.Node}
	}
	rank := slices.Index(nodes, env.Node)
	if rank < 0 || rank >= len(rescued[env.Group]) {
		return ""
	}
	return rescued[env.Group][rank]
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
