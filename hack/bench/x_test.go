//go:build lab

package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

func TestX(t *testing.T) {
	l := lab.Get(t)
	var conc int
	fmt.Sscan(os.Getenv("CONC"), &conc)
	a := &rescue.Agent{S3: l.S3(), Log: zap.NewNop(), Root: "/tmp/bx", Concurrency: conc, Checkpoint: time.Hour}
	p := &rescue.Plan{ID: "x", Node: "n", Bucket: os.Getenv("BUCKET"), Jobs: []rescue.PlanJob{{JobID: "1", Dir: os.Getenv("DIR"), Prefix: fmt.Sprintf("bx/agent-%d/", time.Now().UnixNano())}}}
	t0 := time.Now()
	r := a.Rescue(context.Background(), p, rescue.Deadlines{Soft: time.Now().Add(time.Hour), Hard: time.Now().Add(time.Hour)})
	d := time.Since(t0)
	t.Logf("conc %d: %v files=%d bytes=%d %.1f MiB/s", conc, d, len(r[0].Manifest.Files), r[0].Manifest.Bytes, float64(r[0].Manifest.Bytes)/d.Seconds()/(1<<20))
}
