package slurm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The types below decode every encoding a field has had from data_parser
// v0.0.38 (22.05) to v0.0.41+ (24.x): a field that was a plain number
// became {"set","infinite","number"}, "requeue" went from bool to integer
// and back, states went from strings to arrays. One tolerant decoder per
// field means a patch release that changed an encoding still reads right.

// number is an integer that may be unset (null, or NO_VAL/INFINITE).
type number struct {
	v   int64
	set bool
}

// Slurm's NO_VAL and INFINITE markers, which some versions print as plain
// numbers.
var noValues = map[uint64]bool{0xfffffffe: true, 0xffffffff: true, math.MaxUint64 - 1: true, math.MaxUint64: true}

func (n *number) UnmarshalJSON(b []byte) error {
	*n = number{}
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '{':
		return n.fromObject(b)
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return n.parse(strings.TrimSpace(s))
	case string(b) == "true":
		n.v, n.set = 1, true
		return nil
	case string(b) == "false":
		n.v, n.set = 0, true
		return nil
	}
	return n.parse(string(b))
}

// fromObject reads {"set": true, "infinite": false, "number": 5}.
func (n *number) fromObject(b []byte) error {
	var o struct {
		Set      *bool           `json:"set"`
		Infinite bool            `json:"infinite"`
		Number   json.RawMessage `json:"number"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	if o.Infinite || (o.Set != nil && !*o.Set) || o.Number == nil {
		return nil
	}
	return n.UnmarshalJSON(o.Number)
}

func (n *number) parse(s string) error {
	if s == "" {
		return nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if !noValues[uint64(v)] {
			n.v, n.set = v, true
		}
		return nil
	}
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		n.set = !noValues[v] && v <= math.MaxInt64
		if n.set {
			n.v = int64(v)
		}
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/2 {
		return fmt.Errorf("not a number: %q", truncate(s, 40))
	}
	n.v, n.set = int64(f), true
	return nil
}

// uint returns the value for an id, 0 when unset or negative.
func (n number) uint() uint64 {
	if !n.set || n.v < 0 {
		return 0
	}
	return uint64(n.v)
}

// count returns the value for a count (nodes, CPUs): 0 when unset or
// negative, at most maxCount.
func (n number) count() int { return int(min(n.uint(), maxCount)) }

// unixTime is a UNIX timestamp; 0 and unset are the zero time.
func (n number) unixTime() time.Time {
	if !n.set || n.v <= 0 {
		return time.Time{}
	}
	return time.Unix(n.v, 0)
}

// flexBool is a bool, or 0/1, or "true"/"false"; null is false.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var n number
	switch s := string(bytes.TrimSpace(b)); {
	case s == "true" || s == `"true"` || s == `"yes"`:
		*f = true
	case s == "false" || s == `"false"` || s == `"no"` || s == "null":
		*f = false
	default:
		if err := n.UnmarshalJSON(b); err != nil {
			return fmt.Errorf("not a boolean: %s", truncate(s, 40))
		}
		*f = flexBool(n.set && n.v != 0)
	}
	return nil
}

// text is a string that tolerates null, numbers and booleans.
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*t = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = text(s)
	case b[0] == '{' || b[0] == '[':
		return fmt.Errorf("expected a string, got %s", truncate(string(b), 40))
	default:
		*t = text(b)
	}
	return nil
}

// names is one name or an array of names (job and node states).
type names []string

func (n *names) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var list []text
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
		*n = nil
		for _, s := range list {
			*n = append(*n, string(s))
		}
		return nil
	}
	var s text
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*n = nil
	if s != "" {
		*n = names{string(s)}
	}
	return nil
}

// meta is the "meta" block: 22.05 and 23.02 spell "Slurm" where later
// versions spell "slurm" (encoding/json matches both), and the version
// parts are numbers until 23.11 and strings after.
type meta struct {
	Plugin  plugin `json:"plugin"`
	Plugins plugin `json:"plugins"`
	Slurm   struct {
		Version struct{ Major, Minor, Micro number } `json:"version"`
		Release text                                 `json:"release"`
	} `json:"slurm"`
}

type plugin struct {
	Type       text `json:"type"`
	DataParser text `json:"data_parser"`
}

var parserVersionPattern = regexp.MustCompile(`v0\.0\.(\d+)`)

// parser returns the data_parser version (38 for "openapi/v0.0.38", 40 for
// "data_parser/v0.0.40"), or 0 when the meta block does not say.
func (m meta) parser() int {
	for _, s := range []text{m.Plugin.DataParser, m.Plugins.DataParser, m.Plugin.Type, m.Plugins.Type} {
		if g := parserVersionPattern.FindStringSubmatch(string(s)); g != nil {
			v, _ := strconv.Atoi(g[1])
			return v
		}
	}
	return 0
}

// version returns the Slurm release the meta block names, if any.
func (m meta) version() (Version, bool) {
	v := m.Slurm.Version
	if !v.Major.set {
		return Version{}, false
	}
	return Version{int(v.Major.v), int(v.Minor.v), int(v.Micro.v)}, true
}

// jsonError is an entry of "errors": {"error": ..., "errno": ...} in
// v0.0.38, {"description", "error_number", "error", "source"} later.
type jsonError struct {
	Error       text `json:"error"`
	Description text `json:"description"`
}

func (e jsonError) String() string {
	if e.Description != "" && e.Error != "" {
		return string(e.Error) + ": " + string(e.Description)
	}
	return string(e.Error + e.Description)
}

// document is what squeue/sinfo/scontrol --json print.
type document struct {
	Meta   meta        `json:"meta"`
	Errors []jsonError `json:"errors"`
	Jobs   *[]jsonJob  `json:"jobs"`
	Nodes  *[]jsonNode `json:"nodes"`
}

// errorText joins the document's errors.
func (d *document) errorText() string {
	var parts []string
	for _, e := range d.Errors {
		if s := e.String(); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func decodeDocument(data []byte) (*document, error) {
	var d document
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	return &d, nil
}

// jsonJob holds the fields of a job record that spotrescue reads; their
// names are the same from v0.0.38 to v0.0.41.
type jsonJob struct {
	JobID        number   `json:"job_id"`
	ArrayJobID   number   `json:"array_job_id"`
	ArrayTaskID  number   `json:"array_task_id"`
	ArrayTaskStr text     `json:"array_task_string"`
	HetJobID     number   `json:"het_job_id"`
	HetJobOffset number   `json:"het_job_offset"`
	Name         text     `json:"name"`
	UserName     text     `json:"user_name"`
	UserID       number   `json:"user_id"`
	JobState     names    `json:"job_state"`
	StateReason  text     `json:"state_reason"`
	Nodes        text     `json:"nodes"`
	BatchHost    text     `json:"batch_host"`
	BatchFlag    flexBool `json:"batch_flag"`
	Requeue      flexBool `json:"requeue"`
	RestartCnt   number   `json:"restart_cnt"`
	Priority     number   `json:"priority"`
	AdminComment text     `json:"admin_comment"`
	Partition    text     `json:"partition"`
	Account      text     `json:"account"`
	SubmitTime   number   `json:"submit_time"`
	StartTime    number   `json:"start_time"`
	ExcNodes     text     `json:"excluded_nodes"`
	ReqNodes     text     `json:"required_nodes"`
	NodeCount    number   `json:"node_count"`
	CPUs         number   `json:"cpus"`
	TRESAlloc    text     `json:"tres_alloc_str"`
	TRESReq      text     `json:"tres_req_str"`
}

func (r *jsonJob) job() (Job, error) {
	if r.JobID.uint() == 0 {
		return Job{}, errors.New("job without job_id")
	}
	j := Job{
		Name: string(r.Name), User: string(r.UserName), UID: int(r.UserID.v),
		Reason: string(r.StateReason), BatchHost: string(r.BatchHost),
		Batch: bool(r.BatchFlag), Requeue: bool(r.Requeue), Restarts: int(r.RestartCnt.v),
		Priority: r.Priority.v, AdminComment: string(r.AdminComment),
		Partition: string(r.Partition), Account: string(r.Account),
		SubmitTime: r.SubmitTime.unixTime(), StartTime: r.StartTime.unixTime(),
		ExcNodes: nullText(string(r.ExcNodes)), ReqNodes: nullText(string(r.ReqNodes)), NodeCount: r.NodeCount.count(), CPUs: r.CPUs.count(),
	}
	// A job that holds nothing (pending, or requeued) has no allocated
	// TRES: what it asked for is what it will need.
	tres := nullText(string(r.TRESAlloc))
	if tres == "" {
		tres = string(r.TRESReq)
	}
	j.GPUs = gpusOf(tres)
	j.setIDs(ids{
		jobID: r.JobID.uint(), arrayJobID: r.ArrayJobID.uint(),
		arrayTaskID: r.ArrayTaskID.uint(), hasTask: r.ArrayTaskID.set,
		taskStr:  string(r.ArrayTaskStr),
		hetJobID: r.HetJobID.uint(), hetOffset: r.HetJobOffset.uint(),
	})
	j.setState(r.JobState)
	if err := j.setNodes(string(r.Nodes)); err != nil {
		return Job{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return j, nil
}

// jsonNode: v0.0.38 (22.05 sinfo) has a lower-case "state" string and
// "state_flags"; v0.0.39+ (scontrol show node) an upper-case "state" array.
// "partitions" is an array in every version; names also takes a
// comma-joined string, should a release print one.
type jsonNode struct {
	Name       text   `json:"name"`
	State      names  `json:"state"`
	StateFlags names  `json:"state_flags"`
	Reason     text   `json:"reason"`
	Address    text   `json:"address"`
	Partitions names  `json:"partitions"`
	CPUs       number `json:"cpus"`
}

func (r *jsonNode) node() Node {
	n := Node{Name: string(r.Name), Reason: string(r.Reason), Addr: string(r.Address), CPUs: r.CPUs.count()}
	n.setState(append(append([]string{}, r.State...), r.StateFlags...))
	n.setPartitions(r.Partitions)
	return n
}

// decodeJobs reads the jobs of a squeue or scontrol --json document. A
// document without a "jobs" key, or with a job that does not decode, is an
// error: a job silently left out would be a job not rescued.
func decodeJobs(data []byte) ([]Job, meta, error) {
	d, err := decodeDocument(data)
	if err != nil {
		return nil, meta{}, err
	}
	if d.Jobs == nil {
		if t := d.errorText(); t != "" {
			return nil, d.Meta, errors.New(t)
		}
		return nil, d.Meta, errors.New(`no "jobs" in JSON`)
	}
	jobs := make([]Job, 0, len(*d.Jobs))
	for i := range *d.Jobs {
		j, err := (*d.Jobs)[i].job()
		if err != nil {
			return nil, d.Meta, fmt.Errorf("jobs[%d]: %w", i, err)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 && d.errorText() != "" {
		return nil, d.Meta, errors.New(d.errorText())
	}
	return jobs, d.Meta, nil
}

// decodeNodes reads the nodes of an sinfo (22.05) or scontrol --json
// document.
func decodeNodes(data []byte) ([]Node, meta, error) {
	d, err := decodeDocument(data)
	if err != nil {
		return nil, meta{}, err
	}
	if d.Nodes == nil {
		if t := d.errorText(); t != "" {
			return nil, d.Meta, errors.New(t)
		}
		return nil, d.Meta, errors.New(`no "nodes" in JSON`)
	}
	nodes := make([]Node, 0, len(*d.Nodes))
	for i := range *d.Nodes {
		n := (*d.Nodes)[i].node()
		if n.Name == "" {
			return nil, d.Meta, fmt.Errorf("nodes[%d] has no name", i)
		}
		nodes = append(nodes, n)
	}
	return nodes, d.Meta, nil
}
