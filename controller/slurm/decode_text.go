package slurm

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file reads Slurm's plain text, the fallback when JSON is missing
// (scontrol before 23.02) or does not parse.
//
// scontrol show job/node (without -o) prints one record per job, a first
// line "JobId=... JobName=<name>" with the name running to the end of the
// line, then indented lines of "Key=Value" pairs, the free-text fields
// (AdminComment, Comment, WorkDir, StdOut, OS, Reason of a node, ...) each on
// a line of its own. That layout delimits text with spaces and '=' in it;
// the one-line form (-o) joins everything with single spaces and cannot be
// split back reliably ("AdminComment=a StdOut=b" is ambiguous), so it is not
// used.

// freeJobKeys and freeNodeKeys are the keys whose value runs to the end of
// their line.
var (
	freeJobKeys = map[string]bool{
		"AdminComment": true, "Comment": true, "SystemComment": true, "Extra": true,
		"Command": true, "WorkDir": true, "StdErr": true, "StdIn": true, "StdOut": true,
		"Container": true, "ContainerID": true, "SubmitLine": true,
	}
	freeNodeKeys = map[string]bool{
		"OS": true, "Reason": true, "Comment": true, "Extra": true,
	}
	// firstLineJobKeys are printed only on a job record's first line,
	// before JobName. Seen on a later line they can only come from a job
	// name or comment holding a newline: a user's attempt to pass their
	// job off as another job's array task or heterogeneous component.
	firstLineJobKeys = map[string]bool{
		"JobId": true, "ArrayJobId": true, "ArrayTaskId": true,
		"HetJobId": true, "HetJobOffset": true, "JobName": true,
	}
	// requiredJobKeys are on every job record; a record without them was
	// cut short by a newline in the name of the job before it.
	requiredJobKeys = []string{"UserId", "JobState", "NodeList"}
	keyPattern      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_:/]*$`)
)

// record is one job or node of scontrol's text output.
type record struct {
	fields map[string]string
	dups   map[string]bool // keys seen twice: their value cannot be trusted
	first  map[string]bool // keys of the record's first line
}

func newRecord() *record {
	return &record{fields: map[string]string{}, dups: map[string]bool{}, first: map[string]bool{}}
}

func (r *record) set(k, v string) {
	if _, ok := r.fields[k]; ok {
		r.dups[k] = true
	}
	r.fields[k] = v
}

// get returns a field; a field given twice (a name or comment that itself
// contained "Key=") is an error rather than a guess.
func (r *record) get(k string) (string, error) {
	if r.dups[k] {
		return "", fmt.Errorf("field %s appears twice", k)
	}
	return r.fields[k], nil
}

// parseShow splits `scontrol show job|node` output into records. first is
// the key that starts a record (JobId, NodeName); nameKey, if not empty, is
// the key whose value runs to the end of the first line (JobName); keys in
// firstOnly are refused on the other lines.
func parseShow(out, first, nameKey string, free, firstOnly map[string]bool) ([]*record, error) {
	var recs []*record
	var cur *record
	for i, line := range strings.Split(out, "\n") {
		switch {
		case line == "":
			cur = nil // records are separated by an empty line
		case strings.TrimSpace(line) == "":
			// 24.11 prints an indented empty line inside a node's record
			// where an optional line (power, sensors) has nothing to say.
			continue
		case strings.HasPrefix(line, first+"="):
			cur = newRecord()
			recs = append(recs, cur)
			if err := parseFirstLine(cur, line, nameKey); err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			for k := range cur.fields {
				cur.first[k] = true
			}
		case cur == nil:
			return nil, fmt.Errorf("line %d: %q is outside a record", i+1, truncate(line, 60))
		default:
			if err := parseLine(cur, strings.TrimLeft(line, " "), free); err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			for k := range firstOnly {
				if _, ok := cur.fields[k]; ok && (!cur.first[k] || cur.dups[k]) {
					return nil, fmt.Errorf("line %d: %s outside the first line of the record", i+1, k)
				}
			}
		}
	}
	return recs, nil
}

func parseFirstLine(r *record, line, nameKey string) error {
	if nameKey == "" {
		return parseLine(r, line, nil)
	}
	i := strings.Index(line, " "+nameKey+"=")
	if i < 0 {
		return parseLine(r, line, nil)
	}
	if err := parseLine(r, line[:i], nil); err != nil {
		return err
	}
	r.set(nameKey, line[i+len(nameKey)+2:])
	return nil
}

// parseLine reads "Key=Value Key=Value" pairs. A word without '=' continues
// the previous value (a node's OS, say, when it is not on its own line); a
// line that starts with a free-text key is that key's value to the end.
func parseLine(r *record, line string, free map[string]bool) error {
	if k, v, ok := strings.Cut(line, "="); ok && free[k] {
		// 22.05 prints "AdminComment=%s " with a trailing space.
		r.set(k, strings.TrimSuffix(v, " "))
		return nil
	}
	last := ""
	for _, word := range strings.Split(line, " ") {
		if word == "" {
			continue
		}
		if k, v, ok := strings.Cut(word, "="); ok && keyPattern.MatchString(k) {
			r.set(k, v)
			last = k
			continue
		}
		if last == "" {
			return fmt.Errorf("%q is not Key=Value", truncate(word, 40))
		}
		r.fields[last] += " " + word
	}
	return nil
}

// jobKeys are the fields of a `scontrol show job` record that Job uses.
var jobKeys = []string{
	"JobId", "ArrayJobId", "ArrayTaskId", "HetJobId", "HetJobOffset", "JobName",
	"UserId", "JobState", "Reason", "Priority", "Requeue", "Restarts", "BatchFlag",
	"AdminComment", "Partition", "Account", "BatchHost", "SubmitTime", "StartTime",
	"NodeList", "ExcNodeList", "ReqNodeList", "NumNodes", "NumCPUs", "TRES", "ReqTRES", "AllocTRES",
}

// jobFromRecord builds a Job from a `scontrol show job` record.
func jobFromRecord(r *record) (Job, error) {
	for _, k := range jobKeys {
		if _, err := r.get(k); err != nil {
			return Job{}, fmt.Errorf("job %s: %w", r.fields["JobId"], err)
		}
	}
	for _, k := range requiredJobKeys {
		if _, ok := r.fields[k]; !ok {
			return Job{}, fmt.Errorf("job %s: no %s: the record is incomplete", r.fields["JobId"], k)
		}
	}
	f := func(k string) string { return nullText(r.fields[k]) }
	var x ids
	var err error
	if x.jobID, err = parseID(f("JobId")); err != nil || x.jobID == 0 {
		return Job{}, fmt.Errorf("JobId %q: not a job id", r.fields["JobId"])
	}
	x.arrayJobID, _ = parseID(f("ArrayJobId"))
	x.arrayTaskID, x.hasTask, x.taskStr = parseTask(f("ArrayTaskId"))
	x.hetJobID, _ = parseID(f("HetJobId"))
	x.hetOffset, _ = parseID(f("HetJobOffset"))
	j := Job{Name: r.fields["JobName"], Reason: f("Reason"), AdminComment: f("AdminComment")}
	j.setIDs(x)
	j.User, j.UID = parseUser(f("UserId"))
	j.setState([]string{f("JobState")})
	j.Priority, _ = strconv.ParseInt(f("Priority"), 10, 64)
	j.Requeue, j.Batch = f("Requeue") == "1", f("BatchFlag") == "1"
	j.Restarts, _ = strconv.Atoi(f("Restarts"))
	j.Partition, j.Account, j.BatchHost = f("Partition"), f("Account"), f("BatchHost")
	j.SubmitTime, j.StartTime = parseLocalTime(f("SubmitTime")), parseLocalTime(f("StartTime"))
	j.ExcNodes, j.ReqNodes = f("ExcNodeList"), f("ReqNodeList")
	j.NodeCount, j.CPUs = firstCount(f("NumNodes")), firstCount(f("NumCPUs"))
	tres, err := jobTRES(r)
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	j.GPUs = gpusOf(tres)
	if err := j.setNodes(f("NodeList")); err != nil {
		return Job{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return j, nil
}

// jobTRES returns a job record's TRES: 22.05 prints one TRES= (allocated,
// or requested while nothing is), 23.02 on ReqTRES= and AllocTRES=. A
// record with both spellings got the other one from a newline in the job's
// name or comment, to claim GPUs it does not have: refuse it, do not guess.
func jobTRES(r *record) (string, error) {
	_, old := r.fields["TRES"]
	_, req := r.fields["ReqTRES"]
	_, alloc := r.fields["AllocTRES"]
	if old && (req || alloc) {
		return "", errors.New("both TRES and ReqTRES/AllocTRES: the record was tampered with")
	}
	for _, k := range []string{"AllocTRES", "TRES"} {
		if t := nullText(r.fields[k]); t != "" {
			return t, nil
		}
	}
	return nullText(r.fields["ReqTRES"]), nil
}

// firstCount reads NumNodes or NumCPUs, which a pending job shows as a
// range ("1-4", "2-2"): the first number, the least the job needs. What
// does not parse is 0; the result is at most maxCount.
func firstCount(s string) int {
	lo, _, _ := strings.Cut(s, "-")
	n, err := strconv.ParseUint(lo, 10, 64)
	if err != nil {
		return 0
	}
	return int(min(n, maxCount))
}

// parseJobsText reads `scontrol show job` output.
func parseJobsText(out string) ([]Job, error) {
	recs, err := parseShow(out, "JobId", "JobName", freeJobKeys, firstLineJobKeys)
	if err != nil {
		return nil, err
	}
	jobs := make([]Job, 0, len(recs))
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		j, err := jobFromRecord(r)
		if err != nil {
			return nil, err
		}
		// scontrol prints a job once; a second record with its id was
		// forged by a newline in a free-text field of the first.
		if seen[j.ID] {
			return nil, fmt.Errorf("job %s: printed twice", j.ID)
		}
		seen[j.ID] = true
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// nodeReasonSuffix is the " [root@2026-11-26T04:20:53]" scontrol appends.
var nodeReasonSuffix = regexp.MustCompile(` \[[^\]@]*@[^\]]*\]$`)

// noNodes is what `scontrol show node` prints, and exits 0, for a cluster
// without nodes.
const noNodes = "No nodes in the system"

// parseNodesText reads `scontrol show node` output.
func parseNodesText(out string) ([]Node, error) {
	if strings.TrimSpace(out) == noNodes {
		return nil, nil
	}
	recs, err := parseShow(out, "NodeName", "", freeNodeKeys, nil)
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, 0, len(recs))
	for _, r := range recs {
		n, err := nodeFromRecord(r)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// nodeFromRecord builds a Node from a `scontrol show node` record. The
// fields a reason's newline could repeat (it is the last line) are read
// with get, which refuses a field given twice.
func nodeFromRecord(r *record) (Node, error) {
	name, err1 := r.get("NodeName")
	state, err2 := r.get("State")
	parts, err3 := r.get("Partitions")
	cpus, err4 := r.get("CPUTot")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Node{}, fmt.Errorf("node %q: %w", name, err)
	}
	if name == "" {
		return Node{}, errors.New("node record without a name")
	}
	n := Node{Name: name, Addr: nullText(r.fields["NodeAddr"]), CPUs: firstCount(cpus)}
	n.Reason = nodeReasonSuffix.ReplaceAllString(nullText(r.fields["Reason"]), "")
	n.setState([]string{state})
	n.setPartitions([]string{parts})
	return n, nil
}

// squeueFields are the columns of the squeue -O fallback, in order. Each is
// printed in full (":0") and followed by the unit separator; the last one
// by the record separator, since a field may hold a newline.
var squeueFields = []string{
	"JobID", "ArrayJobID", "ArrayTaskID", "HetJobID", "HetJobOffset", "Name",
	"UserName", "UserID", "State", "Reason", "PriorityLong", "Requeue",
	"RestartCnt", "BatchFlag", "BatchHost", "NodeList", "Partition", "Account",
	"SubmitTime", "StartTime", "admin_comment",
}

const (
	unitSep   = "\x1f"
	recordSep = "\x1e"
)

// squeueFormat is the -O argument for squeueFields.
func squeueFormat() string {
	parts := make([]string, len(squeueFields))
	for i, f := range squeueFields {
		sep := unitSep
		if i == len(squeueFields)-1 {
			sep = recordSep
		}
		parts[i] = f + ":0" + sep
	}
	return strings.Join(parts, ",")
}

// SqueueTextArgs are squeue's arguments for its text columns, the fallback
// of Jobs; hack/slurmrecord records their output.
func SqueueTextArgs() []string { return []string{"-h", "-t", "all", "-O", squeueFormat()} }

// parseSqueue reads the output of squeue -h -O squeueFormat().
func parseSqueue(out string) ([]Job, error) {
	chunks := strings.Split(out, recordSep)
	jobs := make([]Job, 0, len(chunks))
	seen := map[string]bool{}
	for i, chunk := range chunks {
		chunk = strings.TrimPrefix(chunk, "\n")
		if i == len(chunks)-1 {
			if strings.TrimSpace(chunk) != "" {
				return nil, fmt.Errorf("squeue: trailing text %q", truncate(chunk, 60))
			}
			break
		}
		f := strings.Split(chunk, unitSep)
		if len(f) != len(squeueFields) {
			return nil, fmt.Errorf("squeue record %d: %d fields, want %d", i+1, len(f), len(squeueFields))
		}
		j, err := jobFromSqueue(f)
		if err != nil {
			return nil, fmt.Errorf("squeue record %d: %w", i+1, err)
		}
		// squeue -t all lists every job once. A second record for an id
		// was forged, by a job name holding the separators, to speak for
		// another user's job: refuse the whole listing.
		if seen[j.ID] {
			return nil, fmt.Errorf("squeue record %d: job %s listed twice; a job name may hold the record separator", i+1, j.ID)
		}
		seen[j.ID] = true
		jobs = append(jobs, j)
	}
	return jobs, nil
}

func jobFromSqueue(f []string) (Job, error) {
	var x ids
	var err error
	if x.jobID, err = parseID(f[0]); err != nil || x.jobID == 0 {
		return Job{}, fmt.Errorf("JobID %q: not a job id", f[0])
	}
	x.arrayJobID, _ = parseID(f[1])
	x.arrayTaskID, x.hasTask, x.taskStr = parseTask(f[2])
	x.hetJobID, _ = parseID(f[3])
	x.hetOffset, _ = parseID(f[4])
	j := Job{Name: f[5], User: nullText(f[6]), Reason: nullText(f[9])}
	j.setIDs(x)
	j.UID, _ = strconv.Atoi(f[7])
	j.setState([]string{f[8]})
	j.Priority, _ = strconv.ParseInt(f[10], 10, 64)
	j.Requeue, j.Batch = f[11] == "1", f[13] == "1"
	j.Restarts, _ = strconv.Atoi(f[12])
	j.BatchHost, j.Partition, j.Account = nullText(f[14]), nullText(f[16]), nullText(f[17])
	j.SubmitTime, j.StartTime = parseLocalTime(f[18]), parseLocalTime(f[19])
	j.AdminComment = nullText(f[20])
	if err := j.setNodes(nullText(f[15])); err != nil {
		return Job{}, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return j, nil
}

// nullText maps Slurm's placeholders for "nothing" to "".
func nullText(s string) string {
	switch s {
	case "(null)", "N/A", "n/a", "None assigned":
		return ""
	}
	return s
}

// parseID reads a numeric id; "", "N/A" and "(null)" are 0.
func parseID(s string) (uint64, error) {
	if nullText(s) == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 32)
}

// parseTask reads an array task id, or the task expression ("1-3%2") of an
// array record whose tasks have not all started.
func parseTask(s string) (id uint64, ok bool, expr string) {
	s = nullText(s)
	if s == "" {
		return 0, false, ""
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return n, true, ""
	}
	return 0, false, s
}

// parseUser reads "alice(1001)".
func parseUser(s string) (string, int) {
	i := strings.LastIndexByte(s, '(')
	if i < 0 || !strings.HasSuffix(s, ")") {
		return s, 0
	}
	uid, _ := strconv.Atoi(s[i+1 : len(s)-1])
	return s[:i], uid
}

// parseLocalTime reads "2026-11-26T04:21:25", which Slurm prints in the
// local time zone; "Unknown", "None" and "N/A" are the zero time.
func parseLocalTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}
