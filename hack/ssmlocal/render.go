package main

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// render validates values against the declared parameters and returns the
// steps with every placeholder substituted. Substitution happens only after
// validation so an invalid value can never reach a shell.
func (d *document) render(values map[string][]string) ([]renderedStep, error) {
	resolved, err := d.resolve(values)
	if err != nil {
		return nil, err
	}
	steps := make([]renderedStep, 0, len(d.steps))
	for _, s := range d.steps {
		r, err := d.renderStep(s, resolved)
		if err != nil {
			return nil, err
		}
		steps = append(steps, r)
	}
	return steps, nil
}

// resolve returns the text of every parameter: supplied values or defaults,
// StringList values joined by newlines.
func (d *document) resolve(values map[string][]string) (map[string]string, error) {
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := d.params[name]; !ok {
			return nil, errorf(codeInvalidParameters, "parameter %q is not declared by document %q", name, d.name)
		}
	}
	resolved := make(map[string]string, len(d.params))
	for name, p := range d.params {
		vals, err := p.values(values)
		if err != nil {
			return nil, err
		}
		resolved[name] = strings.Join(vals, "\n")
	}
	return resolved, nil
}

func (p *parameter) values(supplied map[string][]string) ([]string, error) {
	vals, ok := supplied[p.name]
	if !ok {
		if !p.hasDefault {
			return nil, errorf(codeInvalidParameters, "parameter %q is required", p.name)
		}
		return p.def, nil
	}
	if !p.list && len(vals) != 1 {
		return nil, errorf(codeInvalidParameters, "parameter %q is a String and takes exactly one value, got %d", p.name, len(vals))
	}
	for _, v := range vals {
		if err := p.check(v); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

func (p *parameter) check(v string) error {
	if len(p.allowed) > 0 && !slices.Contains(p.allowed, v) {
		return errorf(codeInvalidParameters, "parameter %q value %q is not one of allowedValues %q", p.name, v, p.allowed)
	}
	if p.pattern != nil && !p.pattern.MatchString(v) {
		return errorf(codeInvalidParameters, "parameter %q value %q does not match allowedPattern %q", p.name, v, p.rawPattern)
	}
	return nil
}

func (d *document) renderStep(s step, resolved map[string]string) (renderedStep, error) {
	sub := func(text string) string {
		return placeholderRE.ReplaceAllStringFunc(text, func(m string) string {
			return resolved[placeholderRE.FindStringSubmatch(m)[1]]
		})
	}
	lines := make([]string, len(s.runCommand))
	for i, line := range s.runCommand {
		lines[i] = sub(line)
	}
	r := renderedStep{name: s.name, script: strings.Join(lines, "\n") + "\n", workdir: sub(s.workdir)}
	timeout := s.timeout
	if _, ok := d.params["executionTimeout"]; ok && timeout == "" {
		timeout = "{{ executionTimeout }}"
	}
	var err error
	if r.timeout, err = parseTimeout(s.name, sub(timeout)); err != nil {
		return renderedStep{}, err
	}
	return r, nil
}

func parseTimeout(stepName, text string) (time.Duration, error) {
	if text == "" {
		return defaultExecutionTimeout, nil
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 || n > maxExecutionTimeout {
		return 0, errorf(codeInvalidParameters, "timeoutSeconds of step %q is %q; want an integer from 1 to %d", stepName, text, maxExecutionTimeout)
	}
	return time.Duration(n) * time.Second, nil
}
