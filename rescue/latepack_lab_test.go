//go:build lab

package rescue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap/zaptest"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// slowPuts adds d to every PutObject, as a far S3 would: per-file uploads
// then take files x d / concurrency, whatever the emulator's speed.
func slowPuts(l *lab.Lab, d time.Duration) *s3.Client {
	return s3With(l, "slowPuts", func(ctx context.Context, _ any) error {
		if awsmiddleware.GetOperationName(ctx) == "PutObject" {
			time.Sleep(d)
		}
		return nil
	})
}

// With PackLate, a rescue whose one-object-per-file pace would miss the
// deadline packs the small files left and saves everything in time; one
// with time to spare keeps one object per file.
func TestPackingWhenLate(t *testing.T) {
	l := lab.Get(t)
	const files = 400 // at 8 PUTs of 150 ms at once, 7.5 s one by one
	for _, tc := range []struct {
		name   string
		window time.Duration
		packed bool
	}{{"late", 5 * time.Second, true}, {"in time", time.Minute, false}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			src := filepath.Join(root, "node-a", "job")
			for i := range files {
				writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i/100), fmt.Sprintf("f%03d", i)), randomBytes(t, 2<<10))
			}
			prefix := nodePrefix(t, l)
			a := &rescue.Agent{S3: slowPuts(l, 150*time.Millisecond), Log: zaptest.NewLogger(t), Root: filepath.Join(root, "{node}"), Concurrency: 8, Checkpoint: time.Hour}
			plan := &rescue.Plan{ID: "late", Node: "node-a", Bucket: bucket, PackLate: true, Jobs: []rescue.PlanJob{{JobID: "9", Dir: src, Prefix: prefix}}}
			start := time.Now()
			res := a.Rescue(context.Background(), plan, rescue.Deadlines{Soft: start.Add(tc.window), Hard: start.Add(tc.window + 2*time.Second)})
			m := res[0].Manifest
			if m == nil || !m.Complete || regularFiles(m) != files {
				t.Fatalf("manifest %+v, %v; want all %d files saved", m, res[0].Err, files)
			}
			packed := 0
			for _, f := range m.Files {
				if f.Pack != "" {
					packed++
				}
			}
			if tc.packed && (packed == 0 || packed == files) {
				t.Errorf("%d of %d files packed: want the ones left after the first second", packed, files)
			}
			if !tc.packed && packed != 0 {
				t.Errorf("%d files packed with time to spare", packed)
			}
			assertExact(t, l, m, prefix)
			t.Logf("%d of %d files packed; took %s of a %s window", packed, files, time.Since(start).Round(time.Millisecond), tc.window)
		})
	}
}

func regularFiles(m *rescue.Manifest) int {
	n := 0
	for _, f := range m.Files {
		if f.Type == rescue.TypeFile {
			n++
		}
	}
	return n
}
