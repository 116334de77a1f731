//go:build lab

package rescue_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// s3With is the lab's S3 client with one more step at the front of every
// request: a test's stand-in for what S3 or the network does to it.
func s3With(l *lab.Lab, name string, step func(ctx context.Context, params any) error) *s3.Client {
	opts := l.S3().Options()
	opts.APIOptions = append(opts.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc(name, func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if err := step(ctx, in.Parameters); err != nil {
				return middleware.InitializeOutput{}, middleware.Metadata{}, err
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	})
	return s3.New(opts)
}

// failPuts makes the first n PutObject operations (each after whatever
// retries the SDK would make) of keys ending in suffix fail.
func failPuts(l *lab.Lab, suffix string, n int) *s3.Client {
	var mu sync.Mutex
	return s3With(l, "failPuts", func(ctx context.Context, params any) error {
		if p, ok := params.(*s3.PutObjectInput); ok && awsmiddleware.GetOperationName(ctx) == "PutObject" && strings.HasSuffix(*p.Key, suffix) {
			mu.Lock()
			defer mu.Unlock()
			if n > 0 {
				n--
				return errors.New("exceeded maximum number of attempts (injected)")
			}
		}
		return nil
	})
}

// A file whose upload fails is tried again while the window lasts; one
// that keeps failing is listed as not saved, and the rest is complete.
func TestFailedUploadIsTriedAgain(t *testing.T) {
	l := lab.Get(t)
	for _, c := range []struct {
		failures int
		complete bool
	}{{2, true}, {3, false}} {
		root := t.TempDir()
		src := filepath.Join(root, "node-a", "job")
		writeFile(t, filepath.Join(src, "flaky.bin"), randomBytes(t, 64<<10))
		writeFile(t, filepath.Join(src, "fine.bin"), randomBytes(t, 64<<10))
		prefix := nodePrefix(t, l)
		a := newAgent(t, l, filepath.Join(root, "{node}"))
		a.S3 = failPuts(l, "/flaky.bin", c.failures)
		plan := &rescue.Plan{ID: "retry", Node: "node-a", Bucket: "spotrescue-lab", Jobs: []rescue.PlanJob{{JobID: "5", Dir: src, Prefix: prefix}}}
		res := a.Rescue(context.Background(), plan, rescue.Deadlines{Soft: time.Now().Add(time.Minute), Hard: time.Now().Add(90 * time.Second)})
		m := res[0].Manifest
		if m == nil || m.Complete != c.complete {
			t.Fatalf("%d failures: manifest %+v, %v; want complete=%v", c.failures, m, res[0].Err, c.complete)
		}
		if !c.complete && (len(m.Skipped) != 1 || m.Skipped[0].Path != "flaky.bin" || m.Skipped[0].Reason != rescue.SkipUploadFailed) {
			t.Errorf("%d failures: skipped %+v, want flaky.bin as upload failed", c.failures, m.Skipped)
		}
		if c.complete {
			if _, err := object(t, l, prefix+"flaky.bin"); err != nil {
				t.Errorf("%d failures: flaky.bin not in S3: %v", c.failures, err)
			}
		}
	}
}

// S3 answers 503 SlowDown beyond a prefix's request rate, and a node's
// agent, with a hundred small files in flight, can reach it (a whole
// reclaim of nodes writing to one bucket surely does). The agent backs off
// and saves every file; the SDK's default retry quota would have run dry
// after a hundred retries and failed the rest at once.
func TestSlowDownBacksOffAndSavesEverything(t *testing.T) {
	l := lab.Get(t)
	limits(t, l, `[{"service":"s3","operations":["PutObject"],"rate":60,"burst":5,"partition":"bucket"}]`)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	const files = 600
	for i := range files {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i/100), fmt.Sprintf("f%03d", i)), randomBytes(t, 1<<10))
	}
	prefix := nodePrefix(t, l)
	cfg := l.AWS.Copy()
	cfg.BaseEndpoint = aws.String(l.Env["LAB_FAULTPROXY_URL"])
	a := &rescue.Agent{S3: rescue.NewS3(cfg), Log: zaptest.NewLogger(t), Root: filepath.Join(root, "{node}"), Checkpoint: time.Hour}
	before := faultStats(t, l)["s3/PutObject/throttle"]
	plan := &rescue.Plan{ID: "slowdown", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{{JobID: "5", Dir: src, Prefix: prefix}}}
	res := a.Rescue(context.Background(), plan, rescue.Deadlines{Soft: time.Now().Add(90 * time.Second), Hard: time.Now().Add(100 * time.Second)})
	m := res[0].Manifest
	if m == nil || !m.Complete || regularFiles(m) != files {
		t.Fatalf("manifest %+v, %v; want all %d files saved", m, res[0].Err, files)
	}
	assertExact(t, l, m, prefix)
	if throttled := faultStats(t, l)["s3/PutObject/throttle"] - before; throttled == 0 {
		t.Fatal("no PUT was answered SlowDown: the test did not reach the rate limit")
	} else {
		t.Logf("%d PUTs answered SlowDown, all %d files saved", throttled, files)
	}
}
