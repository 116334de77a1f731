package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/spf13/cobra"

	"github.com/spotrescue/spotrescue/controller"
	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/controller/slurm"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

// inspection is what a warning for one node would do right now.
type inspection struct {
	Node          string          `json:"node"`
	Instance      string          `json:"instance,omitempty"`
	InstanceError string          `json:"instance_error,omitempty"`
	State         string          `json:"state"`
	Drained       bool            `json:"drained"`
	Reason        string          `json:"reason,omitempty"`
	Slurm         string          `json:"slurm_version"`
	Rescue        []inspectedJob  `json:"rescue"`
	Skip          []inspectedSkip `json:"skip"`
}

type inspectedJob struct {
	Job     string          `json:"job"`
	Display string          `json:"display"`
	User    string          `json:"user"`
	State   string          `json:"state"`
	Run     int             `json:"run"`
	Nodes   []inspectedNode `json:"nodes"`
	// Requeue says whether the rescued job would then be requeued; Why
	// says why not, or what hold it keeps.
	Requeue bool   `json:"requeue"`
	Why     string `json:"requeue_note,omitempty"`
}

type inspectedNode struct {
	Node    string `json:"node"`
	Scratch string `json:"scratch"`
	Prefix  string `json:"s3_prefix"`
}

type inspectedSkip struct {
	Job    string `json:"job"`
	User   string `json:"user"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

func newInspectCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inspect node <name> | inspect instance <id>",
		Short: "Show what an interruption of a node would do right now",
		Long: `Shows the node, its instance, its Slurm state, the jobs a Spot interruption
warning would rescue (with their scratch directories and S3 prefixes) and the
jobs it would leave alone, with the reason. It changes nothing.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: use table or json", output)
			}
			cfg, err := g.load(cmd, config.RoleAgent)
			if err != nil {
				return err
			}
			in, err := inspect(cmd.Context(), cfg, args[0], args[1])
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			return in.table(cmd.OutOrStdout())
		},
	}
	withConfig(cmd, inspectSettings...)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func inspect(ctx context.Context, cfg *config.Config, kind, name string) (*inspection, error) {
	nodes := nodeTable(ctx, cfg)
	in := &inspection{Rescue: []inspectedJob{}, Skip: []inspectedSkip{}}
	switch kind {
	case "node":
		in.Node = name
		in.InstanceError = "not looked up: no region or node table configured"
		if nodes != nil {
			inst, err := nodes.InstanceOf(ctx, name)
			in.Instance, in.InstanceError = inst, errText(err)
		}
	case "instance":
		if !naming.ValidInstance(name) {
			return nil, fmt.Errorf("%q is not an EC2 instance id", name)
		}
		if nodes == nil {
			return nil, fmt.Errorf("instance %s: the node table is not configured", name)
		}
		node, err := nodes.NodeOf(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", name, err)
		}
		in.Node, in.Instance = node, name
	default:
		return nil, fmt.Errorf("inspect %q: use node or instance", kind)
	}
	sc := slurm.New(cfg.Slurm.BinDir)
	if err := in.fromSlurm(ctx, sc, cfg); err != nil {
		return nil, err
	}
	return in, nil
}

// nodeTable is nil when the cluster has no AWS configuration (no region):
// inspect still shows what Slurm says.
func nodeTable(ctx context.Context, cfg *config.Config) *controller.NodeTable {
	if cfg.Region == "" || cfg.NodeTable == "" {
		return nil
	}
	awsCfg, err := rescue.AWSConfig(ctx, cfg.Region)
	if err != nil {
		return nil
	}
	return &controller.NodeTable{DB: dynamodb.NewFromConfig(awsCfg), Table: cfg.NodeTable}
}

func (in *inspection) fromSlurm(ctx context.Context, sc *slurm.Client, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := sc.Version(ctx)
	if err != nil {
		return err
	}
	in.Slurm = v.String()
	node, err := sc.Node(ctx, in.Node)
	if err != nil {
		return err
	}
	in.State, in.Drained, in.Reason = strings.Join(append([]string{node.State}, node.Flags...), "+"), node.Drained(), node.Reason
	jobs, err := sc.Jobs(ctx)
	if err != nil {
		return err
	}
	policy := controller.Policy{States: cfg.Rescue.States}
	units, skipped := controller.Decide(policy, jobs, in.Node)
	layout := rescue.Layout{Bucket: cfg.Bucket, Prefix: cfg.Prefix, Cluster: cfg.Cluster}
	bucket := cfg.Bucket
	if bucket == "" {
		bucket = "<bucket>"
	}
	for _, u := range units {
		j := inspectedJob{Job: u.Job.ID, Display: u.Job.Display, User: u.Job.User, State: u.Job.State, Run: u.Job.Restarts}
		j.Requeue, j.Why = controller.Requeueable(u.Job)
		switch {
		case u.Job.HeldByUser():
			j.Why = "its user's hold is kept"
		case u.Job.HeldByAdmin() || u.Job.HeldBySlurm():
			j.Why = "left held: not only ours to lift (" + u.Job.Reason + ")"
		}
		for _, n := range u.Nodes {
			dir, err := controller.ScratchDir(cfg.Scratch.PathTemplate, u.Job, n.Name)
			if err != nil {
				dir = "cannot be rescued: " + err.Error()
			}
			j.Nodes = append(j.Nodes, inspectedNode{Node: n.Name, Scratch: dir, Prefix: "s3://" + bucket + "/" + layout.NodePrefix(u.Job.ID, u.Job.Restarts, n.Name)})
		}
		in.Rescue = append(in.Rescue, j)
	}
	for _, s := range skipped {
		in.Skip = append(in.Skip, inspectedSkip{Job: s.Job.Display, User: s.Job.User, State: s.Job.State, Reason: s.Reason})
	}
	return nil
}

func (in *inspection) table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	inst := in.Instance
	if in.InstanceError != "" {
		inst = "unknown (" + in.InstanceError + ")"
	}
	fmt.Fprintf(tw, "node\t%s\ninstance\t%s\nstate\t%s\ndrained\t%t\nslurm\t%s\n\n", in.Node, inst, in.State, in.Drained, in.Slurm)
	fmt.Fprintln(tw, "RESCUE\tREQUEUE\tJOB\tUSER\tSTATE\tRUN\tNODE\tSCRATCH\tS3 PREFIX")
	for _, j := range in.Rescue {
		requeue := "yes"
		switch {
		case !j.Requeue:
			requeue = "no: " + j.Why
		case j.Why != "":
			requeue = "yes, " + j.Why
		}
		for _, n := range j.Nodes {
			fmt.Fprintf(tw, "yes\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", requeue, j.Display, j.User, j.State, j.Run, n.Node, n.Scratch, n.Prefix)
		}
	}
	for _, s := range in.Skip {
		fmt.Fprintf(tw, "no\t\t%s\t%s\t%s\t\t\t%s\t\n", s.Job, s.User, s.State, s.Reason)
	}
	return tw.Flush()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
