package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spotrescue/spotrescue/hack/lab"
)

// s3Endpoint is an S3 the benchmark runs against, and the process that
// serves it, whose CPU time is measured.
type s3Endpoint struct {
	name string // what serves it, with its version
	url  string
	pid  int
	stop func()
}

// startS3 starts a private S3 server of the given kind: "weed" (SeaweedFS,
// the default: multi-threaded, so that the server is not what the
// benchmark measures) or "moto" (moto_server, the lab's emulator, bound to
// one core). Its data lives on tmpfs, so that the VM's disk adds no noise.
// The lab's own S3 is shared with other tests, whose load would move the
// numbers and which the benchmark's gigabytes would slow in turn.
func startS3(kind, work string) (*s3Endpoint, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(shm(), "spotrescue-bench-"+kind+"-")
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	var name string
	switch kind {
	case "moto":
		// moto spills every object over 5 MiB to a temporary file.
		cmd = exec.Command("moto_server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		name = "moto_server " + output("python3", "-c", "import moto; print(moto.__version__)")
	case "weed":
		bin, err := weedBinary()
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		ports, err := freePorts(4)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		// weed mini runs master, volume, filer and S3 gateway in one
		// process; each needs a port of its own, all on loopback.
		cmd = exec.Command(bin, "mini", "-dir="+tmp, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
			"-s3.port="+strconv.Itoa(port), "-master.port="+strconv.Itoa(ports[0]), "-volume.port="+strconv.Itoa(ports[1]),
			"-filer.port="+strconv.Itoa(ports[2]), "-webdav.port="+strconv.Itoa(ports[3]))
		name = "SeaweedFS `weed mini` " + weedVersion
	default:
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("unknown S3 server %q (weed or moto)", kind)
	}
	return serve(cmd, name, port, work, kind, tmp)
}

// serve starts an S3 server process and waits for it to answer.
func serve(cmd *exec.Cmd, name string, port int, work, kind, tmp string) (*s3Endpoint, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, kind+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	e := &s3Endpoint{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), pid: cmd.Process.Pid, stop: func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}}
	if err := waitS3(e.url, 60*time.Second); err != nil {
		e.stop()
		return nil, fmt.Errorf("%s: %w (log: %s)", name, err, logf.Name())
	}
	return e, nil
}

// weedVersion is the SeaweedFS module hack/deps.sh builds `weed` from.
const weedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// weedBinary finds the `weed` that `hack/deps.sh bench` built.
func weedBinary() (string, error) {
	cache := os.Getenv("SPOTRESCUE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "spotrescue")
	}
	bin := filepath.Join(cache, "weed-"+weedVersion)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("SeaweedFS is not built (%s): run hack/deps.sh bench, or use -s3 moto", bin)
	}
	return bin, nil
}

// labS3 is the lab's own moto_server.
func labS3(l *lab.Lab) (*s3Endpoint, error) {
	url := l.Env["AWS_ENDPOINT_URL"]
	if url == "" {
		return nil, fmt.Errorf("AWS_ENDPOINT_URL is not set in %s/lab.env", l.Dir)
	}
	e := &s3Endpoint{name: "the lab's moto_server (shared with whatever else runs in the lab)", url: url, stop: func() {}}
	if pid, err := os.ReadFile(filepath.Join(l.Dir, "run", "moto.pid")); err == nil {
		e.pid, _ = strconv.Atoi(strings.TrimSpace(string(pid)))
	}
	return e, nil
}

// The network model puts hack/faultproxy between the tools and the S3
// server, configured to look like S3 in a region seen from an instance in
// it: each request waits 15-40 ms before it is forwarded (time to first
// byte of small objects), each connection moves at most 90 MB/s (AWS's
// performance guidelines size concurrency at about 85-90 MB/s per
// request), and requests beyond S3's rate per prefix, 3,500
// PUT/COPY/POST/DELETE and 5,500 GET/HEAD per second, are answered with
// 503 SlowDown. The whole bucket counts as one prefix: S3 starts a new
// bucket that way and splits it only after minutes of sustained load, and
// a rescue's burst lasts two.
var networkModel = map[string]any{
	"rules": []map[string]any{{"service": "s3", "operation": "*", "latency": "15ms", "latency_max": "40ms", "bandwidth": 90_000_000}},
	"limits": []map[string]any{
		{"service": "s3", "operations": []string{"PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload",
			"CompleteMultipartUpload", "AbortMultipartUpload", "DeleteObject", "DeleteObjects"}, "rate": 3500, "burst": 350, "partition": "bucket"},
		{"service": "s3", "operations": []string{"GetObject", "HeadObject", "ListObjectsV2", "ListMultipartUploads"}, "rate": 5500, "burst": 550, "partition": "bucket"},
	},
}

// startModel starts faultproxy with the network model in front of upstream.
func startModel(upstream *s3Endpoint, work string) (*s3Endpoint, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(filepath.Dir(self), "faultproxy")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the network model needs bin/faultproxy next to the bench binary (make build): %w", err)
	}
	conf := filepath.Join(work, "network-model.json")
	data, _ := json.MarshalIndent(networkModel, "", "  ")
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", upstream.url, "-ssm-upstream", upstream.url, "-config", conf)
	return serve(cmd, "faultproxy (network model)", port, work, "faultproxy", "")
}

func shm() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func freePort() (int, error) {
	ps, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// freePorts returns n distinct loopback ports free at the time of asking.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitS3 waits until the endpoint answers an S3 request (weed's gateway
// listens before its filer is ready).
func waitS3(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s3Client(ctx, url)
	if err != nil {
		return err
	}
	var last error
	for ctx.Err() == nil {
		probe, cancelProbe := context.WithTimeout(ctx, 2*time.Second)
		_, last = c.ListBuckets(probe, &s3.ListBucketsInput{})
		cancelProbe()
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not answering S3 requests at %s after %s: %v", url, timeout, last)
}

// s3Client addresses the endpoint path-style, as the agent does.
func s3Client(ctx context.Context, url string) (*s3.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(url)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}
