package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDocumentRejects(t *testing.T) {
	step := func(extra string) string {
		return "mainSteps:\n  - action: aws:runShellScript\n    name: s\n    inputs:\n      runCommand: [\"echo {{ " + extra + " }}\"]\n"
	}
	tests := map[string]string{
		"schema 1.2":         "schemaVersion: '1.2'\n" + step("x"),
		"undeclared ref":     "schemaVersion: '2.2'\n" + step("Missing"),
		"unsupported type":   "schemaVersion: '2.2'\nparameters:\n  x: {type: Integer}\n" + step("x"),
		"bad pattern":        "schemaVersion: '2.2'\nparameters:\n  x: {type: String, allowedPattern: '(?=x)'}\n" + step("x"),
		"other action":       "schemaVersion: '2.2'\nmainSteps:\n  - {action: aws:runPowerShellScript, name: s, inputs: {runCommand: [dir]}}\n",
		"no steps":           "schemaVersion: '2.2'\nmainSteps: []\n",
		"list default":       "schemaVersion: '2.2'\nparameters:\n  x: {type: StringList, default: one}\n" + step("x"),
		"empty runCommand":   "schemaVersion: '2.2'\nmainSteps:\n  - {action: aws:runShellScript, name: s, inputs: {runCommand: []}}\n",
		"duplicate step":     "schemaVersion: '2.2'\nmainSteps:\n  - {action: aws:runShellScript, name: s, inputs: {runCommand: [a]}}\n  - {action: aws:runShellScript, name: s, inputs: {runCommand: [b]}}\n",
		"not a document":     "- just\n- a list\n",
		"bad parameter name": "schemaVersion: '2.2'\nparameters:\n  'a-b': {type: String}\n" + step("x"),
	}
	for name, content := range tests {
		if _, err := parseDocument("Doc", []byte(content)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestRenderSubstitutesAfterValidation(t *testing.T) {
	doc, err := parseDocument("Doc", []byte(`
schemaVersion: 2.2
parameters:
  Nodes: {type: StringList, default: [a, b]}
  Count: {type: String, default: 3, allowedValues: [1, 3]}
  Timeout: {type: String, default: "5"}
mainSteps:
  - action: aws:runShellScript
    name: s
    inputs:
      runCommand: ["for n in {{Nodes}}; do :; done # {{ Count }}", "echo {{ssm:/keep/me}}"]
      timeoutSeconds: "{{ Timeout }}"
      workingDirectory: /tmp/{{ Count }}
`))
	if err != nil {
		t.Fatalf("parseDocument: %v", err)
	}
	steps, err := doc.render(map[string][]string{"Count": {"1"}})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	want := renderedStep{name: "s", script: "for n in a\nb; do :; done # 1\necho {{ssm:/keep/me}}\n", timeout: 5 * time.Second, workdir: "/tmp/1"}
	if len(steps) != 1 || steps[0] != want {
		t.Errorf("render = %+v\nwant %+v", steps, want)
	}
	_, err = doc.render(map[string][]string{"Timeout": {"0"}})
	var apiErr *apiError
	if !errors.As(err, &apiErr) || apiErr.code != codeInvalidParameters || !strings.Contains(apiErr.message, "timeoutSeconds") {
		t.Errorf("render with timeout 0: %v, want InvalidParameters about timeoutSeconds", err)
	}
}

func TestAllowedPatternMatchesWholeValue(t *testing.T) {
	doc, err := parseDocument("Doc", []byte(`
schemaVersion: "2.2"
parameters:
  Name: {type: StringList, allowedPattern: "[a-z]+|x[0-9]"}
mainSteps:
  - {action: aws:runShellScript, name: s, inputs: {runCommand: ["echo {{ Name }}"]}}
`))
	if err != nil {
		t.Fatalf("parseDocument: %v", err)
	}
	if _, err := doc.render(map[string][]string{"Name": {"abc", "x1"}}); err != nil {
		t.Errorf("valid values rejected: %v", err)
	}
	for _, bad := range []string{"abc1", "x12", "ab c", ""} {
		_, err := doc.render(map[string][]string{"Name": {"ok", bad}})
		var apiErr *apiError
		if !errors.As(err, &apiErr) || apiErr.code != codeInvalidParameters || !strings.Contains(apiErr.message, `"Name"`) {
			t.Errorf("value %q: %v, want InvalidParameters naming Name", bad, err)
		}
	}
}

func TestRunShellScriptBuiltin(t *testing.T) {
	docs, err := loadDocuments("")
	if err != nil {
		t.Fatal(err)
	}
	doc := docs["AWS-RunShellScript"]
	steps, err := doc.render(map[string][]string{"commands": {"echo a", "echo b"}})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	want := renderedStep{name: runShellScriptAction, script: "echo a\necho b\n", timeout: time.Hour}
	if steps[0] != want {
		t.Errorf("render = %+v, want %+v", steps[0], want)
	}
	// The real pattern is an unanchored alternation: it must bound the
	// whole value.
	for _, bad := range []string{"0", "172801", "999999", "10s"} {
		if _, err := doc.render(map[string][]string{"commands": {"true"}, "executionTimeout": {bad}}); err == nil {
			t.Errorf("executionTimeout %q accepted", bad)
		}
	}
}

func TestLoadDocumentsDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Lab-Rescue.yml"), "schemaVersion: '2.2'\nmainSteps:\n  - {action: aws:runShellScript, name: s, inputs: {runCommand: [echo]}}\n")
	writeFile(t, filepath.Join(dir, "README.md"), "ignored")
	docs, err := loadDocuments(dir)
	if err != nil {
		t.Fatalf("loadDocuments: %v", err)
	}
	if _, ok := docs["Lab-Rescue"]; !ok || len(docs) != 2 {
		t.Errorf("documents %v, want Lab-Rescue and the built-in", docs)
	}
	writeFile(t, filepath.Join(dir, "Lab-Rescue.json"), `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"s","inputs":{"runCommand":["true"]}}]}`)
	if _, err := loadDocuments(dir); err == nil {
		t.Error("duplicate document name accepted")
	}
	if err := os.Remove(filepath.Join(dir, "Lab-Rescue.json")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "AWS-Mine.yaml"), "schemaVersion: '2.2'\n")
	if _, err := loadDocuments(dir); err == nil {
		t.Error("AWS- prefixed document accepted")
	}
}

func TestLoadInstances(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, `{"instances":[{"id":"i-0123456789abcdef0","node":"compute-1","workdir":"/w","env":{"K":"V"}},{"id":"i-01234567"}]}`)
	insts, err := loadInstances(good)
	if err != nil {
		t.Fatalf("loadInstances: %v", err)
	}
	if got := insts["i-0123456789abcdef0"]; got.Node != "compute-1" || got.Workdir != "/w" || got.Env["K"] != "V" {
		t.Errorf("instance %+v", got)
	}
	if got := insts["i-01234567"].Node; got != "i-01234567" {
		t.Errorf("node defaults to %q, want the id", got)
	}
	for name, content := range map[string]string{
		"typo":      `{"instances":[{"id":"i-0123456789abcdef0","work_dir":"/w"}]}`,
		"bad id":    `{"instances":[{"id":"compute-1"}]}`,
		"duplicate": `{"instances":[{"id":"i-01234567"},{"id":"i-01234567"}]}`,
		"empty":     `{"instances":[]}`,
	} {
		path := filepath.Join(dir, name+".json")
		writeFile(t, path, content)
		if _, err := loadInstances(path); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}
