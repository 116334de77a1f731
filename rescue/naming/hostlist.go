package naming

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxHosts bounds what one hostlist may expand to, so that a malformed or
// hostile "n[0-4000000000]" cannot exhaust memory. MaxHostName and
// maxGroups bound the size of each name and the work to build it, so that
// "[0-99999]" followed by a long suffix, or thousands of "[0]" groups,
// cannot either: with them the names of one hostlist take at most 25 MB.
const (
	MaxHosts    = 100000
	MaxHostName = 255 // a DNS name; Slurm's node names are far shorter
	maxGroups   = 8   // bracket groups in one name ("rack[1-2]-n[01-04]" has 2)
)

// ExpandHostlist expands a Slurm hostlist such as "queue1-dy-c5-[1-3,5]" or
// "a[1-2]-b[01-02],c" into node names, in order. Zero padding follows the
// lower bound of a range, as Slurm does: "n[01-03]" gives n01 n02 n03 and
// "n[9-10]" gives n9 n10. Empty input and "(null)" give no names.
func ExpandHostlist(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "(null)" {
		return nil, nil
	}
	parts, err := splitTopLevel(s)
	if err != nil {
		return nil, fmt.Errorf("hostlist %q: %w", truncate(s, 80), err)
	}
	var out []string
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("hostlist %q: empty name", truncate(s, 80))
		}
		if strings.Count(p, "[") > maxGroups {
			return nil, fmt.Errorf("hostlist %q: more than %d bracket groups in one name", truncate(s, 80), maxGroups)
		}
		if out, err = expandHost(p, out); err != nil {
			return nil, fmt.Errorf("hostlist %q: %w", truncate(s, 80), err)
		}
	}
	return out, nil
}

// splitTopLevel splits at the commas outside brackets.
func splitTopLevel(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth++; depth > 1 {
				return nil, fmt.Errorf("nested '[' at %d", i)
			}
		case ']':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unmatched ']' at %d", i)
			}
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unclosed '['")
	}
	return append(parts, s[start:]), nil
}

// expandHost appends the names of one host pattern, which may hold several
// bracket groups ("rack[1-2]-n[01-02]": the cartesian product, in order).
func expandHost(p string, out []string) ([]string, error) {
	open := strings.IndexByte(p, '[')
	if open < 0 {
		if strings.IndexByte(p, ']') >= 0 {
			return nil, fmt.Errorf("unmatched ']'")
		}
		return appendBounded(out, p)
	}
	end := strings.IndexByte(p[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("unclosed '['")
	}
	prefix, body, rest := p[:open], p[open+1:open+end], p[open+end+1:]
	nums, err := expandRanges(body)
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		if out, err = expandHost(prefix+n+rest, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// expandRanges expands the inside of brackets, "1-3,5" or "01-03".
func expandRanges(body string) ([]string, error) {
	if body == "" {
		return nil, fmt.Errorf("empty brackets")
	}
	var out []string
	for _, r := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.ParseUint(lo, 10, 32)
		b, err2 := strconv.ParseUint(hi, 10, 32)
		if err1 != nil || err2 != nil || lo == "" || hi == "" {
			return nil, fmt.Errorf("bad range %q", r)
		}
		if b < a {
			return nil, fmt.Errorf("range %q runs backwards", r)
		}
		if b-a >= MaxHosts || len(out)+int(b-a) >= MaxHosts {
			return nil, fmt.Errorf("range %q has more than %d hosts", r, MaxHosts)
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%0*d", len(lo), n))
		}
	}
	return out, nil
}

func appendBounded(out []string, name string) ([]string, error) {
	if len(out) >= MaxHosts {
		return nil, fmt.Errorf("more than %d hosts", MaxHosts)
	}
	if len(name) > MaxHostName {
		return nil, fmt.Errorf("name of %d bytes is longer than %d", len(name), MaxHostName)
	}
	return append(out, name), nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// CompressHostlist writes names as a Slurm hostlist, the inverse of
// ExpandHostlist: names that differ only in a trailing number without
// leading zeros become one range ("q-dy-c5-[1-3,7]"), so that a compute
// resource of a thousand nodes fits one short argument. Duplicates are
// dropped; the order is by prefix, then number.
func CompressHostlist(names []string) string {
	nums := map[string][]int{} // prefix -> trailing numbers
	var prefixes, plain []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		i := len(n)
		for i > 0 && n[i-1] >= '0' && n[i-1] <= '9' {
			i--
		}
		v, err := strconv.Atoi(n[i:])
		if i == len(n) || n[i] == '0' && i < len(n)-1 || err != nil || strings.ContainsAny(n[:i], "[],") {
			plain = append(plain, n) // no number, zero padded, or not a name
			continue
		}
		if _, ok := nums[n[:i]]; !ok {
			prefixes = append(prefixes, n[:i])
		}
		nums[n[:i]] = append(nums[n[:i]], v)
	}
	slices.Sort(prefixes)
	var parts []string
	for _, p := range prefixes {
		vs := nums[p]
		slices.Sort(vs)
		if len(vs) == 1 {
			parts = append(parts, p+strconv.Itoa(vs[0]))
			continue
		}
		var ranges []string
		for i := 0; i < len(vs); {
			j := i
			for j+1 < len(vs) && vs[j+1] == vs[j]+1 {
				j++
			}
			r := strconv.Itoa(vs[i])
			if j > i {
				r += "-" + strconv.Itoa(vs[j])
			}
			ranges = append(ranges, r)
			i = j + 1
		}
		parts = append(parts, p+"["+strings.Join(ranges, ",")+"]")
	}
	slices.Sort(plain)
	return strings.Join(append(parts, plain...), ",")
}
