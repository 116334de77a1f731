package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/controller"
	"github.com/spotrescue/spotrescue/controller/notify"
)

// The alert rules pass promtool's check and their own unit tests
// (prometheus/rules_test.yml: each alert fires on its case, and not before).
func TestAlertRules(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is missing: install the prometheus package (make deps does)")
	}
	for _, args := range [][]string{{"check", "rules", "rules.yml"}, {"test", "rules", "rules_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The rules and the dashboard only use series the controller exports: a
// renamed metric must not leave an alert that can never fire.
func TestMonitoringUsesExportedSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	controller.NewMetrics(reg)
	notify.New(notify.Options{}, nil, zap.NewNop(), reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{"spotrescue_build_info": true} // registered by the command
	for _, f := range families {
		exported[f.GetName()] = true
	}
	// Vectors without a series yet are not gathered; their names are in the source.
	for _, file := range []string{"../controller/metrics.go", "../controller/notify/notify.go"} {
		src, _ := os.ReadFile(file)
		for _, m := range regexp.MustCompile(`Name: +"(spotrescue_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
			exported[m[1]] = true
		}
	}
	series := regexp.MustCompile(`spotrescue_[a-z_]+`)
	for _, file := range []string{"prometheus/rules.yml", "grafana/spotrescue.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range series.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !exported[name] && !exported[base] && !strings.HasSuffix(name, "_") {
				t.Errorf("%s uses %s, which the controller does not export", file, name)
			}
		}
	}
}

// The dashboard is valid Grafana JSON with the panels the issue asks for.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/spotrescue.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			ID      int
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	var all string
	for _, p := range d.Panels {
		if ids[p.ID] || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: duplicate id or no query", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			all += tg.Expr + "\n"
		}
	}
	for _, want := range []string{"spotrescue_rescues_total", "spotrescue_rescue_duration_seconds_bucket", "spotrescue_deadline_slack_seconds_bucket",
		"spotrescue_rescued_bytes_total", "spotrescue_dispatch_latency_seconds_bucket", "spotrescue_workqueue_depth"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel shows %s", want)
		}
	}
}
