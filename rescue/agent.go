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
)

// Agent runs on a compute node: it uploads jobs' scratch data (Rescue) and
// brings it back for the next run (Restore).
type Agent struct {
	S3  *s3.Client
	Log *zap.Logger
	// Root is the node's scratch mount; the agent never reads or writes
	// outside it. "{node}" is replaced by the node name.
	Root string
	// Concurrency is how many files move at once (DefaultConcurrency when 0).
	Concurrency int
	// PartSize is the size of a multipart upload's parts and of the agent's
	// read buffers; files smaller than it go in one PUT (DefaultPartSize
	// when 0, at least 5 MiB as S3 requires).
	PartSize int64
	// PartsInFlight is how many part buffers each of the Concurrency slots
	// may hold (DefaultPartsInFlight when 0). The buffers are shared: a
	// large file uses those small files leave free. Memory for file data
	// is bounded by Concurrency x PartsInFlight x PartSize, whatever the
	// size or number of the files.
	PartsInFlight int
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
	// beforePart, in tests, runs before a part is sent: it can hold a
	// multipart upload open across the hard deadline.
	beforePart func(rel string, part int32)

	once  sync.Once
	tuned *s3.Client
}

// Defaults measured on a 2-core machine against loopback S3 (hack/bench/BENCHMARKS.md):
// past 8 transfers at once the emulator, not the agent, is the limit;
// larger parts, or more of them per slot, only add memory (and were
// slower). The part buffers are shared, so one large file alone still
// gets 8 parts in flight. File data then takes at most 64 MiB.
const (
	DefaultConcurrency   = 8
	DefaultPartSize      = 8 << 20
	DefaultPartsInFlight = 1
	DefaultRangeSize     = 64 << 20
	minPartSize          = 5 << 20
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

func (a *Agent) partsInFlight() int {
	if a.PartsInFlight > 0 {
		return a.PartsInFlight
	}
	return DefaultPartsInFlight
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
		conns := a.concurrency()*a.partsInFlight() + 4
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

// jobDir checks that dir is a real directory inside the node's scratch root
// (not a symlink leading elsewhere) and returns its cleaned path.
func (a *Agent) jobDir(node, dir string) (string, error) {
	root := a.root(node)
	dir = filepath.Clean(dir)
	if !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return "", fmt.Errorf("job directory %s is outside the scratch root %s", dir, root)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("scratch root: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(realDir, realRoot+string(filepath.Separator)) {
		return "", fmt.Errorf("job directory %s resolves to %s, outside the scratch root", dir, realDir)
	}
	return dir, nil
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
