package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

// instanceIDRE accepts EC2 ids (short and long form) and managed-instance
// (mi-) ids, the forms SendCommand accepts.
var instanceIDRE = regexp.MustCompile(`^(i-[0-9a-f]{8}([0-9a-f]{9})?|mi-[0-9a-f]{17})$`)

// instance maps an EC2 instance id to the lab node that plays it.
type instance struct {
	ID      string            `json:"id"`
	Node    string            `json:"node"`
	Workdir string            `json:"workdir"`
	Env     map[string]string `json:"env"`
	// terminated is set by the lab control endpoint and guarded by
	// server.mu.
	terminated bool
}

type instancesFile struct {
	Instances []*instance `json:"instances"`
}

// loadInstances reads the instance mapping file.
func loadInstances(path string) (map[string]*instance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read instances file: %w", err)
	}
	// Unknown fields are rejected: a misspelt "workdir" would otherwise run
	// the rescue in the wrong directory without a word.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f instancesFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse instances file %s: %w", path, err)
	}
	return indexInstances(f.Instances)
}

func indexInstances(list []*instance) (map[string]*instance, error) {
	byID := make(map[string]*instance, len(list))
	for i, inst := range list {
		if inst == nil || !instanceIDRE.MatchString(inst.ID) {
			return nil, fmt.Errorf("instances[%d]: id must match %s", i, instanceIDRE)
		}
		if _, dup := byID[inst.ID]; dup {
			return nil, fmt.Errorf("instances[%d]: duplicate id %s", i, inst.ID)
		}
		if inst.Node == "" {
			inst.Node = inst.ID
		}
		byID[inst.ID] = inst
	}
	if len(byID) == 0 {
		return nil, fmt.Errorf("no instances defined")
	}
	return byID, nil
}
