package slurm

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// maxListLen bounds the comma-joined id or node list of one command, well
// under any argv limit and short enough for slurmctld to log.
const maxListLen = 3500

// Hold places an administrator hold on jobs with one `scontrol hold
// id1,id2,...` (more when the list is long). A held job that is running
// keeps running, with priority 0, and stays held when requeued.
//
// An administrator hold replaces a user's hold (the reason becomes
// JobHeldAdmin), and Release lifts both: note Job.HeldByUser before holding
// and call UserHold after releasing to give the user's hold back.
//
// When some jobs fail (one finished meanwhile, say), the others are still
// held; the error lists the failures, which JobErrors returns.
func (c *Client) Hold(ctx context.Context, ids ...string) error {
	return c.multiJob(ctx, "hold", ids)
}

// Release lifts every hold, the user's too, with `scontrol release`. Slurm
// also recomputes the job's priority, so a job can lose its place in the
// queue (with the basic priority plugin it goes behind newer jobs).
func (c *Client) Release(ctx context.Context, ids ...string) error {
	return c.multiJob(ctx, "release", ids)
}

// UserHold places a user hold (`scontrol uhold`), to give back a hold the
// user had before Hold and Release replaced it.
func (c *Client) UserHold(ctx context.Context, ids ...string) error {
	return c.multiJob(ctx, "uhold", ids)
}

// multiJob runs `scontrol <op> <targets>` in chunks and gathers the
// failures of single jobs as *JobError.
func (c *Client) multiJob(ctx context.Context, op string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	targets, byTarget, err := c.resolve(ctx, ids)
	if err != nil {
		return fmt.Errorf("%s jobs: %w", op, err)
	}
	var errs []error
	for _, chunk := range chunks(targets, maxListLen) {
		if err := c.runChunk(ctx, op, chunk, byTarget); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s jobs: %w", op, errors.Join(errs...))
	}
	return nil
}

func (c *Client) runChunk(ctx context.Context, op string, chunk []string, byTarget map[string]string) error {
	_, err := c.run(ctx, "scontrol", op, strings.Join(chunk, ","))
	if err == nil {
		return nil
	}
	var ce *CommandError
	if errors.As(err, &ce) {
		if jes, ok := jobErrors(ce.Stderr); ok {
			errs := make([]error, len(jes))
			for i, je := range jes {
				if id, ok := byTarget[je.ID]; ok {
					je.ID = id
				}
				errs[i] = je
			}
			return errors.Join(errs...)
		}
	}
	// Nothing says which jobs failed: count them all as failed.
	errs := make([]error, len(chunk))
	for i, t := range chunk {
		errs[i] = &JobError{ID: byTarget[t], Msg: err.Error(), Err: err}
	}
	return errors.Join(errs...)
}

// chunks splits items into runs whose comma-joined length stays within max.
func chunks(items []string, max int) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, it := range items {
		if len(cur) > 0 && n+1+len(it) > max {
			out = append(out, cur)
			cur, n = nil, 0
		}
		if len(cur) > 0 {
			n++
		}
		cur = append(cur, it)
		n += len(it)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Requeue puts a job back in the queue with `scontrol requeue`. A held job
// stays held. Slurm's definitive refusals come back as ErrAlreadyPending
// (already pending, or still on its way back), ErrNotRequeueable
// (--no-requeue, or not a batch job), ErrNotHetLeader (requeue the
// leader, Job.HetJobID, instead) and ErrNoJob.
//
// A COMPLETED job that slurmctld still remembers is requeued too. And when
// an earlier attempt failed on a timeout, ErrAlreadyPending may mean that
// attempt went through.
func (c *Client) Requeue(ctx context.Context, id string) error {
	t, err := c.target(ctx, id)
	if err != nil {
		return fmt.Errorf("requeue job %s: %w", id, err)
	}
	if _, err := c.run(ctx, "scontrol", "requeue", t); err != nil {
		return fmt.Errorf("requeue job %s: %w", id, err)
	}
	return nil
}

// Drain sets nodes to DRAIN with a reason (`scontrol update nodename=a,b
// state=drain reason=...`): running jobs go on, no new ones start. It never
// sets DOWN, which would kill the jobs. When a list names a node slurmctld
// does not know, the nodes before it in the list may be drained already:
// Slurm applies the update node by node.
func (c *Client) Drain(ctx context.Context, nodes []string, reason string) error {
	if len(nodes) == 0 {
		return nil
	}
	if err := validText("drain reason", reason, maxReasonLen, false); err != nil {
		return fmt.Errorf("drain nodes: %w", err)
	}
	seen := map[string]bool{}
	var list []string
	for _, n := range nodes {
		if err := validNode(n); err != nil {
			return fmt.Errorf("drain nodes: %w", err)
		}
		if !seen[n] {
			seen[n] = true
			list = append(list, n)
		}
	}
	for _, chunk := range chunks(list, maxListLen) {
		_, err := c.run(ctx, "scontrol", "update", "nodename="+strings.Join(chunk, ","),
			"state=drain", "reason="+reason)
		if err != nil {
			return fmt.Errorf("drain nodes %s: %w", strings.Join(chunk, ","), err)
		}
	}
	return nil
}

// Signal sends a signal to every step of a job, the batch shell included
// (`scancel --signal=<SIG> --full <id>`). signal is a name (USR1, SIGUSR1,
// TERM) or a number from 1 to 64.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	sig, err := normalizeSignal(signal)
	if err != nil {
		return fmt.Errorf("signal job %s: %w", id, err)
	}
	t, err := c.target(ctx, id)
	if err != nil {
		return fmt.Errorf("signal job %s: %w", id, err)
	}
	if _, err := c.run(ctx, "scancel", "--signal="+sig, "--full", t); err != nil {
		return fmt.Errorf("signal job %s with %s: %w", id, sig, err)
	}
	return nil
}

// SetAdminComment replaces the job's admin comment. The comment travels as
// one argv element and may hold spaces, '=' and any printable Unicode;
// control characters and leading or trailing white space are refused,
// since scontrol's text output could not give them back.
func (c *Client) SetAdminComment(ctx context.Context, id, comment string) error {
	if err := validText("admin comment", comment, maxCommentLen, true); err != nil {
		return fmt.Errorf("set admin comment of job %s: %w", id, err)
	}
	if err := c.update(ctx, id, "admincomment="+comment); err != nil {
		return fmt.Errorf("set admin comment of job %s: %w", id, err)
	}
	return nil
}

// SetPartition moves a job to another partition; Slurm allows it while the
// job is pending, and answers ErrNotPending after.
func (c *Client) SetPartition(ctx context.Context, id, partition string) error {
	if err := validPartition(partition); err != nil {
		return fmt.Errorf("set partition of job %s: %w", id, err)
	}
	if err := c.update(ctx, id, "partition="+partition); err != nil {
		return fmt.Errorf("set partition of job %s to %s: %w", id, partition, err)
	}
	return nil
}

// SetExcludedNodes replaces the job's excluded node list with `scontrol
// update jobid=<id> ExcNodeList=<hostlist>`, so that Slurm does not start
// it on those nodes; an empty hostlist clears the list. hostlist is node
// names or a Slurm hostlist ("queue1-dy-c5xlarge-[1-3],queue2-st-m5-1").
// It replaces the list, not adds to it: to keep what was excluded before,
// join Job.ExcNodes to it.
//
// Slurm allows the change only while the job is pending: a job that has
// started gives ErrNotPending (unless the list is the one it already has),
// and a node slurmctld does not know gives ErrNoNode.
func (c *Client) SetExcludedNodes(ctx context.Context, id, hostlist string) error {
	if err := validHostlist("excluded node list", hostlist); err != nil {
		return fmt.Errorf("set excluded nodes of job %s: %w", id, err)
	}
	if err := c.update(ctx, id, "ExcNodeList="+hostlist); err != nil {
		return fmt.Errorf("set excluded nodes of job %s to %q: %w", id, hostlist, err)
	}
	return nil
}

func (c *Client) update(ctx context.Context, id, assignment string) error {
	t, err := c.target(ctx, id)
	if err != nil {
		return err
	}
	_, err = c.run(ctx, "scontrol", "update", "jobid="+t, assignment)
	return err
}
