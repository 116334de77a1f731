package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	runShellScriptAction = "aws:runShellScript"
	// defaultExecutionTimeout is the SSM agent's per-step default.
	defaultExecutionTimeout = 3600 * time.Second
	// maxExecutionTimeout is the ceiling AWS-RunShellScript allows (48h).
	maxExecutionTimeout = 172800
)

// runShellScriptYAML is a schemaVersion 2.2 rendition of the AWS-owned
// AWS-RunShellScript document (the real one is 1.2). Its step is named after
// the plugin because 1.2 documents report the plugin name as PluginName.
const runShellScriptYAML = `
schemaVersion: "2.2"
description: Run a shell script or specify the commands to run.
parameters:
  commands:
    type: StringList
    description: (Required) Specify a shell script or a command to run.
  workingDirectory:
    type: String
    default: ""
    description: (Optional) The path to the working directory on your instance.
  executionTimeout:
    type: String
    default: "3600"
    description: (Optional) The time in seconds for a command to complete before it is considered to have failed. Default is 3600 (1 hour). Maximum is 172800 (48 hours).
    allowedPattern: "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)"
mainSteps:
  - action: aws:runShellScript
    name: aws:runShellScript
    inputs:
      runCommand:
        - "{{ commands }}"
      workingDirectory: "{{ workingDirectory }}"
      timeoutSeconds: "{{ executionTimeout }}"
`

var (
	documentNameRE  = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,128}$`)
	parameterNameRE = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)
	// placeholderRE matches {{ Param }} and {{Param}}. Names with a colon
	// ({{ssm:/x}}, {{resolve:...}}) never match and are left untouched.
	placeholderRE = regexp.MustCompile(`\{\{\s*([a-zA-Z0-9_]+)\s*\}\}`)
)

// document is an SSM command document reduced to what ssmlocal executes.
type document struct {
	name   string
	params map[string]*parameter
	steps  []step
}

type parameter struct {
	name       string
	list       bool // StringList rather than String
	def        []string
	hasDefault bool
	pattern    *regexp.Regexp
	rawPattern string
	allowed    []string
}

// step keeps its inputs as templates; they are rendered per SendCommand.
type step struct {
	name       string
	runCommand []string
	timeout    string
	workdir    string
}

// renderedStep is a step with every parameter substituted.
type renderedStep struct {
	name    string
	script  string
	timeout time.Duration
	workdir string
}

// File shapes. Scalars that YAML may type as numbers are kept raw.
type documentFile struct {
	SchemaVersion json.RawMessage          `json:"schemaVersion"`
	Parameters    map[string]parameterFile `json:"parameters"`
	MainSteps     []stepFile               `json:"mainSteps"`
}

type parameterFile struct {
	Type           string            `json:"type"`
	Default        json.RawMessage   `json:"default"`
	AllowedPattern string            `json:"allowedPattern"`
	AllowedValues  []json.RawMessage `json:"allowedValues"`
}

type stepFile struct {
	Action string `json:"action"`
	Name   string `json:"name"`
	Inputs struct {
		RunCommand       json.RawMessage `json:"runCommand"`
		TimeoutSeconds   json.RawMessage `json:"timeoutSeconds"`
		WorkingDirectory string          `json:"workingDirectory"`
	} `json:"inputs"`
}

// loadDocuments returns the built-in documents plus every NAME.json,
// NAME.yaml and NAME.yml in dir (dir may be empty).
func loadDocuments(dir string) (map[string]*document, error) {
	builtin, err := parseDocument("AWS-RunShellScript", []byte(runShellScriptYAML))
	if err != nil {
		return nil, fmt.Errorf("built-in AWS-RunShellScript: %w", err)
	}
	docs := map[string]*document{builtin.name: builtin}
	if dir == "" {
		return docs, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read documents dir: %w", err)
	}
	for _, e := range entries {
		if err := loadDocumentFile(docs, dir, e); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

func loadDocumentFile(docs map[string]*document, dir string, e os.DirEntry) error {
	ext := filepath.Ext(e.Name())
	if e.IsDir() || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
		return nil
	}
	name := strings.TrimSuffix(e.Name(), ext)
	path := filepath.Join(dir, e.Name())
	if !documentNameRE.MatchString(name) {
		return fmt.Errorf("document %s: name must match %s", path, documentNameRE)
	}
	// SSM reserves the AWS- prefix for documents it owns.
	if strings.HasPrefix(strings.ToUpper(name), "AWS-") {
		return fmt.Errorf("document %s: the AWS- prefix is reserved", path)
	}
	if _, dup := docs[name]; dup {
		return fmt.Errorf("document %s: %q is defined more than once", path, name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read document: %w", err)
	}
	doc, err := parseDocument(name, data)
	if err != nil {
		return fmt.Errorf("document %s: %w", path, err)
	}
	docs[name] = doc
	return nil
}

// parseDocument parses JSON or YAML (JSON is valid YAML) document content.
func parseDocument(name string, data []byte) (*document, error) {
	var f documentFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if v, _ := scalarText(f.SchemaVersion); v != "2.2" {
		return nil, fmt.Errorf("schemaVersion %q is not supported; want \"2.2\"", v)
	}
	doc := &document{name: name, params: make(map[string]*parameter)}
	for pname, pf := range f.Parameters {
		p, err := parseParameter(pname, pf)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %w", pname, err)
		}
		doc.params[pname] = p
	}
	if err := doc.parseSteps(f.MainSteps); err != nil {
		return nil, err
	}
	return doc, nil
}

func parseParameter(name string, pf parameterFile) (*parameter, error) {
	if !parameterNameRE.MatchString(name) {
		return nil, fmt.Errorf("name must match %s", parameterNameRE)
	}
	p := &parameter{name: name, rawPattern: pf.AllowedPattern}
	switch pf.Type {
	case "String":
	case "StringList":
		p.list = true
	default:
		return nil, fmt.Errorf("type %q is not supported; want String or StringList", pf.Type)
	}
	if err := p.parseDefault(pf.Default); err != nil {
		return nil, err
	}
	for _, raw := range pf.AllowedValues {
		v, err := scalarText(raw)
		if err != nil {
			return nil, fmt.Errorf("allowedValues: %w", err)
		}
		p.allowed = append(p.allowed, v)
	}
	if pf.AllowedPattern != "" {
		// SSM matches the whole value: its own executionTimeout pattern is
		// an unanchored alternation that only bounds the value that way.
		re, err := regexp.Compile(`^(?:` + pf.AllowedPattern + `)$`)
		if err != nil {
			return nil, fmt.Errorf("allowedPattern (Go RE2 syntax): %w", err)
		}
		p.pattern = re
	}
	return p, nil
}

func (p *parameter) parseDefault(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	p.hasDefault = true
	if !p.list {
		v, err := scalarText(raw)
		if err != nil {
			return fmt.Errorf("default: %w", err)
		}
		p.def = []string{v}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("default of a StringList must be a list: %w", err)
	}
	p.def = []string{}
	for _, item := range items {
		v, err := scalarText(item)
		if err != nil {
			return fmt.Errorf("default: %w", err)
		}
		p.def = append(p.def, v)
	}
	return nil
}

func (d *document) parseSteps(files []stepFile) error {
	if len(files) == 0 {
		return fmt.Errorf("mainSteps is empty")
	}
	for i, sf := range files {
		s, err := parseStep(sf)
		if err != nil {
			return fmt.Errorf("mainSteps[%d]: %w", i, err)
		}
		if slices.ContainsFunc(d.steps, func(o step) bool { return o.name == s.name }) {
			return fmt.Errorf("mainSteps[%d]: duplicate step name %q", i, s.name)
		}
		if err := d.checkReferences(s); err != nil {
			return fmt.Errorf("mainSteps[%d]: %w", i, err)
		}
		d.steps = append(d.steps, s)
	}
	return nil
}

func parseStep(sf stepFile) (step, error) {
	if sf.Action != runShellScriptAction {
		return step{}, fmt.Errorf("action %q is not supported; want %s", sf.Action, runShellScriptAction)
	}
	if sf.Name == "" {
		return step{}, fmt.Errorf("name is required")
	}
	lines, err := runCommandLines(sf.Inputs.RunCommand)
	if err != nil {
		return step{}, err
	}
	s := step{name: sf.Name, runCommand: lines, workdir: sf.Inputs.WorkingDirectory}
	if raw := bytes.TrimSpace(sf.Inputs.TimeoutSeconds); len(raw) > 0 && string(raw) != "null" {
		if s.timeout, err = scalarText(raw); err != nil {
			return step{}, fmt.Errorf("inputs.timeoutSeconds: %w", err)
		}
	}
	return s, nil
}

// runCommandLines accepts a list of lines or, as 1.2 documents allow, one
// string.
func runCommandLines(raw json.RawMessage) ([]string, error) {
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil && len(lines) > 0 {
		return lines, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil && one != "" {
		return []string{one}, nil
	}
	return nil, fmt.Errorf("inputs.runCommand must be a non-empty list of strings")
}

// checkReferences rejects placeholders naming undeclared parameters at load
// time, so a typo fails the lab's startup instead of a rescue.
func (d *document) checkReferences(s step) error {
	texts := append([]string{s.timeout, s.workdir}, s.runCommand...)
	for _, text := range texts {
		for _, m := range placeholderRE.FindAllStringSubmatch(text, -1) {
			if _, ok := d.params[m[1]]; !ok {
				return fmt.Errorf("{{ %s }} refers to an undeclared parameter", m[1])
			}
		}
	}
	return nil
}

// scalarText returns a JSON string, number or bool as text.
func scalarText(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("decode scalar: %w", err)
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("want a string, number or bool, got %s", raw)
}

// documentName strips the ARN form SendCommand also accepts.
func documentName(nameOrARN string) string {
	if strings.HasPrefix(nameOrARN, "arn:") {
		if i := strings.LastIndex(nameOrARN, ":document/"); i >= 0 {
			return nameOrARN[i+len(":document/"):]
		}
	}
	return nameOrARN
}
