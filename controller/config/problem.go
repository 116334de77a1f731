package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with the configuration: where, what, and how to fix it.
type Problem struct {
	Field  string // dotted path, or an environment variable / flag name
	Source string // file:line, "env" or "flag"; empty for derived checks
	Msg    string
	Fix    string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Source != "" {
		b.WriteString(p.Source + ": ")
	}
	fmt.Fprintf(&b, "%s: %s", p.Field, p.Msg)
	if p.Fix != "" {
		b.WriteString("; fix: " + p.Fix)
	}
	return b.String()
}

// Problems is every problem found, reported together so one edit can fix them all.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d configuration problem(s):\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Err returns ps as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
