package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Sources says where Load reads settings from. The zero value reads nothing but defaults.
type Sources struct {
	// File is the YAML file. When FileRequired is false a missing file is
	// fine (the default path on a machine that was configured by env only).
	File         string
	FileRequired bool
	// Clustermgtd is ParallelCluster's clustermgtd config; missing is fine.
	Clustermgtd string
	// Env is the process environment as from os.Environ.
	Env []string
	// Flags holds flags bound with BindFlags; only flags set on the command line apply.
	Flags *pflag.FlagSet
}

// DefaultSources is what the spotrescue binary reads: SPOTRESCUE_CONFIG or
// the default path, clustermgtd's config, the environment and flags.
func DefaultSources(flags *pflag.FlagSet, file string) Sources {
	src := Sources{File: file, FileRequired: file != "", Clustermgtd: ClustermgtdPath, Env: os.Environ(), Flags: flags}
	if src.File == "" {
		if v := os.Getenv(EnvConfigPath); v != "" {
			src.File, src.FileRequired = v, true
		} else {
			src.File = DefaultPath
		}
	}
	return src
}

// Load applies every source over the defaults. Problems with individual
// settings (unknown keys, wrong types) come back together as Problems
// alongside the config; a file that cannot be read or is not YAML is a
// plain error.
func Load(src Sources) (*Config, Problems, error) {
	c := Default()
	byPath := map[string]field{}
	for _, f := range fields(&c) {
		byPath[f.Path] = f
	}
	if err := applyClustermgtd(byPath, src.Clustermgtd); err != nil {
		return nil, nil, err
	}
	var probs Problems
	p, err := applyFile(&c, src.File, src.FileRequired)
	if err != nil {
		return nil, nil, err
	}
	probs = append(probs, p...)
	probs = append(probs, applyEnv(byPath, src.Env)...)
	probs = append(probs, applyFlags(byPath, src.Flags)...)
	if c.NodeTable == "" && c.Cluster != "" {
		c.NodeTable = "parallelcluster-slurm-" + c.Cluster
	}
	return &c, probs, nil
}

// applyClustermgtd takes cluster name, region and node table from
// ParallelCluster's own daemon config, so a head node needs no repetition.
func applyClustermgtd(byPath map[string]field, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	keys := map[string]string{"cluster_name": "cluster", "region": "region", "dynamodb_table": "node_table"}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if target, ok := keys[strings.TrimSpace(k)]; ok {
			if err := byPath[target].set(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("%s: %s: %w", path, strings.TrimSpace(k), err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func applyFile(c *Config, path string, required bool) (Problems, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, nil // an empty file (or "---", or "~") means "all defaults"
	}
	if root := doc.Content[0]; root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parse %s:%d: expected a mapping of settings (key: value lines), not %s", path, root.Line, nodeKind(root))
	}
	return decodeNode(c, doc.Content[0], path), nil
}

// nodeKind names what a YAML node is, for messages.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a single value"
}

// keyName is how a problem names a key: its text, quoted when the text would
// not show (empty, blank, edge spaces, control characters), or what it is
// when it is not text (a list or a mapping used as a key).
func keyName(key *yaml.Node) string {
	if key.Kind != yaml.ScalarNode && key.Kind != yaml.AliasNode {
		return "(" + nodeKind(key) + " as a key)"
	}
	return shown(key.Value)
}

// shown quotes a name that would not show as itself in a report: empty,
// blank, with edge spaces or with control characters (which could also
// forge a line of their own).
func shown(name string) string {
	unprintable := strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0
	if name == "" || strings.TrimSpace(name) != name || unprintable {
		return strconv.Quote(name)
	}
	return name
}

// decodeNode walks the YAML mapping against the known fields so that every
// unknown key and every mistyped value is reported, not just the first.
func decodeNode(c *Config, root *yaml.Node, file string) Problems {
	known := map[string]field{}
	for _, f := range fields(c) {
		known[f.Path] = f
	}
	var probs Problems
	var visit func(n *yaml.Node, prefix string)
	visit = func(n *yaml.Node, prefix string) {
		where := fmt.Sprintf("%s:%d", file, n.Line)
		if n.Kind != yaml.MappingNode {
			probs = append(probs, Problem{Field: strings.TrimSuffix(prefix, "."), Source: where, Msg: "expected a mapping of settings", Fix: "write key: value pairs"})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			path := prefix + keyName(key)
			where := fmt.Sprintf("%s:%d", file, key.Line)
			if f, ok := known[path]; ok {
				if p := setFromNode(f, val); p != nil {
					p.Source = where
					probs = append(probs, *p)
				}
				continue
			}
			if hasPrefix(known, path+".") {
				visit(val, path+".")
				continue
			}
			probs = append(probs, Problem{Field: path, Source: where, Msg: "unknown setting", Fix: suggest(path, known)})
		}
	}
	visit(root, "")
	return probs
}

func setFromNode(f field, val *yaml.Node) *Problem {
	var s string
	switch {
	case val.Kind == yaml.ScalarNode && val.Tag == "!!null":
		return nil // "key:" with no value keeps the default
	case val.Kind == yaml.ScalarNode:
		s = val.Value
	case val.Kind == yaml.SequenceNode && f.value.Kind() == reflect.Slice:
		items := make([]string, 0, len(val.Content))
		for _, item := range val.Content {
			if item.Kind != yaml.ScalarNode {
				return &Problem{Field: f.Path, Msg: fmt.Sprintf("an item is %s", nodeKind(item)), Fix: "set it to " + f.kindHint()}
			}
			items = append(items, item.Value)
		}
		s = strings.Join(items, ",")
	default:
		return &Problem{Field: f.Path, Msg: "wrong type", Fix: "set it to " + f.kindHint()}
	}
	if f.value.Kind() == reflect.Int && val.Tag != "!!int" || f.isBool() && val.Tag != "!!bool" {
		return &Problem{Field: f.Path, Msg: fmt.Sprintf("%q is not %s", s, f.kindHint()), Fix: "set it to " + f.kindHint()}
	}
	if err := f.set(s); err != nil {
		return &Problem{Field: f.Path, Msg: err.Error(), Fix: "set it to " + f.kindHint()}
	}
	return nil
}

func hasPrefix(known map[string]field, prefix string) bool {
	for path := range known {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

func applyEnv(byPath map[string]field, env []string) Problems {
	byEnv := map[string]field{}
	for _, f := range byPath {
		byEnv[f.EnvName()] = f
	}
	var probs Problems
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		// An entry without "=" assigns nothing; os.Getenv ignores it too.
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigPath {
			continue
		}
		f, ok := byEnv[name]
		if !ok {
			probs = append(probs, Problem{Field: shown(name), Source: "env", Msg: "unknown setting", Fix: "unset it or use one of the names in `spotrescue config validate --help`"})
			continue
		}
		if err := f.set(val); err != nil {
			probs = append(probs, Problem{Field: f.Path, Source: "env " + name, Msg: err.Error(), Fix: "set it to " + f.kindHint()})
		}
	}
	return probs
}

func applyFlags(byPath map[string]field, fs *pflag.FlagSet) Problems {
	if fs == nil {
		return nil
	}
	var probs Problems
	for _, f := range byPath {
		fl := fs.Lookup(f.FlagName())
		if fl == nil || !fl.Changed {
			continue
		}
		if err := f.set(fl.Value.String()); err != nil {
			probs = append(probs, Problem{Field: f.Path, Source: "flag --" + fl.Name, Msg: err.Error(), Fix: "set it to " + f.kindHint()})
		}
	}
	return probs
}

// BindFlags registers one flag per setting on fs. When only names some
// settings (a section such as "scratch" stands for all of its settings),
// the others are hidden: a command's --help lists what it reads, and a
// script that passes one set of flags to every command still works.
// Values are kept as strings and parsed by Load, so flags, env and YAML
// share one parser.
func BindFlags(fs *pflag.FlagSet, only ...string) {
	c := Default()
	for _, f := range fields(&c) {
		bindFlag(fs, f)
		if !selected(f.Path, only) {
			fs.MarkHidden(f.FlagName())
		}
	}
}

func bindFlag(fs *pflag.FlagSet, f field) {
	help := f.Help
	if f.isBool() {
		if f.get() == "true" {
			help += " (default true)"
		}
		fs.Bool(f.FlagName(), false, help)
		return
	}
	if d := f.get(); d != "" {
		help = fmt.Sprintf("%s (default %q)", help, d)
	}
	fs.String(f.FlagName(), "", help)
}

func selected(path string, only []string) bool {
	for _, o := range only {
		if path == o || strings.HasPrefix(path, o+".") {
			return true
		}
	}
	return len(only) == 0
}

// suggest offers the closest known key for a typo.
func suggest(path string, known map[string]field) string {
	best, bestDist := "", 4
	for k := range known {
		if d := editDistance(path, k); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return "remove it; see the configuration reference in the README"
	}
	return fmt.Sprintf("did you mean %s?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
