package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// dataSet is one shape of scratch data.
type dataSet struct {
	name  string
	files int
	size  int64
	reps  int // runs per tool by default: (c) takes minutes per run
}

func (d dataSet) bytes() int64 { return int64(d.files) * d.size }

var dataSets = map[string]dataSet{
	"a": {name: "1000 x 100 KiB", files: 1000, size: 100 << 10, reps: 3},
	"b": {name: "4 x 256 MiB", files: 4, size: 256 << 20, reps: 3},
	"c": {name: "20,000 x 4 KiB", files: 20_000, size: 4 << 10, reps: 1},
	// Not run by default: shows the agent's memory does not grow with file size.
	"d": {name: "1 x 2 GiB", files: 1, size: 2 << 30, reps: 1},
}

// result is one measured transfer.
type result struct {
	caseName, op, tool string
	network            string // "none" or "model"
	set                dataSet
	wall, cpu, server  time.Duration
	rssKiB             int64
	median, max        time.Duration // over runs, when repeated
	runs               int
}

func (r result) mibps() float64 { return float64(r.set.bytes()) / r.wall.Seconds() / (1 << 20) }

// bench is one benchmark run.
type bench struct {
	o      options
	s3     *s3.Client // straight to the server: checks and clean-up pay no latency
	self   string
	server *s3Endpoint
	model  *s3Endpoint // faultproxy with the network model, once started
	url    string      // where the tools send their requests
	runID  string
}

// newBench sets up the S3 server and the bucket.
func newBench(ctx context.Context, l *lab.Lab, o options) (*bench, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, self: self, runID: fmt.Sprintf("run-%d", time.Now().Unix())}
	if o.sharedS3 {
		b.server, err = labS3(l)
	} else {
		b.server, err = startS3(o.server, o.work)
	}
	if err != nil {
		return nil, err
	}
	if b.s3, err = s3Client(ctx, b.server.url); err != nil {
		b.server.stop()
		return nil, err
	}
	_, err = b.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(o.bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		b.server.stop()
		return nil, fmt.Errorf("create bucket %s: %w", o.bucket, err)
	}
	return b, nil
}

// useNetwork points the tools at the server directly ("none") or through
// the network model ("model"): the agent children find it in
// AWS_ENDPOINT_URL, the aws CLI in --endpoint-url.
func (b *bench) useNetwork(network string) error {
	b.url = b.server.url
	if network == "model" {
		if b.model == nil {
			m, err := startModel(b.server, b.o.work)
			if err != nil {
				return err
			}
			b.model = m
		}
		b.url = b.model.url
	}
	return os.Setenv("AWS_ENDPOINT_URL", b.url)
}

// close empties and removes the bench bucket, stops a private S3 and the
// network model, and removes the data unless kept.
func (b *bench) close(ctx context.Context) {
	_ = b.deletePrefix(ctx, "")
	_, _ = b.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b.o.bucket)})
	if b.model != nil {
		b.model.stop()
	}
	b.server.stop()
	if !b.o.keep {
		os.RemoveAll(b.o.work)
	}
}

// runCase measures every tool on one data set, repeat times, alternating
// which tool goes first, and keeps the best of each transfer.
func (b *bench) runCase(ctx context.Context, name, network string) ([]result, error) {
	set := dataSets[name]
	src := filepath.Join(b.o.work, name, "src")
	if err := generate(src, set); err != nil {
		return nil, err
	}
	samples := map[string][]result{}
	reps := set.reps
	if b.o.repeat > 0 {
		reps = b.o.repeat
	}
	for rep := range reps {
		tools := append([]string(nil), b.o.tools...)
		if rep%2 == 1 {
			slices.Reverse(tools)
		}
		for _, tool := range tools {
			up, down, err := b.roundTrip(ctx, name, tool, rep)
			up.network, down.network = network, network
			if err != nil {
				return nil, err
			}
			samples[tool+"/upload"] = append(samples[tool+"/upload"], up)
			samples[tool+"/restore"] = append(samples[tool+"/restore"], down)
		}
	}
	var out []result
	for _, tool := range b.o.tools {
		out = append(out, best(samples[tool+"/upload"]), best(samples[tool+"/restore"]))
	}
	return out, nil
}

// roundTrip uploads and restores a data set with one tool, checks both
// moved everything, and deletes the tool's objects: neither tool lists or
// stores into a bucket the other has filled.
func (b *bench) roundTrip(ctx context.Context, name, tool string, rep int) (up, down result, err error) {
	set := dataSets[name]
	dir := filepath.Join(b.o.work, name)
	prefix := fmt.Sprintf("%s/%s/%s-%d/", b.runID, name, tool, rep)
	dst := filepath.Join(dir, "restore-"+tool)
	os.RemoveAll(dst)
	defer os.RemoveAll(dst)
	if up, err = b.measure(ctx, name, "upload", tool, set, b.upload(tool, filepath.Join(dir, "src"), prefix)); err != nil {
		return up, down, err
	}
	if err = b.checkUploaded(ctx, tool, prefix, set); err != nil {
		return up, down, fmt.Errorf("%s upload: %w", tool, err)
	}
	if down, err = b.measure(ctx, name, "restore", tool, set, b.restore(tool, prefix, dst)); err != nil {
		return up, down, err
	}
	if err = checkRestored(dst, set); err != nil {
		return up, down, fmt.Errorf("%s restore: %w", tool, err)
	}
	fmt.Fprintf(os.Stderr, "bench: %s %-10s upload %7.1f MiB/s %6.1f s  restore %7.1f MiB/s %6.1f s\n", name, tool, up.mibps(), up.wall.Seconds(), down.mibps(), down.wall.Seconds())
	return up, down, b.deletePrefix(ctx, prefix)
}

// best returns the fastest sample, with the median and slowest times of
// all: on a shared machine other work only ever adds time, so the fastest
// run is the closest to each tool's own cost.
func best(rs []result) result {
	sorted := append([]result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].wall < sorted[j].wall })
	b := sorted[0]
	b.median, b.max, b.runs = sorted[len(sorted)/2].wall, sorted[len(sorted)-1].wall, len(sorted)
	return b
}

func (b *bench) upload(tool, src, prefix string) []string {
	if tool == "aws" {
		return []string{"aws", "--endpoint-url", b.url, "s3", "sync", "--only-show-errors", src, "s3://" + b.o.bucket + "/" + prefix}
	}
	args := []string{"-dir", src, "-bucket", b.o.bucket, "-prefix", prefix + agentNode + "/"}
	if tool == "agent-pack" {
		args = append(args, "-pack")
	}
	return b.agent("rescue", tool, args...)
}

func (b *bench) restore(tool, prefix, dst string) []string {
	if tool == "aws" {
		return []string{"aws", "--endpoint-url", b.url, "s3", "sync", "--only-show-errors", "s3://" + b.o.bucket + "/" + prefix, dst}
	}
	return b.agent("restore", tool, "-uri", "s3://"+b.o.bucket+"/"+prefix, "-target", dst)
}

func (b *bench) agent(op, tool string, args ...string) []string {
	argv := append([]string{b.self, childMode, op}, b.o.agentArg...)
	if b.o.pprof != "" {
		argv = append(argv, "-pprof", filepath.Join(b.o.pprof, fmt.Sprintf("%s-%s-%s.pprof", b.runID, tool, op)))
	}
	return append(argv, args...)
}

// measure runs one transfer as a child process and reads its peak RSS and
// CPU time from wait4, and the emulator's CPU time from /proc.
func (b *bench) measure(ctx context.Context, name, op, tool string, set dataSet, argv []string) (result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Data written by the previous step (generation, a restore) is flushed
	// first, so that no transfer pays for another's writeback.
	syscall.Sync()
	server0 := cpuTime(b.server.pid)
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	server := cpuTime(b.server.pid) - server0
	if err != nil {
		return result{}, fmt.Errorf("%s %s of %s: %w\n%s", tool, op, name, err, tail(stderr.String(), 2000))
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r := result{caseName: name, op: op, tool: tool, set: set, wall: wall, server: server}
	if ru != nil {
		r.rssKiB = ru.Maxrss // KiB on Linux
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r, nil
}

// cpuTime is a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime and stime the 12th and 13th.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// generate writes a data set of incompressible files, 100 per directory,
// unless the same set is already there.
func generate(dir string, set dataSet) error {
	marker := dir + ".done"
	if have, err := os.ReadFile(marker); err == nil && string(have) == set.name {
		return nil
	}
	os.RemoveAll(dir)
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, min(set.size, 8<<20))
	for i := range set.files {
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%05d.dat", i))
		if err := writeRandom(p, set.size, rng, buf); err != nil {
			return err
		}
	}
	return os.WriteFile(marker, []byte(set.name), 0o644)
}

func writeRandom(p string, size int64, rng *rand.ChaCha8, buf []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	for left := size; left > 0; left -= int64(len(buf)) {
		b := buf[:min(left, int64(len(buf)))]
		rng.Read(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// checkUploaded makes sure a tool really stored the whole set: as many
// objects as files, or, for the agent, a complete manifest listing them
// all (packed files share objects).
func (b *bench) checkUploaded(ctx context.Context, tool, prefix string, set dataSet) error {
	if tool != "aws" {
		m, err := rescue.ReadManifest(ctx, b.s3, b.o.bucket, prefix+agentNode+"/")
		if err != nil {
			return err
		}
		files := 0
		for _, f := range m.Files {
			if f.Type == rescue.TypeFile {
				files++
			}
		}
		if !m.Complete || files != set.files || m.Bytes != set.bytes() {
			return fmt.Errorf("the manifest lists %d files, %d bytes (complete %v); want %d, %d", files, m.Bytes, m.Complete, set.files, set.bytes())
		}
	}
	n, size := 0, int64(0)
	pages := s3.NewListObjectsV2Paginator(b.s3, &s3.ListObjectsV2Input{Bucket: aws.String(b.o.bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			if strings.HasSuffix(aws.ToString(o.Key), rescue.ManifestName) {
				continue
			}
			n++
			size += aws.ToInt64(o.Size)
		}
	}
	if size != set.bytes() || (tool != "agent-pack" && n != set.files) {
		return fmt.Errorf("S3 holds %d objects, %d bytes; want %d, %d", n, size, set.files, set.bytes())
	}
	return nil
}

func checkRestored(dir string, set dataSet) error {
	n, size := 0, int64(0)
	err := filepath.WalkDir(dir, func(_ string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		info, err := de.Info()
		if err == nil {
			n++
			size += info.Size()
		}
		return err
	})
	if err == nil && (n != set.files || size != set.bytes()) {
		err = fmt.Errorf("restored %d files, %d bytes; want %d, %d", n, size, set.files, set.bytes())
	}
	return err
}

// deletePrefix removes every object under prefix, 1,000 per request.
func (b *bench) deletePrefix(ctx context.Context, prefix string) error {
	pages := s3.NewListObjectsV2Paginator(b.s3, &s3.ListObjectsV2Input{Bucket: aws.String(b.o.bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]s3types.ObjectIdentifier, len(page.Contents))
		for i, o := range page.Contents {
			ids[i] = s3types.ObjectIdentifier{Key: o.Key}
		}
		if _, err := b.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(b.o.bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			return fmt.Errorf("clean up %s: %w", prefix, err)
		}
	}
	return nil
}
