package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

func run(ctx context.Context, o options) error {
	var l *lab.Lab
	if o.mode == "lab" {
		var err error
		if l, err = lab.Load(); err != nil {
			return fmt.Errorf("the lab is not up (make lab-up): %w", err)
		}
	}
	repo, _ := os.Getwd()
	bin, _ := filepath.Abs(o.bin)
	dir, err := os.MkdirTemp("", "spotrescue-burst-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	var ep *endpoints
	if o.mode == "replay" {
		ep, err = privateEmulators(ctx, dir, o.perService, o.motoSQS != "stock")
	} else {
		ep, err = newEndpoints(ctx, l.Env["AWS_ENDPOINT_URL"], l.Env["AWS_ENDPOINT_URL"], l.Env["AWS_ENDPOINT_URL_SSM"])
		if b, rerr := os.ReadFile(filepath.Join(l.Dir, "run", "moto.pid")); rerr == nil && ep != nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			ep.emulators["moto (all)"] = pid
		}
	}
	if err != nil {
		return err
	}
	defer ep.stop()
	if o.network == "model" {
		stopModel, err := startAPIModel(ep, bin, dir)
		if err != nil {
			return err
		}
		defer stopModel()
	}
	c, err := prepare(ctx, l, ep, o, repo, bin, dir)
	if err != nil {
		return err
	}
	fmt.Printf("burst: %d interruptions, %d jobs, mode %s\n", len(c.nodes), c.jobs, o.mode)
	res, err := measure(ctx, ep, o, c, bin)
	if err != nil {
		return err
	}
	var base *result
	if o.baseline {
		if base, err = baseline(ctx, ep, c); err != nil {
			return err
		}
	}
	report(os.Stdout, o, c, res, base)
	if o.plot != "" {
		return plotBurst(o.plot, fmt.Sprintf("%d interruptions x %d jobs, network %s", len(c.nodes), o.jobsPerNode, o.network), res, base)
	}
	return nil
}

// prepare creates the burst's cluster: nodes with jobs, tables, queue.
func prepare(ctx context.Context, l *lab.Lab, ep *endpoints, o options, repo, bin, dir string) (*cluster, error) {
	c := &cluster{name: "burst", dir: dir, instances: map[string]string{}, document: "SpotRescue-Rescue"}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	c.stateTbl = "burst-state-" + suffix
	switch o.mode {
	case "replay":
		name := cmp.Or(o.nodeName, "burst-dy-c5-")
		for i := 1; i <= o.n; i++ {
			n := fmt.Sprintf("%s%d", name, i)
			c.nodes = append(c.nodes, n)
			c.instances[n] = instanceID(i)
		}
		c.binDir = filepath.Join(dir, "slurm")
		os.MkdirAll(c.binDir, 0o755)
		for _, name := range []string{"squeue", "sinfo", "scontrol", "scancel"} {
			if err := os.Symlink(filepath.Join(bin, "slurmreplay"), filepath.Join(c.binDir, name)); err != nil {
				return nil, err
			}
		}
		jobs, err := replayState(repo, c.binDir, c.nodes, o.jobsPerNode)
		if err != nil {
			return nil, err
		}
		c.jobs = jobs
		c.nodeTbl = "parallelcluster-slurm-burst-" + suffix
		c.document = "SpotRescue-Rescue-" + suffix
		if err := nodeTable(ctx, ep.dynamodb(), c.nodeTbl, c.instances); err != nil {
			return nil, err
		}
		if err := document(ctx, ep.ssmClient(), c.document, repo); err != nil {
			return nil, fmt.Errorf("register the document in moto's SSM: %w", err)
		}
	case "lab":
		if len(l.Nodes()) < o.n {
			return nil, fmt.Errorf("-mode lab -n %d needs a lab with that many nodes: make lab-down; LAB_NODES=%d make lab-up", o.n, o.n)
		}
		c.name = "lab"
		for i := 1; i <= o.n; i++ {
			n := fmt.Sprintf("compute-%d", i)
			c.nodes = append(c.nodes, n)
			c.instances[n] = l.Instances[n]
		}
		c.nodeTbl = "parallelcluster-slurm-lab"
		out, err := exec.Command("sh", "-c", "dirname $(command -v scontrol)").Output()
		if err != nil {
			return nil, err
		}
		c.binDir = strings.TrimSpace(string(out))
		if c.jobs, err = submitJobs(l, c.nodes, o.jobsPerNode); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("-mode %q: use replay or lab", o.mode)
	}
	if err := state.CreateTable(ctx, ep.dynamodb(), c.stateTbl); err != nil {
		return nil, err
	}
	if o.mode == "replay" {
		if err := createBucket(ctx, ep); err != nil {
			return nil, err
		}
	}
	var err error
	c.queueURL, err = newQueue(ctx, ep.sqsClient(), "burst-"+suffix)
	return c, err
}

// submitJobs starts sleeping jobs on every node and waits until they run.
func submitJobs(l *lab.Lab, nodes []string, perNode int) (int, error) {
	var ids []string
	for _, n := range nodes {
		for range perNode {
			out, err := l.Command("sbatch", "--parsable", "-n1", "-w", n, "-o", "/dev/null", "--wrap", "sleep 900").Output()
			if err != nil {
				return 0, fmt.Errorf("sbatch on %s: %w", n, err)
			}
			ids = append(ids, strings.TrimSpace(string(out)))
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		out, _ := l.Command("squeue", "-h", "-t", "R", "-o", "%i").Output()
		if len(strings.Fields(string(out))) >= len(ids) {
			return len(ids), nil
		}
		time.Sleep(time.Second)
	}
	return 0, fmt.Errorf("jobs did not all start within 3 minutes")
}

// result is what one way of handling the burst achieved.
type result struct {
	name        string
	latencies   []time.Duration // warning received -> its SSM command sent
	received    []time.Duration // burst start -> each warning received, in latencies' order
	last        time.Duration   // burst start -> last dispatch
	awsCalls    map[string]float64
	awsSeconds  map[string]float64 // by label(series): time spent in the calls
	slurmCalls  map[string]float64
	cpuSeconds  float64
	emulatorCPU map[string]float64 // each emulator's CPU seconds from the burst to the last dispatch
	peakRSS     int64
	idleRSS     int64
	idleCPU     float64
	dispatched  int
	expired     int // warnings reached after their two minutes
	interrupted int
}

// controller runs `spotrescue controller` for the burst.
type controllerProc struct {
	cmd     *exec.Cmd
	metrics string
}

func startController(ctx context.Context, ep *endpoints, c *cluster, bin, profile string) (*controllerProc, error) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(c.dir, "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`cluster: %s
region: us-east-1
queue_url: %s
state_table: %s
node_table: %s
bucket: spotrescue-lab
spool_dir: %s/spool
scratch:
  root: %s/scratch/{node}
  path_template: %s/scratch/{node}/{job_id}
slurm:
  bin_dir: %s
ssm:
  document: %s
metrics:
  listen: %s
`, c.name, c.queueURL, c.stateTbl, c.nodeTbl, c.dir, c.dir, c.dir, c.binDir, c.document, addr)), 0o644)
	p := &controllerProc{metrics: addr}
	args := []string{"controller", "--config", cfg}
	if profile != "" {
		abs, _ := filepath.Abs(profile)
		args = append(args, "--cpu-profile", abs)
	}
	p.cmd = exec.CommandContext(ctx, filepath.Join(bin, "spotrescue"), args...)
	// In replay mode SSM is moto's, which records commands and runs
	// nothing: only dispatch is measured.
	p.cmd.Env = append(append(os.Environ(), ep.env()...), "SLURMREPLAY_DIR="+c.binDir, "SLURMREPLAY_LOG="+filepath.Join(c.dir, "slurm-calls.log"))
	logf, _ := os.Create(filepath.Join(c.dir, "controller.log"))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("controller not ready; see %s", filepath.Join(c.dir, "controller.log"))
}

// procStats reads the controller's CPU seconds and resident memory.
func procStats(pid int) (cpu float64, rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	paren := strings.LastIndexByte(string(b), ')')
	if pid == 0 || err != nil || paren < 0 || paren+2 > len(b) {
		return 0, 0, 0
	}
	f := strings.Fields(string(b[paren+2:]))
	if len(f) > 13 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // USER_HZ
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return cpu, rss, hwm
}

func scrape(addr string) map[string]float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		out[name] = v
	}
	return out
}

func delta(before, after map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if strings.HasPrefix(k, prefix) && v-before[k] > 0 {
			out[k] = v - before[k]
		}
	}
	return out
}

// measure runs the burst through the real controller.
func measure(ctx context.Context, ep *endpoints, o options, c *cluster, bin string) (*result, error) {
	p, err := startController(ctx, ep, c, bin, o.cpuProfile)
	if err != nil {
		return nil, err
	}
	defer func() { p.cmd.Process.Signal(syscall.SIGTERM); p.cmd.Wait() }()
	pid := p.cmd.Process.Pid
	res := &result{name: "spotrescue", interrupted: len(c.nodes)}
	// Idle: what the controller costs between events.
	cpu0, _, _ := procStats(pid)
	time.Sleep(10 * time.Second)
	cpu1, rss, _ := procStats(pid)
	res.idleCPU, res.idleRSS = cpu1-cpu0, rss
	before := scrape(p.metrics)
	start, err := sendWarnings(ctx, ep.sqsClient(), c.queueURL, c.nodes, c.instances)
	if err != nil {
		return nil, err
	}
	emu0 := ep.cpu()
	if err := waitDispatched(ctx, p.metrics, c.jobs); err != nil {
		return nil, err
	}
	res.emulatorCPU = sub(ep.cpu(), emu0)
	// Records are written just after their dispatch: wait for the last.
	var recs []*state.Record
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(time.Second) {
		if recs, err = records(ctx, state.New(ep.dynamodb(), c.stateTbl), c.name, start); err != nil {
			return nil, err
		}
		n := 0
		for _, r := range recs {
			if !r.Times.Dispatched.IsZero() {
				n++
			}
		}
		if n >= c.jobs || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Times.Dispatched.IsZero() {
			continue
		}
		// Receipt -> dispatch: Detected is when the controller received the
		// warning, Dispatched when SendCommand returned.
		res.latencies = append(res.latencies, r.Times.Dispatched.Sub(r.Times.Detected))
		res.received = append(res.received, r.Times.Detected.Sub(start))
		res.last = max(res.last, r.Times.Dispatched.Sub(start))
	}
	if o.slowest > 0 {
		printSlowest(recs, start, o.slowest)
	}
	res.dispatched = len(res.latencies)
	time.Sleep(2 * time.Second) // let the dispatch write and the metrics settle
	after := scrape(p.metrics)
	res.expired = int(after[`spotrescue_events_ignored_total{reason="expired"}`] - before[`spotrescue_events_ignored_total{reason="expired"}`])
	res.awsCalls = delta(before, after, "spotrescue_aws_calls_total")
	res.awsSeconds = map[string]float64{}
	for k, v := range delta(before, after, "spotrescue_aws_call_duration_seconds_sum") {
		res.awsSeconds[label(k)] = v
	}
	res.slurmCalls = delta(before, after, "spotrescue_slurm_calls_total")
	cpu2, _, hwm := procStats(pid)
	res.cpuSeconds, res.peakRSS = cpu2-cpu1, hwm
	return res, nil
}

// sendWarnings puts one warning per node on the queue, in batches of 10,
// all delayed to become visible within a second of the instant it
// returns: the burst. Sending a thousand messages takes moto seconds; without the delay
// the controller would compete with the sending for the emulator, which
// EventBridge never does.
func sendWarnings(ctx context.Context, q *sqs.Client, url string, nodes []string, instances map[string]string) (time.Time, error) {
	at := time.Now().Add(5*time.Second + time.Duration(len(nodes))*20*time.Millisecond).Truncate(time.Second).Add(time.Second)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(nodes)/10+1)
	for i := 0; i < len(nodes); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, n := range nodes[i:min(i+10, len(nodes))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(warningBody(instances[n], at))})
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			delay := int32(math.Ceil(time.Until(at).Seconds()))
			if delay <= 0 {
				errs <- errors.New("sending the burst took longer than the lead it was given")
				return
			}
			for k := range entries {
				entries[k].DelaySeconds = delay
			}
			if _, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return at, err
	}
	time.Sleep(time.Until(at))
	return at, nil
}

func warningBody(instance string, at time.Time) string {
	return fmt.Sprintf(`{"version":"0","id":%q,"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":%q,"region":"us-east-1","resources":["arn:aws:ec2:us-east-1a:instance/%s"],"detail":{"instance-id":%q,"instance-action":"terminate"}}`,
		uuid.NewString(), at.UTC().Format(time.RFC3339), instance, instance)
}

// waitDispatched watches the controller's own count of dispatches (polling
// the table would load the emulator the controller is measured against)
// until every job is dispatched, or nothing has moved for 30 s: warnings
// the controller could not reach within their two minutes are counted as
// expired, and the report says so.
func waitDispatched(ctx context.Context, metrics string, jobs int) error {
	last, moved := -1.0, time.Now()
	for time.Since(moved) < 30*time.Second {
		m := scrape(metrics)
		n := m["spotrescue_dispatch_latency_seconds_count"]
		if n >= float64(jobs) {
			return nil
		}
		if progress := n + m[`spotrescue_events_ignored_total{reason="expired"}`]; progress != last {
			last, moved = progress, time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// records reads the burst's records once, at the end.
func records(ctx context.Context, store *state.Store, cluster string, since time.Time) ([]*state.Record, error) {
	var all []*state.Record
	token := ""
	for {
		recs, next, err := store.List(ctx, state.ListOptions{Cluster: cluster, Since: since.Add(-time.Minute), Limit: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// printSlowest lists the records that waited longest for their dispatch,
// with when (from the burst's start) they were received and dispatched.
func printSlowest(recs []*state.Record, start time.Time, n int) {
	recs = slices.DeleteFunc(slices.Clone(recs), func(r *state.Record) bool { return r.Times.Dispatched.IsZero() })
	slices.SortFunc(recs, func(a, b *state.Record) int {
		return cmp.Compare(b.Times.Dispatched.Sub(b.Times.Detected), a.Times.Dispatched.Sub(a.Times.Detected))
	})
	fmt.Printf("slowest dispatches (seconds from the burst's start):\n")
	for _, r := range recs[:min(n, len(recs))] {
		fmt.Printf("  job %-6s received %6.2f  dispatched %6.2f  waited %5.2f  event %s  errors %d\n", r.JobID,
			r.Times.Detected.Sub(start).Seconds(), r.Times.Dispatched.Sub(start).Seconds(),
			r.Times.Dispatched.Sub(r.Times.Detected).Seconds(), r.Event, len(r.Errors))
	}
}
