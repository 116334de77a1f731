//go:build lab

package rescue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/rescue"
)

// A compute node's user can write under the rescue prefix with the
// instance role, so the head node believes a resumed run's word only when
// it is small, parses, and matches its key, the job and the rescued run.
// HOSTILE.md: "a forged word that a run resumed from rescued data (another job, run or node than its key says, a failed restore, unknown fields, oversized)".
func TestReadResumedBelievesOnlyMatchingWords(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	prefix := nodePrefix(t, l)
	if w, err := rescue.ReadResumed(ctx, l.S3(), bucket, prefix, "21", 0); err != nil || w != nil {
		t.Fatalf("no words: got %+v, %v", w, err)
	}
	put := func(name, body string) {
		t.Helper()
		_, err := l.S3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + rescue.ResumedDir + name), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
	}
	forged := map[string]string{
		"run-2-n1.json": `{"job_id":"99","rescued":0,"run":2,"node":"n1","status":"complete"}`,                                  // another job
		"run-3-n1.json": `{"job_id":"21","rescued":1,"run":3,"node":"n1","status":"complete"}`,                                  // another rescued run
		"run-4-n1.json": `{"job_id":"21","rescued":0,"run":5,"node":"n1","status":"complete"}`,                                  // run differs from the key
		"run-1-n2.json": `{"job_id":"21","rescued":0,"run":1,"node":"n9","status":"complete"}`,                                  // node differs from the key
		"run-1-n3.json": `{"job_id":"21","rescued":0,"run":1,"node":"n3","status":"failed"}`,                                    // not resumed
		"run-1-n4.json": `{"job_id":"21","rescued":0,"run":1,"node":"n4","status":"complete","cpus":99999}`,                     // unknown field
		"run-1-n5.json": `{"job_id":"21","rescued":0,"run":1,"node":"n5","status":"complete"` + strings.Repeat(" ", 5000) + `}`, // too large
		"run-0-n6.json": `{"job_id":"21","rescued":0,"run":0,"node":"n6","status":"complete"}`,                                  // not a later run
		"notes.txt":     `{"job_id":"21","rescued":0,"run":1,"node":"n7","status":"complete"}`,
	}
	for name, body := range forged {
		put(name, body)
	}
	if w, err := rescue.ReadResumed(ctx, l.S3(), bucket, prefix, "21", 0); err != nil || w != nil {
		t.Fatalf("believed a forged word: %+v, %v", w, err)
	}
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	put("run-6-n8.json", `{"job_id":"21","rescued":0,"run":6,"node":"n8","status":"partial","files":3,"bytes":10,"time":"2026-12-07T11:00:00Z"}`)
	put("run-5-n8.json", `{"job_id":"21","rescued":0,"run":5,"node":"n8","status":"complete","files":3,"bytes":10,"time":"2026-12-07T10:00:00Z"}`)
	w, err := rescue.ReadResumed(ctx, l.S3(), bucket, prefix, "21", 0)
	if err != nil || w == nil || w.Run != 5 || w.Node != "n8" || !w.Time.Equal(at) {
		t.Fatalf("got %+v, %v; want the first later run, 5 on n8", w, err)
	}
	// What the agent writes is what the head node reads.
	err = rescue.ReportResumed(ctx, l.S3(), runURI(prefix), "node-a", rescue.Resumed{JobID: "21", Rescued: 0, Run: 4, Node: "n9", Status: rescue.Complete, Time: at})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := rescue.ReadResumed(ctx, l.S3(), bucket, prefix, "21", 0); err != nil || w == nil || w.Run != 4 {
		t.Fatalf("after ReportResumed: %+v, %v", w, err)
	}
}
