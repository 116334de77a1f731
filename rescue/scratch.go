package rescue

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// ScratchVars are the values a scratch path template may use.
type ScratchVars struct {
	JobID       string
	User        string
	ArrayJobID  string // "" unless an array task
	ArrayTaskID string
	Node        string
}

var (
	numericRe = regexp.MustCompile(`^[0-9]{1,10}$`)
	userRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)
	nodeRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// ScratchDir expands template with v. Every value is checked against a
// strict pattern first, so a job or user name can never steer the path
// (no "/", no ".."). Values that do not apply to a job (array ids of a
// plain job) expand to "none".
func ScratchDir(template string, v ScratchVars) (string, error) {
	if v.ArrayJobID == "" {
		v.ArrayJobID, v.ArrayTaskID = "none", "none"
	}
	type check struct {
		name, value string
		re          *regexp.Regexp
	}
	checks := []check{{"job_id", v.JobID, numericRe}, {"user", v.User, userRe}, {"node", v.Node, nodeRe}}
	if v.ArrayJobID != "none" {
		checks = append(checks, check{"array_job_id", v.ArrayJobID, numericRe}, check{"array_task_id", v.ArrayTaskID, numericRe})
	}
	for _, c := range checks {
		if strings.Contains(template, "{"+c.name+"}") && !c.re.MatchString(c.value) {
			return "", fmt.Errorf("scratch path: %s %q is not usable in a path", c.name, c.value)
		}
	}
	r := strings.NewReplacer("{job_id}", v.JobID, "{user}", v.User, "{node}", v.Node, "{array_job_id}", v.ArrayJobID, "{array_task_id}", v.ArrayTaskID)
	return filepath.Clean(r.Replace(template)), nil
}
