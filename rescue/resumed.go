package rescue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Resumed is word, left in S3 by the node that restored a rescued run's
// data for a later run, that the later run starts from it: the head node
// then counts the compute the rescue saved. A compute node's user can
// write there too (the instance role is theirs to use), so the head node
// reads it as a claim to check against Slurm, never as a measure: the
// compute counted comes from Slurm and the record, not from this.
type Resumed struct {
	JobID   string    `json:"job_id"`
	Rescued int       `json:"rescued"` // the rescued run the data came from
	Run     int       `json:"run"`     // the run that started with it
	Node    string    `json:"node"`    // where it was restored
	Status  Status    `json:"status"`  // Complete or Partial
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	Time    time.Time `json:"time"`
}

// ResumedDir is where, below a rescued node's prefix, the word of each
// restore of its data goes: inside the reserved _spotrescue/ directory, so
// no scratch file can collide with it.
const ResumedDir = "_spotrescue/resumed/"

// maxResumed bounds one Resumed object, maxResumedReads how many are read.
const (
	maxResumed      = 4 << 10
	maxResumedReads = 16
)

// resumedName is run-<run>-<node>.json.
var resumedName = regexp.MustCompile(`^run-([0-9]{1,9})-([A-Za-z0-9._-]{1,255})\.json$`)

// ResumedKey is the key of run's restore on node of the data under nodePrefix.
func ResumedKey(nodePrefix string, run int, node string) string {
	return nodePrefix + ResumedDir + "run-" + strconv.Itoa(run) + "-" + node + ".json"
}

// Statuses a restore that a run can resume from reports.
func (s Status) resumable() bool { return s == Complete || s == Partial }

// ReportResumed leaves r under the rescued node's prefix of uri (the run's
// SPOT_RESCUE_URI) for the head node.
func ReportResumed(ctx context.Context, c *s3.Client, uri, from string, r Resumed) error {
	bucket, prefix, err := splitURI(uri)
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := ResumedKey(prefix+from+"/", r.Run, r.Node)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentType: aws.String("application/json")})
	if err != nil {
		return fmt.Errorf("report the restore to s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}

// ReadResumed returns the first later run of job that reports having
// started from the data of run rescued under nodePrefix, or nil when none
// does. Objects that are too large, do not parse, or speak of another job,
// run or node than their key are ignored: whoever wrote them, they are no
// evidence. Candidates are read in run order, at most maxResumedReads of
// them, so junk under the prefix costs a bounded number of requests.
func ReadResumed(ctx context.Context, c *s3.Client, bucket, nodePrefix, job string, rescued int) (*Resumed, error) {
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(nodePrefix + ResumedDir)})
	if err != nil {
		return nil, fmt.Errorf("list s3://%s/%s%s: %w", bucket, nodePrefix, ResumedDir, err)
	}
	type candidate struct {
		key, node string
		run       int
	}
	var cands []candidate
	for _, o := range out.Contents {
		key := aws.ToString(o.Key)
		m := resumedName.FindStringSubmatch(strings.TrimPrefix(key, nodePrefix+ResumedDir))
		if m == nil || aws.ToInt64(o.Size) > maxResumed {
			continue
		}
		if run, _ := strconv.Atoi(m[1]); run > rescued {
			cands = append(cands, candidate{key, m[2], run})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return a.run - b.run })
	for _, cd := range cands[:min(len(cands), maxResumedReads)] {
		r, err := getResumed(ctx, c, bucket, cd.key)
		if err != nil {
			return nil, err
		}
		if r != nil && r.JobID == job && r.Rescued == rescued && r.Run == cd.run && r.Node == cd.node && r.Status.resumable() {
			return r, nil
		}
	}
	return nil, nil
}

// getResumed reads one Resumed object; nil when it is not one.
func getResumed(ctx context.Context, c *s3.Client, bucket, key string) (*Resumed, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var nsk interface{ ErrorCode() string }
		if errors.As(err, &nsk) && nsk.ErrorCode() == "NoSuchKey" {
			return nil, nil // removed since the listing
		}
		return nil, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxResumed+1))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	var r Resumed
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if len(data) > maxResumed || dec.Decode(&r) != nil {
		return nil, nil
	}
	return &r, nil
}
