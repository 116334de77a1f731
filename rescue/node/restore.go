package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/confine"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

// Restore is the Prolog's work, as root on each node of a starting job: it
// makes the job's scratch directory and, if the job was rescued, brings
// back the data of this node's peer (PeerOf), bounded by the restore
// timeout, and leaves a marker saying what it did for the TaskProlog.
func Restore(ctx context.Context, s Settings, log *zap.Logger, job Job) error {
	if err := job.arrayIDs(ctx, s.PathTemplate); err != nil {
		return err
	}
	dir, err := job.scratch(s, log.With(zap.String("job", job.ID), zap.String("node", job.Node)))
	if err != nil {
		return err
	}
	defer dir.Close()
	if !s.Restore {
		return nil
	}
	saved, err := s.Layout().ReadJobEnv(job.ID)
	if errors.Is(err, rescue.ErrNoEnv) {
		return nil // never rescued: nothing to restore
	}
	if err != nil {
		return err
	}
	// Bounded below Slurm's PrologEpilogTimeout: a Prolog that runs past it
	// fails the node; one that gives up starts the job without its data.
	ctx, cancel := context.WithTimeout(ctx, s.RestoreTimeout)
	defer cancel()
	_, err = restoreJob(ctx, s, log, job, dir, saved)
	return err
}

// TaskEnv is the TaskProlog's work, as the job's user before each task: it
// writes the export lines of the job's SPOT_RESCUE_* variables to w. A job
// resumed after a rescue sees the rescued run's URI, run and status; the
// status is the worse of what was rescued and what this node restored,
// and SPOT_RESCUE_DIR says where the data is when it is there.
func TaskEnv(ctx context.Context, w io.Writer, s Settings, job Job) error {
	dir, err := rescue.ScratchDir(s.PathTemplate, job.scratchVars())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "export %s=%s\n", rescue.VarScratch, dir)
	saved, err := s.Layout().ReadJobEnv(job.ID)
	if errors.Is(err, rescue.ErrNoEnv) {
		return nil
	}
	if err != nil {
		return err
	}
	status := saved.Status
	var m *rescue.Restored
	if s.Restore {
		m = restored(ctx, s, job, saved)
		if m.Status.HasData() {
			fmt.Fprintf(w, "export %s=%s\n", rescue.VarDir, m.Dir)
		}
		status = Worse(status, m.Status)
	}
	fmt.Fprintf(w, "export %s=%s\nexport %s=%s\nexport %s=%d\n", rescue.VarURI, saved.URI, rescue.VarStatus, status, rescue.VarRun, saved.Run)
	if job.batchStep() {
		tell(w, job, saved, m, status)
	}
	return nil
}

// batchStep reports whether the TaskProlog runs for the batch script, whose
// output is the job's: each task of each srun step runs it too, and would
// repeat the story in the same file.
func (j Job) batchStep() bool {
	return j.Step == "" || j.Step == "batch" || j.Step == batchScriptStep
}

// batchScriptStep is Slurm's step id of the batch script (SLURM_BATCH_SCRIPT).
const batchScriptStep = "4294967291"

// tell writes what happened to the job's own output through the
// TaskProlog's "print" lines: which run this resumes, from where and when,
// what was restored, and what is missing. m is nil when the node does not
// restore. Names from the job's tree are quoted: a newline in one must not
// end the line and start a line of the TaskProlog's protocol.
func tell(w io.Writer, job Job, saved *rescue.JobEnv, m *rescue.Restored, status rescue.Status) {
	say := func(format string, args ...any) { fmt.Fprintf(w, "print spotrescue: "+format+"\n", args...) }
	from := rescuedNodes(saved.Nodes)
	when := ""
	if !saved.Time.IsZero() {
		when = ", warned at " + saved.Time.UTC().Format(time.RFC3339)
	}
	say("job %s resumes from run %d, rescued from %s%s (%s)", job.ID, saved.Run, from, when, rescue.VarURI+"="+saved.URI)
	switch {
	case saved.Status == rescue.Failed:
		say("failed: nothing of run %d was saved; this run starts without it", saved.Run)
	case m == nil:
		say("%s; restore is off on this cluster: the job reads its data from %s", status, rescue.VarURI)
	case m.Status == rescue.Kept:
		say("not restored: %s already holds data of a later run, kept as it is", m.Dir)
	case m.Status == rescue.NothingHere:
		say("nothing restored on this node: the rescued run had no node at its place")
	case m.Status == rescue.Failed:
		say("failed: the rescued data could not be restored (%q); this run starts without it", m.Error)
	default:
		say("restored %d files (%s) into %s: %s", m.Files, rescue.HumanBytes(m.Bytes), m.Dir, status)
	}
	if m != nil && m.Skipped > 0 {
		quoted := make([]string, len(m.Missing))
		for i, p := range m.Missing {
			quoted[i] = strconv.Quote(p)
		}
		more := ""
		if n := m.Skipped - len(m.Missing); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		say("partial: %d entries were not saved: %s%s (all listed in the manifest under %s)", m.Skipped, strings.Join(quoted, ", "), more, rescue.VarURI)
	}
}

// rescuedNodes names the rescued run's nodes, the first few of a large job.
func rescuedNodes(groups [][]string) string {
	var all []string
	for _, g := range groups {
		all = append(all, g...)
	}
	const shown = 3
	if len(all) > shown {
		return fmt.Sprintf("%s and %d more nodes", strings.Join(all[:shown], ", "), len(all)-shown)
	}
	return strings.Join(all, ", ")
}

// restored is what the Prolog restored for this run, or, if it did not run
// (slurmd skips the Prolog of a requeued job that comes back to a node
// within the credential lifetime), what this TaskProlog restores itself,
// as the job's user, once for all the job's tasks on the node.
func restored(ctx context.Context, s Settings, job Job, saved *rescue.JobEnv) *rescue.Restored {
	failed := &rescue.Restored{Status: rescue.Failed}
	log := zap.NewNop()
	dir, err := job.scratch(s, log)
	if err != nil {
		return failed
	}
	defer dir.Close()
	agent := &rescue.Agent{Root: s.ScratchRoot}
	current := func() *rescue.Restored { return agent.ReadMarker(job.Node, dir, job.ID, job.Restarts, saved.Run) }
	if m := current(); m != nil {
		return m
	}
	unlock, err := rescue.LockScratch(dir, s.RestoreTimeout)
	if err != nil {
		return failed
	}
	defer unlock()
	if m := current(); m != nil {
		return m // another task of the job restored it meanwhile
	}
	ctx, cancel := context.WithTimeout(ctx, s.RestoreTimeout)
	defer cancel()
	m, err := restoreJob(ctx, s, log, job, dir, saved)
	if err != nil {
		return failed
	}
	return m
}

// restoreJob brings a rescued job's data back into dir for the starting
// run and leaves a marker saying what it did, for the TaskProlog. The
// Prolog runs it as root; the TaskProlog as the job's user.
func restoreJob(ctx context.Context, s Settings, log *zap.Logger, job Job, dir *confine.Dir, saved *rescue.JobEnv) (*rescue.Restored, error) {
	// The agent adds the job and node to its own lines.
	agent := &rescue.Agent{Log: log, Root: s.ScratchRoot, Concurrency: s.Concurrency}
	log = log.With(zap.String("job", job.ID), zap.String("node", job.Node))
	res := &rescue.Restored{JobID: job.ID, Run: job.Restarts, From: saved.Run, Dir: dir.Name(), Status: rescue.NothingHere}
	from := PeerOf(job, saved.Nodes)
	switch {
	case saved.Status == rescue.Failed:
		res.Status = rescue.Failed
	case from == "":
		log.Info("nothing to restore on this node", zap.Any("rescued_nodes", saved.Nodes))
	default:
		awsCfg, err := rescue.AWSConfig(ctx, s.Region)
		if err != nil {
			return nil, err
		}
		agent.S3 = rescue.NewS3(awsCfg)
		got, err := agent.Restore(ctx, rescue.RestoreRequest{JobID: job.ID, Run: saved.Run, Node: job.Node, From: from, URI: saved.URI, Dir: dir, UID: job.UID, GID: job.GID})
		switch {
		case errors.Is(err, rescue.ErrInUse):
			// A run of the job since the rescue used this node's directory:
			// what it left is at least as new as what was rescued.
			log.Info("the scratch directory already holds the job's data; the rescued run is not restored over it", zap.Error(err))
			res.Status = rescue.Kept
		case err != nil:
			log.Error("restore failed; the job starts without its rescued data", zap.Error(err))
			res.Status, res.Error = rescue.Failed, err.Error()
		default:
			res.Status, res.Files, res.Bytes, res.Skipped, res.Missing = got.Status, got.Files, got.Bytes, got.Skipped, got.Missing
			// Word for the head node, which counts the compute the rescue
			// saved once a run starts from it; losing it costs only that.
			word := rescue.Resumed{JobID: job.ID, Rescued: saved.Run, Run: job.Restarts, Node: job.Node, Status: got.Status, Files: got.Files, Bytes: got.Bytes, Time: time.Now().UTC()}
			if err := rescue.ReportResumed(ctx, agent.S3, saved.URI, from, word); err != nil {
				log.Warn("cannot report the restore; the compute it saves will not be counted", zap.Error(err))
			}
		}
	}
	if err := agent.WriteMarker(job.Node, dir, res); err != nil {
		log.Warn("cannot leave the restore marker", zap.Error(err))
	}
	return res, nil
}

// PeerOf returns the rescued node whose data job's node gets: the one at
// the same position in the node list of the same job component. A job
// requeued onto other nodes gets its data back node for node; "" when this
// node has no peer (the job now runs on more nodes than were rescued).
func PeerOf(job Job, rescued [][]string) string {
	if job.Group >= len(rescued) {
		return ""
	}
	nodes, err := naming.ExpandHostlist(job.NodeList)
	if err != nil || len(nodes) == 0 {
		nodes = []string{job.Node}
	}
	rank := slices.Index(nodes, job.Node)
	if rank < 0 || rank >= len(rescued[job.Group]) {
		return ""
	}
	return rescued[job.Group][rank]
}

// Worse returns the less complete of two statuses: what the next run is
// told when the rescue got one and the restore another. Kept and
// NothingHere say nothing of completeness and never make a status worse.
func Worse(a, b rescue.Status) rescue.Status {
	rank := map[rescue.Status]int{rescue.Complete: 0, rescue.Partial: 1, rescue.Failed: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}
