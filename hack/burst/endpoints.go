package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// endpoints are the AWS APIs a burst runs against: a private moto_server
// in replay mode (nothing else competes for it), the lab's in lab mode.
type endpoints struct {
	aws, ssm string // base URLs
	cfg      aws.Config
	stop     func()
	pid      int // moto_server's, to measure what the burst costs the emulator
}

func (e *endpoints) env() []string {
	return []string{"AWS_ENDPOINT_URL=" + e.aws, "AWS_ENDPOINT_URL_SSM=" + e.ssm,
		"AWS_ACCESS_KEY_ID=burst", "AWS_SECRET_ACCESS_KEY=burst", "AWS_REGION=us-east-1"}
}

func (e *endpoints) sqs() *sqs.Client           { return sqs.NewFromConfig(e.cfg) }
func (e *endpoints) dynamodb() *dynamodb.Client { return dynamodb.NewFromConfig(e.cfg) }
func (e *endpoints) ssmClient() *ssm.Client {
	return ssm.NewFromConfig(e.cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(e.ssm) })
}

func newEndpoints(ctx context.Context, awsURL, ssmURL string) (*endpoints, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"), awsconfig.WithBaseEndpoint(awsURL))
	if err != nil {
		return nil, err
	}
	return &endpoints{aws: awsURL, ssm: ssmURL, cfg: cfg, stop: func() {}}, nil
}

// privateMoto starts a moto_server of the burst's own.
func privateMoto(ctx context.Context, dir string) (*endpoints, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	logf, _ := os.Create(filepath.Join(dir, "moto.log"))
	cmd := exec.Command("moto_server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/moto-api/"); err == nil {
			resp.Body.Close()
			os.Setenv("AWS_ACCESS_KEY_ID", "burst")
			os.Setenv("AWS_SECRET_ACCESS_KEY", "burst")
			e, err := newEndpoints(ctx, url, url)
			if err != nil {
				cmd.Process.Kill()
				return nil, err
			}
			e.stop = func() { cmd.Process.Kill(); cmd.Wait() }
			e.pid = cmd.Process.Pid
			return e, nil
		}
	}
	cmd.Process.Kill()
	return nil, fmt.Errorf("moto_server did not start; see %s", filepath.Join(dir, "moto.log"))
}
