//go:build lab

package rescue_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// A controller that dies between SendCommand and its record write sends the
// command again: the second agent must not race the first on the job's
// prefix. It waits, then reports the first one's manifest as the outcome,
// and S3 holds exactly what that manifest lists.
func TestSecondAgentLeavesTheJobToTheFirst(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFiles(t, src, 20, 100<<10)
	prefix := nodePrefix(t, l)
	d := inAMinute()
	job := rescue.PlanJob{JobID: "77", Run: 1, Dir: src, Prefix: prefix}

	first := newAgent(t, l, filepath.Join(root, "{node}"))
	reading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rescue.SetAfterRead(first, func(string) {
		once.Do(func() { close(reading) })
		<-release
	})
	var firstResult rescue.JobResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		firstResult = first.Rescue(context.Background(), &rescue.Plan{ID: "first", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{job}}, d)[0]
	}()
	<-reading

	second := newAgent(t, l, filepath.Join(root, "{node}"))
	core, logs := observer.New(zap.InfoLevel)
	second.Log = zap.New(core)
	secondDone := make(chan rescue.JobResult)
	go func() {
		secondDone <- second.Rescue(context.Background(), &rescue.Plan{ID: "second", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{job}}, d)[0]
	}()
	for logs.FilterMessageSnippet("waiting for it").Len() == 0 {
		select {
		case r := <-secondDone:
			t.Fatalf("the second agent did not wait for the first: %+v", r)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(release)
	<-done
	r := <-secondDone
	t.Log(firstResult.Summary())
	t.Log(r.Summary())
	if firstResult.Err != nil || !firstResult.Manifest.Complete || firstResult.LeftToOther {
		t.Fatalf("first agent: %+v", firstResult)
	}
	if r.Err != nil || !r.LeftToOther || r.Manifest == nil || !r.Manifest.Started.Equal(firstResult.Manifest.Started) {
		t.Fatalf("second agent did not leave the job to the first: %+v", r)
	}
	stored, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix)
	if err != nil || !stored.Started.Equal(firstResult.Manifest.Started) || len(stored.Files) != 20 {
		t.Fatalf("manifest in S3: %+v, %v", stored, err)
	}
	assertExact(t, l, stored, prefix)
}

// An agent that dies holding jobs' locks lets go of them with its life; the
// agent waiting on them finds only an interim manifest (job 78) or none
// (job 80) and rescues both itself, alongside the job nobody held (81).
func TestAgentRescuesJobsWhoseHolderDied(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	var jobs []rescue.PlanJob
	for _, id := range []string{"78", "80", "81"} {
		src := filepath.Join(root, "node-a", id)
		writeFiles(t, src, 5, 50<<10)
		jobs = append(jobs, rescue.PlanJob{JobID: id, Dir: src, Prefix: nodePrefix(t, l)})
	}
	// What a killed agent leaves: an interim manifest, and the locks it
	// held for as long as it lived.
	interim := `{"version":1,"job_id":"78","run":0,"node":"node-a","complete":false,"interim":true,"checksum_algorithm":"CRC32C","files":[]}`
	if _, err := l.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(rescue.ManifestKey(jobs[0].Prefix)), Body: strings.NewReader(interim)}); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(root, "node-a", ".spotrescue"), 0o700)
	for _, id := range []string{"78", "80"} {
		lock, err := os.Create(filepath.Join(root, "node-a", ".spotrescue", id+"-0.rescue.lock"))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(500*time.Millisecond, func() { lock.Close() })
	}

	a := newAgent(t, l, filepath.Join(root, "{node}"))
	d := inAMinute()
	results := a.Rescue(context.Background(), &rescue.Plan{ID: "after", Node: "node-a", Bucket: bucket, Jobs: jobs}, d)
	for i, r := range results {
		t.Log(r.Summary())
		if r.JobID != jobs[i].JobID || r.Err != nil || r.LeftToOther || r.Manifest == nil || !r.Manifest.Complete || r.Manifest.Interim || len(r.Manifest.Files) != 5 {
			t.Fatalf("job %s: %+v", jobs[i].JobID, r)
		}
		assertExact(t, l, r.Manifest, jobs[i].Prefix)
	}
}

// writeFiles puts n files of size random bytes, f-0.dat ... f-<n-1>.dat, in dir.
func writeFiles(t *testing.T, dir string, n, size int) {
	t.Helper()
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f-%d.dat", i)), randomBytes(t, size))
	}
}

// A repeat final agent for a run whose final rescue already finished (its
// controller died before recording the first) leaves the first's manifest
// as it is, even at or past the deadline: it once rescued again, deleted
// the objects it had no time to re-verify, and replaced a complete
// manifest with a partial one.
func TestRepeatFinalAgentLeavesTheFinishedRescue(t *testing.T) {
	l := lab.Get(t)
	root := t.TempDir()
	src := filepath.Join(root, "node-a", "job")
	writeFiles(t, src, 20, 64<<10)
	prefix := nodePrefix(t, l)
	job := rescue.PlanJob{JobID: "79", Run: 0, Dir: src, Prefix: prefix}
	first := newAgent(t, l, filepath.Join(root, "{node}")).Rescue(context.Background(), &rescue.Plan{ID: "first", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{job}}, inAMinute())[0]
	if first.Err != nil || !first.Manifest.Complete {
		t.Fatalf("first: %+v", first)
	}
	gone := time.Now().Add(-time.Second) // the repeat comes after the deadline
	repeat := newAgent(t, l, filepath.Join(root, "{node}")).Rescue(context.Background(), &rescue.Plan{ID: "repeat", Node: "node-a", Bucket: bucket, Jobs: []rescue.PlanJob{job}}, rescue.Deadlines{Soft: gone, Hard: gone})[0]
	if repeat.Err != nil || !repeat.LeftToOther || repeat.Manifest == nil || !repeat.Manifest.Complete {
		t.Errorf("repeat: %+v; want the first's complete manifest reported", repeat)
	}
	stored, err := rescue.ReadManifest(context.Background(), l.S3(), bucket, prefix)
	if err != nil || !stored.Complete || !stored.Finished.Equal(first.Manifest.Finished) {
		t.Fatalf("the manifest at the prefix: %+v, %v; want the first's", stored, err)
	}
	assertExact(t, l, first.Manifest, prefix)
}
