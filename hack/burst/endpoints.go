package main

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// endpoints are the AWS APIs a burst runs against: private moto_servers in
// replay mode (nothing else competes for them), the lab's in lab mode.
type endpoints struct {
	aws  string // DynamoDB and S3, and any service without its own
	sqs  string
	ssm  string // where the controller's agents are started
	moto string // an SSM that records commands and runs nothing: the baseline's
	// front, when set, is faultproxy's model of AWS's latency, through
	// which the controller and the baseline make every call.
	front string
	cfg   aws.Config
	stop  func()
	// emulators are the emulator processes by what they serve, to measure
	// what the burst costs each.
	emulators map[string]int
}

func (e *endpoints) env() []string {
	aws, sqs, ssm := e.aws, e.sqs, e.ssm
	if e.front != "" {
		aws, sqs, ssm = e.front, e.front, e.front
	}
	return []string{"AWS_ENDPOINT_URL=" + aws, "AWS_ENDPOINT_URL_SQS=" + sqs, "AWS_ENDPOINT_URL_SSM=" + ssm,
		"AWS_ACCESS_KEY_ID=burst", "AWS_SECRET_ACCESS_KEY=burst", "AWS_REGION=us-east-1"}
}

// baselineSSM is where the baseline's SendCommands go: moto's SSM, through
// the model when there is one (faultproxy routes by the request's service).
func (e *endpoints) baselineSSM() string {
	if e.front != "" {
		return e.front
	}
	return e.moto
}

func (e *endpoints) sqsClient() *sqs.Client {
	return sqs.NewFromConfig(e.cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.sqs) })
}
func (e *endpoints) dynamodb() *dynamodb.Client { return dynamodb.NewFromConfig(e.cfg) }
func (e *endpoints) ssmClient() *ssm.Client {
	return ssm.NewFromConfig(e.cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(e.ssm) })
}

// cpu reads each emulator's CPU seconds so far.
func (e *endpoints) cpu() map[string]float64 {
	out := map[string]float64{}
	for name, pid := range e.emulators {
		out[name], _, _ = procStats(pid)
	}
	return out
}

func newEndpoints(ctx context.Context, awsURL, sqsURL, ssmURL string) (*endpoints, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"), awsconfig.WithBaseEndpoint(awsURL))
	if err != nil {
		return nil, err
	}
	return &endpoints{aws: awsURL, sqs: sqsURL, ssm: ssmURL, moto: awsURL, cfg: cfg, stop: func() {}, emulators: map[string]int{}}, nil
}

// motoSQS is moto_server with SQS queue attributes computed when read:
// moto 5.2.1 scans the whole queue three times for every message it sends
// or receives (see the file's comment for the profile).
//
//go:embed moto_sqs.py
var motoSQS []byte

// privateEmulators starts moto_servers of the burst's own. perService
// gives SQS, SSM, and DynamoDB with S3 a process each: moto is one Python
// process per server, so one server for everything makes every call wait
// behind every other, and a burst measures the emulator's queue rather than
// the controller. fastSQS runs the SQS process on moto_sqs.py.
func privateEmulators(ctx context.Context, dir string, perService, fastSQS bool) (*endpoints, error) {
	services := []string{"all"}
	if perService {
		services = []string{"sqs", "ssm", "dynamodb+s3"}
	}
	type started struct {
		url string
		cmd *exec.Cmd
		err error
	}
	var mu sync.Mutex
	procs := map[string]started{}
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			url, cmd, err := startMoto(dir, svc, fastSQS && svc == "sqs")
			mu.Lock()
			procs[svc] = started{url, cmd, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	stop := func() {
		for _, p := range procs {
			if p.cmd != nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	}
	for _, svc := range services {
		if procs[svc].err != nil {
			stop()
			return nil, procs[svc].err
		}
	}
	os.Setenv("AWS_ACCESS_KEY_ID", "burst")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "burst")
	url := func(svc string) string {
		if p, ok := procs[svc]; ok {
			return p.url
		}
		return procs["all"].url
	}
	e, err := newEndpoints(ctx, url("dynamodb+s3"), url("sqs"), url("ssm"))
	if err != nil {
		stop()
		return nil, err
	}
	e.moto = e.ssm
	e.stop = stop
	for svc, p := range procs {
		name := "moto (" + svc + ")"
		if fastSQS && svc == "sqs" {
			name = "moto_sqs.py (sqs)"
		}
		e.emulators[name] = p.cmd.Process.Pid
	}
	return e, nil
}

// startMoto starts one moto_server, or moto_sqs.py when fastSQS, and waits
// until it answers.
func startMoto(dir, name string, fastSQS bool) (string, *exec.Cmd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	log := filepath.Join(dir, "moto-"+strings.ReplaceAll(name, "+", "-")+".log")
	logf, _ := os.Create(log)
	cmd := exec.Command("moto_server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	if fastSQS {
		script := filepath.Join(dir, "moto_sqs.py")
		if err := os.WriteFile(script, motoSQS, 0o644); err != nil {
			return "", nil, err
		}
		cmd = exec.Command("python3", script, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start moto_server: %w", err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/moto-api/"); err == nil {
			resp.Body.Close()
			return url, cmd, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return "", nil, fmt.Errorf("moto_server did not start; see %s", log)
}

// busy says how much of the time each emulator spent on the CPU.
func busy(cpu map[string]float64, over time.Duration) string {
	var names []string
	for n := range cpu {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f s, %.0f%%", n, cpu[n], 100*cpu[n]/over.Seconds()))
	}
	return strings.Join(parts, "; ")
}

// sub returns b - a per emulator.
func sub(b, a map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}
