package slurm

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Jobs returns every job slurmctld knows, in any state, with one squeue
// call; the caller filters. It reads `squeue --json` (22.05 ignores the
// state filter and lists everything anyway) and falls back to squeue's text
// columns when the JSON is unavailable or does not parse.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs, err := c.jobsJSON(ctx, v)
	if err != nil && c.fallback(ctx, err) {
		c.log.Warn("squeue --json unusable, reading text columns", zap.Error(err))
		jobs, err = c.jobsText(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	c.remember(jobs)
	return jobs, nil
}

func (c *Client) jobsJSON(ctx context.Context, v Version) ([]Job, error) {
	out, err := c.run(ctx, "squeue", "--json", "--states=all")
	if err != nil {
		return nil, err
	}
	jobs, m, err := decodeJobs(out)
	if err != nil {
		c.unreadable("squeue --json", out, err)
		return nil, classify(fmt.Errorf("squeue --json: %w", err))
	}
	c.checkMeta("squeue", v, m)
	return jobs, nil
}

func (c *Client) jobsText(ctx context.Context) ([]Job, error) {
	out, err := c.run(ctx, "squeue", SqueueTextArgs()...)
	if err != nil {
		return nil, err
	}
	jobs, err := parseSqueue(string(out))
	c.unreadable("squeue -O", out, err)
	return jobs, err
}

// Job returns one job, ErrNoJob when slurmctld no longer knows it. id is
// the numeric job id, or an array task as "123_4".
//
// From 23.02 on it reads `scontrol --json show job <id>`. 22.05's scontrol
// has no JSON, and its squeue --json ignores -j and would list every job of
// the cluster for each lookup, so there it reads `scontrol show job <id>`:
// one RPC for one job, whose text output puts the free-text fields (name,
// admin comment) where they can be read back exactly. If that text does not
// parse, squeue --json is the fallback.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	if err := validTarget(id); err != nil {
		return nil, fmt.Errorf("read job: %w", err)
	}
	jobs, err := c.readJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	// scontrol shows every task of an array, or every component of a
	// heterogeneous job, for the id they share. Only the job asked for is
	// remembered: another record of a text read may have been forged by a
	// newline in a job's comment, and would then misaddress that job.
	for i := range jobs {
		if jobs[i].ID == id || jobs[i].Target() == id {
			c.remember(jobs[i : i+1])
			return &jobs[i], nil
		}
	}
	return nil, fmt.Errorf("read job %s: %w", id, ErrNoJob)
}

func (c *Client) readJob(ctx context.Context, id string) ([]Job, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v.jsonScontrol() {
		jobs, err := c.jobJSON(ctx, v, id)
		if err == nil || !c.fallback(ctx, err) {
			return jobs, err
		}
		c.log.Warn("scontrol --json show job unusable, reading text", zap.String("job", id), zap.Error(err))
		return c.jobText(ctx, id)
	}
	jobs, err := c.jobText(ctx, id)
	if err == nil || !c.fallback(ctx, err) {
		return jobs, err
	}
	c.log.Warn("scontrol show job text unusable, reading squeue --json", zap.String("job", id), zap.Error(err))
	return c.jobsJSON(ctx, v)
}

func (c *Client) jobJSON(ctx context.Context, v Version, id string) ([]Job, error) {
	out, err := c.run(ctx, "scontrol", "--json", "show", "job", id)
	if err != nil {
		return nil, err
	}
	jobs, m, err := decodeJobs(out)
	if err != nil {
		c.unreadable("scontrol --json show job", out, err)
		return nil, classify(fmt.Errorf("scontrol --json: %w", err))
	}
	c.checkMeta("scontrol", v, m)
	return jobs, nil
}

func (c *Client) jobText(ctx context.Context, id string) ([]Job, error) {
	out, err := c.run(ctx, "scontrol", "show", "job", id)
	if err != nil {
		return nil, err
	}
	jobs, err := parseJobsText(string(out))
	c.unreadable("scontrol show job", out, err)
	return jobs, err
}

// Node returns one node, ErrNoNode when slurmctld does not know it. From
// 23.02 on it reads `scontrol --json show node <name>`; on 22.05, whose
// sinfo --json ignores -n and lists every node, `scontrol show node <name>`
// with sinfo --json as the fallback.
func (c *Client) Node(ctx context.Context, name string) (*Node, error) {
	if err := validNode(name); err != nil {
		return nil, fmt.Errorf("read node: %w", err)
	}
	nodes, err := c.readNode(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read node %s: %w", name, err)
	}
	for i := range nodes {
		if nodes[i].Name == name {
			return &nodes[i], nil
		}
	}
	return nil, fmt.Errorf("read node %s: %w", name, ErrNoNode)
}

func (c *Client) readNode(ctx context.Context, name string) ([]Node, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v.jsonScontrol() {
		nodes, err := c.nodesJSON(ctx, v, "scontrol", "--json", "show", "node", name)
		if err == nil || !c.fallback(ctx, err) {
			return nodes, err
		}
		c.log.Warn("scontrol --json show node unusable, reading text", zap.String("node", name), zap.Error(err))
		return c.nodeText(ctx, name)
	}
	nodes, err := c.nodeText(ctx, name)
	if err == nil || !c.fallback(ctx, err) {
		return nodes, err
	}
	c.log.Warn("scontrol show node text unusable, reading sinfo --json", zap.String("node", name), zap.Error(err))
	return c.nodesJSON(ctx, v, "sinfo", "--json")
}

func (c *Client) nodesJSON(ctx context.Context, v Version, name string, args ...string) ([]Node, error) {
	out, err := c.run(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	nodes, m, err := decodeNodes(out)
	if err != nil {
		c.unreadable(name+" --json", out, err)
		return nil, classify(fmt.Errorf("%s --json: %w", name, err))
	}
	c.checkMeta(name, v, m)
	return nodes, nil
}

// nodeText reads `scontrol show node [name]`; without a name, every node.
func (c *Client) nodeText(ctx context.Context, name ...string) ([]Node, error) {
	out, err := c.run(ctx, "scontrol", append([]string{"show", "node"}, name...)...)
	if err != nil {
		return nil, err
	}
	nodes, err := parseNodesText(string(out))
	c.unreadable("scontrol show node", out, err)
	return nodes, err
}

// Nodes returns every node slurmctld knows (FUTURE nodes aside, which
// scontrol and sinfo hide), with one command: from 23.02 on `scontrol
// --json show node`, on 22.05, whose scontrol has no JSON, `sinfo --json`,
// which lists every node once with its partitions. When that JSON is
// unavailable or does not parse, it reads `scontrol show node` text.
//
// A listing that names a node twice is refused: slurmctld prints each node
// once, so the second record is broken output, or in the text one forged by
// a newline in a node's reason, and either could speak for the real node.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	nodes, err := c.allNodesJSON(ctx, v)
	if err != nil && c.fallback(ctx, err) {
		c.log.Warn("node JSON unusable, reading scontrol show node text", zap.Error(err))
		nodes, err = c.allNodesText(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

func (c *Client) allNodesJSON(ctx context.Context, v Version) ([]Node, error) {
	var nodes []Node
	var err error
	if v.jsonScontrol() {
		nodes, err = c.nodesJSON(ctx, v, "scontrol", "--json", "show", "node")
	} else {
		nodes, err = c.nodesJSON(ctx, v, "sinfo", "--json")
	}
	if err != nil {
		return nil, err
	}
	if err := uniqueNodes(nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

func (c *Client) allNodesText(ctx context.Context) ([]Node, error) {
	nodes, err := c.nodeText(ctx)
	if err != nil {
		return nil, err
	}
	if err := uniqueNodes(nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// uniqueNodes refuses a listing that names a node twice.
func uniqueNodes(nodes []Node) error {
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if seen[n.Name] {
			return fmt.Errorf("node %s listed twice: the output is broken or was tampered with", n.Name)
		}
		seen[n.Name] = true
	}
	return nil
}

// fallback reports whether another way of reading is worth a try after
// err: not when slurmctld answered definitively (no such job) or could not
// be reached at all, nor when the caller gave up.
func (c *Client) fallback(ctx context.Context, err error) bool {
	if ctx.Err() != nil || sentinelFor(err.Error()) != nil {
		return false
	}
	var te *timeoutError
	return !errors.As(err, &te) && !isTransient(err.Error())
}

// checkMeta compares the JSON's own account of its format with the Slurm
// version. The decoders accept every known encoding, so a mismatch (a
// client and a slurmctld of different releases, a backported data_parser)
// is logged, not fatal.
func (c *Client) checkMeta(cmd string, v Version, m meta) {
	p := m.parser()
	want := expectedParser(v)
	if p == 0 || want == 0 || p == want {
		return
	}
	mv, _ := m.version()
	c.log.Info("unexpected Slurm JSON format", zap.String("cmd", cmd), zap.Stringer("slurm", v),
		zap.Stringer("json_slurm", mv), zap.Int("data_parser", p), zap.Int("expected", want))
}

// expectedParser is the data_parser version a Slurm release prints by
// default: v0.0.38 for 22.05, v0.0.39 for 23.02, v0.0.40 for 23.11,
// v0.0.41 for 24.05 and v0.0.42 for 24.11.
func expectedParser(v Version) int {
	switch {
	case v.AtLeast(24, 11):
		return 42
	case v.AtLeast(24, 5):
		return 41
	case v.AtLeast(23, 11):
		return 40
	case v.AtLeast(23, 2):
		return 39
	case v.AtLeast(22, 5):
		return 38
	}
	return 0
}

// unreadable logs, at debug level, the raw output a reader could not parse,
// so an operator can see what this Slurm printed.
func (c *Client) unreadable(what string, out []byte, err error) {
	if err == nil {
		return
	}
	const limit = 8 << 10
	raw := out
	if len(raw) > limit {
		raw = raw[:limit]
	}
	c.log.Debug("slurm output not understood", zap.String("cmd", what), zap.Error(err), zap.Int("bytes", len(out)), zap.ByteString("raw", raw))
}
