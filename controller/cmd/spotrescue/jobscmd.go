package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/rescue/naming"
	"github.com/spotrescue/spotrescue/state"
)

func newJobsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Query rescued jobs in DynamoDB",
	}
	cmd.AddCommand(newJobsListCommand(g), newJobsShowCommand(g))
	return cmd
}

type listFlags struct {
	since                          time.Duration
	phase, outcome, user, job, out string
	limit                          int
	token                          string
}

func newJobsListCommand(g *globals) *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rescued job runs, newest first",
		Long: `Lists the cluster's rescue records, newest first, a page at a time (a DynamoDB
Query on the ByCluster index, never a Scan). --cluster selects another cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, cfg, err := openStore(cmd, g)
			if err != nil {
				return err
			}
			return listJobs(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), s, cfg, f)
		},
	}
	withConfig(cmd, clientSettings...)
	fl := cmd.Flags()
	fl.DurationVar(&f.since, "since", 7*24*time.Hour, "only runs detected within this long ago")
	fl.StringVar(&f.phase, "phase", "", "only runs in this phase (Detected, Held, Dispatched, Rescued, Partial, Failed, Requeued, Done)")
	fl.StringVar(&f.outcome, "outcome", "", "only runs with this outcome (complete, partial, failed, skipped)")
	fl.StringVar(&f.user, "user", "", "only jobs of this user")
	fl.StringVar(&f.job, "job", "", "only this job id")
	fl.IntVar(&f.limit, "limit", 50, "runs per page")
	fl.StringVar(&f.token, "page-token", "", "continue after a previous page")
	fl.StringVarP(&f.out, "output", "o", "table", "table, json or yaml")
	return cmd
}

func newJobsShowCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "show <jobid>",
		Short: "Show every rescued run of one job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := naming.ParseJobID(args[0]); err != nil {
				return err
			}
			s, cfg, err := openStore(cmd, g)
			if err != nil {
				return err
			}
			runs, err := s.Runs(cmd.Context(), cfg.Cluster, args[0])
			if err != nil {
				return explain(err, "dynamodb:Query", cfg.StateTable)
			}
			if len(runs) == 0 {
				return fmt.Errorf("job %s has no rescue records in cluster %s: it was never interrupted, or its records are older than the table keeps", args[0], cfg.Cluster)
			}
			return render(cmd.OutOrStdout(), out, views(runs), "", showTable)
		},
	}
	withConfig(cmd, clientSettings...)
	cmd.Flags().StringVarP(&out, "output", "o", "table", "table, json or yaml")
	return cmd
}

func openStore(cmd *cobra.Command, g *globals) (*state.Store, *config.Config, error) {
	cfg, err := g.load(cmd, config.RoleClient)
	if err != nil {
		return nil, nil, err
	}
	awsCfg, err := rescue.AWSConfig(cmd.Context(), cfg.Region)
	if err != nil {
		return nil, nil, err
	}
	return state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable), cfg, nil
}

func listJobs(ctx context.Context, w, errw io.Writer, s *state.Store, cfg *config.Config, f listFlags) error {
	if f.job != "" {
		if _, err := naming.ParseJobID(f.job); err != nil {
			return fmt.Errorf("--job: %w", err)
		}
		runs, err := s.Runs(ctx, cfg.Cluster, f.job)
		if err != nil {
			return explain(err, "dynamodb:Query", cfg.StateTable)
		}
		return render(w, f.out, views(newestFirst(runs)), "", listTable)
	}
	if f.phase != "" && !validPhase(f.phase) {
		return fmt.Errorf("--phase %q: use one of %v", f.phase, state.Phases)
	}
	recs, next, err := s.List(ctx, state.ListOptions{
		Cluster: cfg.Cluster, Since: time.Now().Add(-f.since), Phase: state.Phase(f.phase),
		Outcome: state.Outcome(f.outcome), User: f.user, Limit: f.limit, PageToken: f.token,
	})
	if err != nil {
		return explain(err, "dynamodb:Query", cfg.StateTable)
	}
	if err := render(w, f.out, views(recs), next, listTable); err != nil {
		return err
	}
	if next != "" && f.out == "table" {
		fmt.Fprintf(errw, "more: --page-token %s\n", next)
	}
	return nil
}

func validPhase(p string) bool {
	for _, ph := range state.Phases {
		if string(ph) == p {
			return true
		}
	}
	return false
}

func newestFirst(rs []*state.Record) []*state.Record {
	out := make([]*state.Record, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = r
	}
	return out
}

// explain turns AccessDenied into a sentence naming the action, the
// table and the fix.
func explain(err error, action, table string) error {
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "AccessDeniedException" || api.ErrorCode() == "AccessDenied") {
		return fmt.Errorf("not allowed to %s on table %s (%s); fix: attach the spotrescue head-node IAM policy to this role, or run as a role that has it", action, table, api.ErrorMessage())
	}
	if errors.As(err, &api) && api.ErrorCode() == "ResourceNotFoundException" {
		return fmt.Errorf("table %s does not exist in this region; fix: set state_table (and region) to the spotrescue stack's StateTable output", table)
	}
	return err
}

// runView is one record as operators read it.
type runView struct {
	Job      string     `json:"job"`
	Display  string     `json:"display,omitempty"`
	Run      int        `json:"run"`
	Phase    string     `json:"phase"`
	Outcome  string     `json:"outcome,omitempty"`
	User     string     `json:"user,omitempty"`
	Name     string     `json:"name,omitempty"`
	Drill    bool       `json:"drill,omitempty"`
	Event    string     `json:"event"`
	Warned   string     `json:"warned"`
	Deadline string     `json:"deadline"`
	Times    timesView  `json:"times"`
	Nodes    []nodeView `json:"nodes"`
	URI      string     `json:"uri,omitempty"`
	Bytes    int64      `json:"bytes"`
	Files    int64      `json:"files"`
	Requests int64      `json:"s3_requests,omitempty"`
	Requeue  string     `json:"requeue,omitempty"`
	Fallback string     `json:"fallback_partition,omitempty"`
	Steer    *steerView `json:"steer,omitempty"`
	CPUs     int        `json:"cpus,omitempty"`
	GPUs     int        `json:"gpus,omitempty"`
	Started  string     `json:"run_started,omitempty"`
	Saved    *savedView `json:"saved,omitempty"`
	Errors   []string   `json:"errors,omitempty"`
}

// steerView is how the requeued job was kept off the reclaimed capacity.
type steerView struct {
	Avoided string `json:"avoided_nodes,omitempty"`
	Until   string `json:"until,omitempty"`
	Kept    string `json:"users_excluded_nodes,omitempty"`
	Skipped string `json:"not_steered,omitempty"`
	Lifted  string `json:"lifted,omitempty"`
}

// savedView is the compute a later run was spared.
type savedView struct {
	Run        int    `json:"resumed_run"`
	Node       string `json:"resumed_on,omitempty"`
	Resumed    string `json:"resumed,omitempty"`
	Seconds    int64  `json:"run_seconds"`
	CPUSeconds int64  `json:"cpu_seconds"`
	GPUSeconds int64  `json:"gpu_seconds,omitempty"`
	NotCounted string `json:"not_counted,omitempty"`
}

type timesView struct {
	Detected   string `json:"detected,omitempty"`
	Held       string `json:"held,omitempty"`
	Dispatched string `json:"dispatched,omitempty"`
	Finished   string `json:"finished,omitempty"`
	Requeued   string `json:"requeued,omitempty"`
	Done       string `json:"done,omitempty"`
}

type nodeView struct {
	Node        string `json:"node"`
	Instance    string `json:"instance"`
	Interrupted bool   `json:"interrupted"`
	Gone        bool   `json:"gone,omitempty"`
	Command     string `json:"ssm_command,omitempty"`
	Status      string `json:"ssm_status,omitempty"`
	Complete    bool   `json:"complete"`
	Bytes       int64  `json:"bytes"`
	Files       int64  `json:"files"`
	Problem     string `json:"problem,omitempty"`
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func views(rs []*state.Record) []runView {
	out := make([]runView, 0, len(rs))
	for _, r := range rs {
		v := runView{
			Job: r.JobID, Display: r.Display, Run: r.Run, Phase: string(r.Phase), Outcome: string(r.Outcome),
			User: r.User, Name: r.Name, Drill: r.Drill, Event: r.Event, Warned: ts(r.EventTime), Deadline: ts(r.Deadline),
			Times: timesView{ts(r.Times.Detected), ts(r.Times.Held), ts(r.Times.Dispatched), ts(r.Times.Finished), ts(r.Times.Requeued), ts(r.Times.Done)},
			URI:   r.URI, Bytes: r.Bytes, Files: r.Files, Requests: r.Requests, Requeue: r.Requeue, Fallback: r.Fallback, Errors: r.Errors,
			CPUs: r.CPUs, GPUs: r.GPUs, Started: ts(r.Started),
		}
		if st := r.Steer; st != nil {
			v.Steer = &steerView{st.Avoided, ts(st.Until), st.Kept, st.Skipped, st.Lifted}
		}
		if sv := r.Saved; sv != nil {
			v.Saved = &savedView{sv.Run, sv.Node, ts(sv.Resumed), sv.Seconds, sv.CPUSeconds, sv.GPUSeconds, sv.NotCounted}
		}
		for _, n := range r.Nodes {
			v.Nodes = append(v.Nodes, nodeView{n.Name, n.Instance, n.Interrupted, n.Gone, n.Command, n.Status, n.Complete, n.Bytes, n.Files, n.Problem})
		}
		out = append(out, v)
	}
	return out
}

// render writes runs as a table, JSON or YAML.
func render(w io.Writer, format string, runs []runView, next string, table func(io.Writer, []runView) error) error {
	doc := struct {
		Runs []runView `json:"runs"`
		Next string    `json:"next_page_token,omitempty"`
	}{runs, next}
	switch format {
	case "table":
		return table(w, runs)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	case "yaml":
		b, err := json.Marshal(doc)
		if err == nil {
			b, err = yaml.JSONToYAML(b)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("-o %q: use table, json or yaml", format)
}

func listTable(w io.Writer, runs []runView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tRUN\tPHASE\tOUTCOME\tUSER\tNODES\tWARNED\tTOOK\tSIZE\tFILES\tSAVED\tREQUEUE")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", jobName(r), r.Run, r.Phase, dash(r.Outcome), dash(r.User),
			interrupted(r.Nodes), shortTime(r.Warned), took(r), size(r.Bytes), r.Files, cpuHours(r.Saved), dash(r.Requeue))
	}
	return tw.Flush()
}

func showTable(w io.Writer, runs []runView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, r := range runs {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		drill := ""
		if r.Drill {
			drill = " (drill)"
		}
		fmt.Fprintf(tw, "job %s run %d%s\n", jobName(r), r.Run, drill)
		for _, kv := range [][2]string{
			{"phase", r.Phase}, {"outcome", dash(r.Outcome)}, {"user", dash(r.User)}, {"event", r.Event}, {"warned", r.Warned},
			{"deadline", r.Deadline}, {"uri", dash(r.URI)}, {"saved", fmt.Sprintf("%s in %d files", size(r.Bytes), r.Files)},
			{"cost", cost(r)}, {"requeue", dash(r.Requeue)}, {"fallback", dash(r.Fallback)}, {"steer", steerText(r.Steer)},
			{"compute saved", savedText(r)},
			{"detected", r.Times.Detected}, {"held", dash(r.Times.Held)}, {"dispatched", dash(r.Times.Dispatched)},
			{"finished", dash(r.Times.Finished)}, {"requeued", dash(r.Times.Requeued)}, {"done", dash(r.Times.Done)},
		} {
			fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
		}
		for _, n := range r.Nodes {
			fmt.Fprintf(tw, "  node\t%s %s interrupted=%t gone=%t ssm=%s complete=%t %s in %d files\n", n.Node, n.Instance, n.Interrupted, n.Gone, dash(n.Status), n.Complete, size(n.Bytes), n.Files)
			if n.Problem != "" {
				fmt.Fprintf(tw, "  \tnot counted: %s\n", n.Problem)
			}
		}
		for _, e := range r.Errors {
			fmt.Fprintf(tw, "  error\t%s\n", e)
		}
	}
	return tw.Flush()
}

// cost is what the upload took: bytes, S3 requests, seconds.
func cost(r runView) string {
	text := size(r.Bytes)
	if r.Requests > 0 {
		text += fmt.Sprintf(", %d S3 requests", r.Requests)
	}
	a, err1 := time.Parse(time.RFC3339Nano, r.Times.Dispatched)
	b, err2 := time.Parse(time.RFC3339Nano, r.Times.Finished)
	if err1 == nil && err2 == nil {
		text += ", upload " + b.Sub(a).Round(time.Second).String()
	}
	return text
}

func steerText(st *steerView) string {
	switch {
	case st == nil:
		return "-"
	case st.Skipped != "":
		return "not steered: " + st.Skipped
	}
	text := "kept off " + st.Avoided + " until " + st.Until
	if st.Kept != "" {
		text += " (the user's own exclusions " + st.Kept + " kept)"
	}
	if st.Lifted != "" {
		text += "; " + st.Lifted
	}
	return text
}

// savedText is the compute a later run was spared, or why none is counted.
func savedText(r runView) string {
	sv := r.Saved
	switch {
	case sv == nil && r.CPUs > 0:
		return fmt.Sprintf("- (counted when a later run starts from the data; the run had %d CPUs)", r.CPUs)
	case sv == nil:
		return "-"
	case sv.NotCounted != "":
		return "none counted: " + sv.NotCounted
	}
	text := fmt.Sprintf("%s CPU-hours (%s x %d CPUs)", hours(sv.CPUSeconds), time.Duration(sv.Seconds)*time.Second, r.CPUs)
	if sv.GPUSeconds > 0 {
		text += fmt.Sprintf(", %s GPU-hours", hours(sv.GPUSeconds))
	}
	return text + fmt.Sprintf("; run %d resumed on %s at %s", sv.Run, sv.Node, sv.Resumed)
}

func cpuHours(sv *savedView) string {
	if sv == nil || sv.NotCounted != "" {
		return "-"
	}
	return hours(sv.CPUSeconds) + " CPU-h"
}

func hours(seconds int64) string { return fmt.Sprintf("%.2f", float64(seconds)/3600) }

func jobName(r runView) string {
	if r.Display != "" && r.Display != r.Job {
		return r.Display + " (" + r.Job + ")"
	}
	return r.Job
}

func interrupted(nodes []nodeView) string {
	var out []string
	for _, n := range nodes {
		if n.Interrupted {
			out = append(out, n.Node)
		}
	}
	return dash(strings.Join(out, ","))
}

func took(r runView) string {
	a, err1 := time.Parse(time.RFC3339Nano, r.Times.Detected)
	b, err2 := time.Parse(time.RFC3339Nano, r.Times.Finished)
	if err1 != nil || err2 != nil {
		return "-"
	}
	return b.Sub(a).Round(10 * time.Millisecond).String()
}

func shortTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func size(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
