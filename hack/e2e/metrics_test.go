//go:build lab

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// startPrometheus runs Debian's Prometheus scraping the controller every second.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing: apt-get install prometheus (make deps does)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	// The alerting rules operators install, evaluated against the real series.
	rules, _ := filepath.Abs("../../deploy/prometheus/rules.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: spotrescue\n    static_configs:\n      - targets: [%q]\n", rules, target)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logs, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lab.Eventually(t, 30*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr
}

// query runs an instant PromQL query and returns the first sample's value.
func query(t *testing.T, addr, q string) (float64, bool) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if body.Status != "success" || len(body.Data.Result) == 0 {
		return 0, false
	}
	var v float64
	fmt.Sscan(fmt.Sprint(body.Data.Result[0].Value[1]), &v)
	return v, true
}

// A real Prometheus scrapes the controller through a rescue and answers
// for its outcome and duration.
func TestPrometheusSeesTheRescue(t *testing.T) {
	e := setup(t)
	id, node := e.submit("")
	c := e.startController()
	prom := startPrometheus(t, c.metrics)
	lab.Eventually(t, 30*time.Second, "first scrape", func() bool {
		v, ok := query(t, prom, `up{job="spotrescue"}`)
		return ok && v == 1
	})
	e.send(warning(e.Instances[node], time.Now()))
	e.record(id, 0, state.Done, 60*time.Second)
	lab.Eventually(t, 30*time.Second, "the outcome in Prometheus", func() bool {
		v, ok := query(t, prom, `spotrescue_rescues_total{outcome="complete"}`)
		return ok && v == 1
	})
	if v, ok := query(t, prom, `spotrescue_rescue_duration_seconds_count`); !ok || v != 1 {
		t.Errorf("duration count %v %v", v, ok)
	}
	if v, ok := query(t, prom, `spotrescue_rescue_duration_seconds_sum`); !ok || v <= 0 || v > 60 {
		t.Errorf("duration sum %v %v", v, ok)
	}
	if v, ok := query(t, prom, `spotrescue_requeues_total{result="requeued"}`); !ok || v != 1 {
		t.Errorf("requeues %v %v", v, ok)
	}
	if v, ok := query(t, prom, `spotrescue_build_info`); !ok || v != 1 {
		t.Errorf("build info %v %v", v, ok)
	}
	dashboardQueriesWork(t, prom)
	alertRulesHealthy(t, prom)
}

// Every query of the Grafana dashboard runs against the real series, and
// the outcome panel shows the rescue.
func dashboardQueriesWork(t *testing.T, prom string) {
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile("../../deploy/grafana/spotrescue.json")
	if err != nil || json.Unmarshal(b, &dash) != nil {
		t.Fatalf("dashboard: %v", err)
	}
	grafana := strings.NewReplacer("$job", "spotrescue", "$__rate_interval", "1m", "$__range", "5m")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			q := grafana.Replace(tg.Expr)
			status, errText, n := queryResult(t, prom, q)
			if status != "success" {
				t.Errorf("panel %q: %s: %s", p.Title, q, errText)
			}
			if p.Title == "Rescues in range, by outcome" && n == 0 {
				t.Errorf("panel %q shows nothing after a rescue", p.Title)
			}
		}
	}
}

// The alerting rules load and evaluate cleanly, and none fires after a
// complete rescue.
func alertRulesHealthy(t *testing.T, prom string) {
	rules, err := os.ReadFile("../../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := strings.Count(string(rules), "- alert: ")
	lab.Eventually(t, 15*time.Second, fmt.Sprintf("the %d rules evaluated", alerts), func() bool {
		resp, err := http.Get("http://" + prom + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, State string
					}
				}
			}
		}
		json.NewDecoder(resp.Body).Decode(&body)
		n := 0
		for _, g := range body.Data.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return false
				}
				if r.State == "firing" {
					t.Errorf("alert %s fires after a complete rescue", r.Name)
				}
				n++
			}
		}
		return n == alerts
	})
}

// queryResult runs an instant query and returns its status, error and
// number of series.
func queryResult(t *testing.T, addr, q string) (status, errText string, series int) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Status, body.Error, len(body.Data.Result)
}

// promtool finds nothing to complain about in /metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	e := setup(t)
	c := e.startController()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.CommandContext(context.Background(), "promtool", "check", "metrics")
	check.Stdin = strings.NewReader(string(body))
	out, err := check.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, series := range []string{"spotrescue_events_received_total", "spotrescue_rescues_total", "spotrescue_rescue_duration_seconds", "spotrescue_dispatch_latency_seconds", "spotrescue_workqueue_depth", "spotrescue_build_info", "spotrescue_aws_calls_total"} {
		if !strings.Contains(string(body), "# HELP "+series+" ") {
			t.Errorf("/metrics has no help for %s", series)
		}
	}
}
