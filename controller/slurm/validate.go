package slurm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spotrescue/spotrescue/rescue/naming"
)

var (
	partPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	signalNumRange = [2]int{1, 64}
)

// signalNames are the names scancel accepts (without the SIG prefix).
var signalNames = map[string]bool{
	"HUP": true, "INT": true, "QUIT": true, "ILL": true, "TRAP": true, "ABRT": true,
	"BUS": true, "FPE": true, "KILL": true, "USR1": true, "SEGV": true, "USR2": true,
	"PIPE": true, "ALRM": true, "TERM": true, "STKFLT": true, "CHLD": true, "CONT": true,
	"STOP": true, "TSTP": true, "TTIN": true, "TTOU": true, "URG": true, "XCPU": true,
	"XFSZ": true, "VTALRM": true, "PROF": true, "WINCH": true, "IO": true, "PWR": true,
	"SYS": true,
}

const (
	maxCommentLen = 4096
	maxReasonLen  = 1024
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// validTarget checks an id a command may address: a canonical job id or an
// array task as "<array job id>_<task id>" (naming.ParseJobID, without the
// heterogeneous component form, which Slurm's commands do not take).
func validTarget(id string) error {
	if strings.Contains(id, "+") {
		return invalid("job id %q: address a heterogeneous job by its leader's id", id)
	}
	if _, err := naming.ParseJobID(id); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func validNode(name string) error {
	if err := naming.Node(name); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func validPartition(name string) error {
	if !partPattern.MatchString(name) {
		return invalid("partition name %q", name)
	}
	return nil
}

// validHostlist checks a node list that travels as the value of one
// "Key=" argv element (ExcNodeList=): only what a Slurm hostlist of node
// names holds (letters, digits, '-', '_', '.', ',' and the brackets of
// ranges), at most maxListLen bytes, and well formed, each name a valid
// node name. "" is valid: it clears the list.
func validHostlist(what, list string) error {
	const fix = "give node names joined by ',', with ranges in brackets, such as queue1-dy-c5xlarge-[1-3],queue2-st-m5-1"
	if len(list) > maxListLen {
		return invalid("%s is longer than %d bytes: %s, fewer or as ranges", what, maxListLen, fix)
	}
	for i, r := range list {
		if !hostlistChar(r) {
			return invalid("%s %q: %q at byte %d cannot be in a node list: %s", what, truncate(list, 80), r, i, fix)
		}
	}
	names, err := naming.ExpandHostlist(list)
	if err != nil {
		return invalid("%s: %v: %s", what, err, fix)
	}
	for _, n := range names {
		if err := naming.Node(n); err != nil {
			return invalid("%s: %v: %s", what, err, fix)
		}
	}
	return nil
}

func hostlistChar(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("-_.,[]", r))
}

// normalizeSignal returns the signal as scancel should get it: a known name
// without its SIG prefix, upper case, or a number from 1 to 64.
func normalizeSignal(sig string) (string, error) {
	if n, err := strconv.Atoi(sig); err == nil && sig == strconv.Itoa(n) {
		if n < signalNumRange[0] || n > signalNumRange[1] {
			return "", invalid("signal number %d is not 1-64", n)
		}
		return sig, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	if !signalNames[name] {
		return "", invalid("signal %q", sig)
	}
	return name, nil
}

// validText checks free text that travels as one argv element (an admin
// comment or a drain reason). Control characters are refused because they
// would break the line-oriented output we read the text back from, and
// surrounding white space because scontrol's text output cannot keep it.
func validText(what, s string, max int, allowEmpty bool) error {
	switch {
	case s == "" && !allowEmpty:
		return invalid("%s is empty", what)
	case len(s) > max:
		return invalid("%s is longer than %d bytes", what, max)
	case !utf8.ValidString(s):
		return invalid("%s is not valid UTF-8", what)
	case strings.TrimSpace(s) != s:
		return invalid("%s has leading or trailing white space", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid("%s contains control character %U", what, r)
		}
	}
	return nil
}
