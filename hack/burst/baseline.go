package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/middleware"
)

// The baseline is the seed's shape: a function invoked once per event that
// sends `aws s3 sync /scratch s3://bucket/<instance-id>/` to the instance,
// one SendCommand per instance, one event at a time (no cold starts). It
// runs as a child process so its CPU and memory are its own.

func init() {
	// The child mode must be seen before main's flags are used.
	for i, a := range os.Args {
		if a == "-child-baseline" && i+1 < len(os.Args) {
			os.Exit(runBaselineChild(os.Args[i+1], os.Args[i+2]))
		}
	}
}

// baselineReport is what the child prints.
type baselineReport struct {
	Received   []time.Time        `json:"received"`
	Dispatched []time.Time        `json:"dispatched"`
	Calls      map[string]float64 `json:"calls"`
}

func runBaselineChild(queueURL, startNanos string) int {
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	calls := map[string]float64{}
	cfg.APIOptions = append(cfg.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			mu.Lock()
			calls[awsmiddleware.GetServiceID(ctx)+" "+awsmiddleware.GetOperationName(ctx)]++
			mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	})
	q, s := sqs.NewFromConfig(cfg), ssm.NewFromConfig(cfg)
	var rep baselineReport
	for empty := 0; empty < 3; {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 1, WaitTimeSeconds: 1})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		m := out.Messages[0]
		rep.Received = append(rep.Received, time.Now())
		var ev struct {
			Detail struct {
				InstanceID string `json:"instance-id"`
			} `json:"detail"`
		}
		json.Unmarshal([]byte(aws.ToString(m.Body)), &ev)
		id := ev.Detail.InstanceID
		_, err = s.SendCommand(ctx, &ssm.SendCommandInput{
			DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{id},
			Parameters: map[string][]string{"commands": {"aws s3 sync /scratch s3://spotrescue-lab/" + id + "/"}},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		rep.Dispatched = append(rep.Dispatched, time.Now())
		q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle})
	}
	rep.Calls = calls
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

// baseline feeds the same burst to the seed-shaped handler.
func baseline(ctx context.Context, ep *endpoints, c *cluster) (*result, error) {
	url, err := newQueue(ctx, ep.sqsClient(), c.stateTbl+"-baseline")
	if err != nil {
		return nil, err
	}
	start, err := sendWarnings(ctx, ep.sqsClient(), url, c.nodes, c.instances)
	if err != nil {
		return nil, err
	}
	emu0 := ep.cpu()
	self, _ := os.Executable()
	cmd := exec.CommandContext(ctx, self, "-child-baseline", url, fmt.Sprint(start.UnixNano()))
	// moto's SSM records commands without running them.
	cmd.Env = append(append(os.Environ(), ep.env()...), "AWS_ENDPOINT_URL_SSM="+ep.baselineSSM())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	var rep baselineReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, err
	}
	emu1 := ep.cpu()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	res := &result{name: "baseline (one event at a time)", interrupted: len(c.nodes), dispatched: len(rep.Dispatched), awsCalls: map[string]float64{}}
	for i, t := range rep.Dispatched {
		res.latencies = append(res.latencies, t.Sub(rep.Received[i]))
		res.received = append(res.received, rep.Received[i].Sub(start))
		res.last = max(res.last, t.Sub(start))
	}
	for k, v := range rep.Calls {
		res.awsCalls[k] = v
	}
	res.emulatorCPU = sub(emu1, emu0)
	res.cpuSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	res.peakRSS = ru.Maxrss << 10
	return res, nil
}
