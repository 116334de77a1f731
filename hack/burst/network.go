package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// apiModel is hack/faultproxy's configuration for the burst's AWS calls
// with -network model: every call of the controller and the baseline waits
// 10-30 ms before it is forwarded, the order of an AWS API call from an
// instance in its Region (AWS publishes no per-API latency; this is an
// assumption, and the same for both). Published request quotas are not
// modelled as limits because none binds a 1,000-node burst: SQS standard
// queues take "a nearly unlimited number of API calls per second, per API
// action", an on-demand DynamoDB table 40,000 write request units a second;
// for SSM Run Command no rate is published that we could cite
// (BENCHMARKS.md).
var apiModel = map[string]any{
	"rules": []map[string]any{{"service": "*", "operation": "*", "latency": "10ms", "latency_max": "30ms"}},
}

// startAPIModel puts faultproxy with apiModel in front of the emulators
// and points what env() gives the controller and the baseline at it; the
// harness's own clients keep calling the emulators directly.
func startAPIModel(ep *endpoints, bin, dir string) (stop func(), err error) {
	conf := filepath.Join(dir, "api-model.json")
	data, _ := json.Marshal(apiModel)
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, _ := os.Create(filepath.Join(dir, "faultproxy.log"))
	cmd := exec.Command(filepath.Join(bin, "faultproxy"), "-listen", addr, "-upstream", ep.aws,
		"-route", "sqs="+ep.sqs, "-route", "ssm="+ep.ssm, "-config", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start faultproxy: %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/_fault/rules"); err == nil {
			resp.Body.Close()
			ep.front = url
			return stop, nil
		}
	}
	stop()
	return nil, fmt.Errorf("faultproxy did not start; see %s", logf.Name())
}
