package controller

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The README's metrics reference lists every series the controller
// exports, with its labels.
func TestReadmeListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	// Touch the vectors that have no series until used.
	m.awsCalls.WithLabelValues("SQS", "ReceiveMessage")
	m.awsDuration.WithLabelValues("SQS", "ReceiveMessage")
	m.awsErrors.WithLabelValues("sqs", "ReceiveMessage")
	m.slurmCalls.WithLabelValues("squeue")
	m.slurmErrors.WithLabelValues("squeue")
	m.stepErrors.WithLabelValues("Held")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		labels := map[string]bool{}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		row := "`" + f.GetName()
		if !strings.Contains(string(readme), row) {
			t.Errorf("README's metrics table lacks %s", f.GetName())
			continue
		}
		for l := range labels {
			line := string(readme)[strings.Index(string(readme), row):]
			line = line[:strings.IndexByte(line, '\n')]
			if !strings.Contains(line, l) {
				t.Errorf("README's row for %s does not name its label %q", f.GetName(), l)
			}
		}
	}
}
