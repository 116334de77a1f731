package slurm

import (
	"slices"
	"strings"
)

// Node is a Slurm node.
type Node struct {
	Name   string
	State  string   // base state, upper case: IDLE, MIXED, ALLOCATED, DOWN, ...
	Flags  []string // DRAIN, COMPLETING, CLOUD, POWERED_DOWN, NOT_RESPONDING, ...
	Reason string
	Addr   string
	// Partitions are the partitions the node is in, in Slurm's order; nil
	// when none.
	Partitions []string
	CPUs       int // configured CPUs (CPUTot), 0 when unknown
}

// nodeBaseStates are NODE_STATE_BASE names.
var nodeBaseStates = map[string]bool{
	"UNKNOWN": true, "DOWN": true, "IDLE": true, "ALLOCATED": true, "ERROR": true,
	"MIXED": true, "FUTURE": true,
}

// Drained reports a drain request: the node takes no new jobs (DRAINING
// while jobs still run, DRAINED once idle; both carry the DRAIN flag).
func (n *Node) Drained() bool {
	for _, s := range append([]string{n.State}, n.Flags...) {
		if s == "DRAIN" || s == "DRAINING" || s == "DRAINED" {
			return true
		}
	}
	return false
}

// setState fills State and Flags from Slurm's names: a 23.02+ array
// (["MIXED","DRAIN"]), 22.05's lower-case base plus state_flags, or the
// text form "MIXED+DRAIN" or "DOWN*+DRAIN" ('*': not responding).
func (n *Node) setState(names []string) {
	var all []string
	for _, s := range names {
		for _, p := range strings.Split(s, "+") {
			p = strings.ToUpper(strings.TrimSpace(p))
			if base, ok := strings.CutSuffix(p, "*"); ok {
				p = base
				all = append(all, "NOT_RESPONDING")
			}
			if p != "" {
				all = append(all, p)
			}
		}
	}
	n.State, n.Flags = "", nil
	for _, s := range all {
		if nodeBaseStates[s] && n.State == "" {
			n.State = s
		} else if !slices.Contains(n.Flags, s) {
			n.Flags = append(n.Flags, s)
		}
	}
	if n.State == "" && len(n.Flags) > 0 {
		n.State = n.Flags[0] // only a flag is known: it stands for the state
	}
}

// setPartitions fills Partitions from JSON's array (["spot","ondemand"])
// or the text's "spot,ondemand"; "", "(null)" and empty items are none.
func (n *Node) setPartitions(lists []string) {
	n.Partitions = nil
	for _, l := range lists {
		for _, p := range strings.Split(nullText(l), ",") {
			if p = strings.TrimSpace(p); p != "" {
				n.Partitions = append(n.Partitions, p)
			}
		}
	}
}
