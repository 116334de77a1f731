package rescue

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// Agent runs on a compute node: it uploads jobs' scratch data (Rescue) and
// brings it back for the next run (Restore).
type Agent struct {
	S3  *s3.Client
	Log *zap.Logger
	// Root is the node's scratch mount; the agent never reads or writes
	// outside it. "{node}" is replaced by the node name.
	Root string
	// Concurrency is how many files move at once, and so how many requests
	// are in flight (DefaultConcurrency when 0). It costs no memory of its
	// own: file data is read into PartBuffers.
	Concurrency int
	// PartSize is the size of a multipart upload's parts and of the agent's
	// read buffers; files smaller than it go in one PUT (DefaultPartSize
	// when 0, at least 5 MiB as S3 requires).
	PartSize int64
	// PartBuffers is the memory for file data, in part-sized buffers
	// (DefaultPartBuffers when 0), shared by every transfer: a large file
	// uses what small files leave free, and a small file takes only its
	// own size. Memory for file data is bounded by PartBuffers x PartSize,
	// whatever the size or number of the files.
	PartBuffers int
	// RangeSize is the smallest range a larger file is restored in,
	// several at once (DefaultRangeSize when 0; ranges grow so that a file
	// has no more of them than there are streams); smaller files come in
	// one GET.
	RangeSize int64
	// Priority lists glob patterns of files to save first, used when the
	// plan has none (see ValidPriority).
	Priority []string
	// Progress is how often progress is logged.
	Progress time.Duration
	// Checkpoint is how often an interim manifest (complete: false) is
	// written, so an instance that dies mid-rescue still leaves a truthful record.
	Checkpoint time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time

	// afterRead, in tests, runs when a file has been read and before it is
	// checked for changes: the moment a writer would have to strike.
	afterRead func(rel string)
	// afterOpen, in tests, runs when a small file has been opened and
	// measured for its pack and before it is read.
	afterOpen func(rel string)
	// beforePart, in tests, runs before a part is sent: it can hold a
	// multipart upload open across the hard deadline.
	beforePart func(rel string, part int32)

	once  sync.Once
	tuned *s3.Client
}

// Defaults: 64 files at once, 8 MiB parts, 8 part buffers
// (hack/bench/BENCHMARKS.md has the measurements behind them). Against a
// real S3, where a small PUT takes tens of milliseconds, requests in flight
// decide how many small files a node saves in its two minutes; they cost
// only the files' own bytes. Larger parts, or more of them, only add
// memory: one large file alone still gets 8 parts in flight. File data
// takes at most 64 MiB.
const (
	DefaultConcurrency = 64
	DefaultPartSize    = 8 << 20
	DefaultPartBuffers = 8
	DefaultRangeSize   = 64 << 20
	minPartSize        = 5 << 20
)

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) concurrency() int {
	if a.Concurrency > 0 {
		return a.Concurrency
	}
	return DefaultConcurrency
}

func (a *Agent) partSize() int64 {
	if a.PartSize <= 0 {
		return DefaultPartSize
	}
	return max(a.PartSize, minPartSize)
}

func (a *Agent) partBuffers() int {
	if a.PartBuffers > 0 {
		return a.PartBuffers
	}
	return DefaultPartBuffers
}

func (a *Agent) rangeSize() int64 {
	if a.RangeSize > 0 {
		return a.RangeSize
	}
	return DefaultRangeSize
}

func (a *Agent) readHook(rel string) {
	if a.afterRead != nil {
		a.afterRead(rel)
	}
}

func (a *Agent) openHook(rel string) {
	if a.afterOpen != nil {
		a.afterOpen(rel)
	}
}

func (a *Agent) partHook(rel string, part int32) {
	if a.beforePart != nil {
		a.beforePart(rel, part)
	}
}

// client returns the S3 client with a connection pool as large as the
// agent's parallelism: the SDK's default keeps 10 idle connections per
// host, and every request beyond that would open (and the server accept)
// a new one.
func (a *Agent) client() *s3.Client {
	a.once.Do(func() {
		a.tuned = a.S3
		if a.S3 == nil {
			return
		}
		conns := a.concurrency() + a.partBuffers() + 4
		a.tuned = s3.New(a.S3.Options(), func(o *s3.Options) {
			if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
				o.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) {
					t.MaxIdleConns = max(t.MaxIdleConns, conns)
					t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, conns)
				})
			}
		})
	})
	return a.tuned
}

// root returns the scratch root for node, cleaned.
func (a *Agent) root(node string) string {
	return filepath.Clean(strings.ReplaceAll(a.Root, "{node}", node))
}

// openJob opens a job's directory beneath the node's scratch root by
// handle, without following a symlink at any component, and returns it
// with the identity its files are read as: the job's user (see
// readerCreds). fs.ErrNotExist means the job has no directory here.
func (a *Agent) openJob(node string, pj PlanJob) (*confine.Dir, *confine.Identity, error) {
	root := a.root(node)
	rel, ok := strings.CutPrefix(filepath.Clean(pj.Dir), root+string(filepath.Separator))
	if !ok || confine.CheckName(rel) != nil {
		return nil, nil, fmt.Errorf("job directory %s is outside the scratch root %s", pj.Dir, root)
	}
	r, err := confine.OpenRoot(root)
	if err != nil {
		return nil, nil, fmt.Errorf("scratch root: %w", err)
	}
	defer r.Close()
	d, err := r.OpenDir(rel)
	if confine.IsSymlinkErr(err) {
		return nil, nil, fmt.Errorf("job directory %s is not a directory of the scratch root (a symlink on the way is never followed): %w", pj.Dir, err)
	}
	if err != nil {
		return nil, nil, err
	}
	info, err := d.Stat()
	if err == nil && !info.Mode.IsDir() {
		err = fmt.Errorf("job directory %s is not a directory", pj.Dir)
	}
	var creds confine.Creds
	if err == nil {
		creds, err = readerCreds(pj, info)
	}
	var id *confine.Identity
	if err == nil {
		id, err = confine.NewIdentity(creds, readers)
	}
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d.As(id), id, nil
}

// readers is how many threads open a job's files as its user: an open is
// short, and the uploads themselves run on the agent's own goroutines.
const readers = 4

// readerCreds are the credentials a job's files are read with: those of
// the job's user, so the kernel refuses whatever the user could not have
// read themselves (a hard link to another user's file, a directory they
// may not search). The plan names the user; the directory's group, which
// the Prolog set from SLURM_JOB_GID, is the job's. A directory owned by
// someone else is not the job's: it was planted, and nothing in it is read.
func readerCreds(pj PlanJob, dir confine.Info) (confine.Creds, error) {
	switch {
	case pj.UID == nil: // a plan from a controller that did not say: the directory's owner
		return confine.LookupCreds(dir.UID, dir.GID), nil
	case dir.UID == *pj.UID:
		return confine.LookupCreds(*pj.UID, dir.GID), nil
	case dir.UID == 0: // made by root (an administrator, or a Prolog of old)
		return confine.LookupCreds(*pj.UID, -1), nil
	}
	return confine.Creds{}, fmt.Errorf("job directory %s is owned by uid %d, not the job's user (uid %d): not read", pj.Dir, dir.UID, *pj.UID)
}

// Deadlines are when the agent stops starting files (Soft) and when it
// abandons uploads in flight so the manifest still gets written (Hard).
type Deadlines struct {
	Soft, Hard time.Time
}

// ResolveDeadlines combines the plan's deadline with the instance's own
// notice from IMDS (zero when unreachable), keeping the same safety margin.
func ResolveDeadlines(plan time.Time, margin time.Duration, imds time.Time) Deadlines {
	reclaim := plan.Add(margin)
	if !imds.IsZero() && imds.Before(reclaim) {
		reclaim = imds
	}
	d := Deadlines{Soft: reclaim.Add(-margin), Hard: reclaim.Add(-margin / 3)}
	if plan.Before(d.Soft) {
		d.Soft = plan
	}
	return d
}
