package rescue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// JobResult is what the agent saved of one job.
type JobResult struct {
	JobID    string
	URI      string // s3:// prefix of the job's data on this node
	Manifest *Manifest
	Err      error // the job could not be rescued at all (bad directory, manifest not written)
	// LeftToOther: another agent on the node was rescuing the job; Manifest,
	// if any, is the one it wrote.
	LeftToOther bool
}

// Summary is the line a person reads in the SSM command output.
func (r JobResult) Summary() string {
	m := r.Manifest
	switch {
	case m == nil && r.Err == nil && r.LeftToOther:
		return fmt.Sprintf("job %s: left to the pre-sync already running on this node; %s", r.JobID, r.URI)
	case m == nil:
		return fmt.Sprintf("job %s: not rescued: %v", r.JobID, r.Err)
	}
	state := "complete"
	switch {
	case m.Presync:
		state = "pre-sync"
	case !m.Complete:
		state = "PARTIAL"
	}
	if r.LeftToOther {
		state += " (by another agent on this node)"
	}
	secs := m.Finished.Sub(m.Started).Seconds()
	line := fmt.Sprintf("job %s: %s: %d entries, %s; sent %s in %.1fs (%s)", r.JobID, state, len(m.Files),
		HumanBytes(m.Bytes), HumanBytes(m.Uploaded), secs, mibps(m.Uploaded, secs))
	if m.Carried > 0 {
		line += fmt.Sprintf("; %d unchanged files carried over", m.Carried)
	}
	if len(m.Skipped) > 0 {
		line += fmt.Sprintf("; skipped %d (%s)", len(m.Skipped), skipReasons(m.Skipped))
	}
	return line + "; " + r.URI
}

func skipReasons(sk []Skipped) string {
	count := map[string]int{}
	var reasons []string
	for _, s := range sk {
		if count[s.Reason] == 0 {
			reasons = append(reasons, s.Reason)
		}
		count[s.Reason]++
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", count[r], r)
	}
	return strings.Join(parts, ", ")
}

// HumanBytes writes a size for people: 512 B, 1.5 MiB.
func HumanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// jobState collects one job's progress; mu guards the manifest and lost.
type jobState struct {
	pj PlanJob
	// tree is the job's directory, by handle; ident reads it as the
	// job's user. Both are nil for a job without a directory.
	tree  *confine.Dir
	ident *confine.Identity
	// base holds the regular files of the manifest already at the prefix
	// (a pre-sync's); carry says whether its checksums can be compared.
	base  map[string]File
	carry bool
	// done is the final manifest another agent left for this run: the job
	// is not rescued again (see loadBase).
	done *Manifest
	mu   sync.Mutex
	man  Manifest
	lost []string // keys whose upload failed part-way: an object may exist there
	// requests counts the S3 requests made for the job (the cost of its
	// rescue, in the manifest); retries of one request are not counted.
	requests atomic.Int64
}

// close lets go of the job's directory and the reader threads.
func (j *jobState) close() {
	if j.tree != nil {
		j.tree.Close()
		j.ident.Close()
	}
}

func (j *jobState) add(f File) {
	j.mu.Lock()
	j.man.Files = append(j.man.Files, f)
	j.mu.Unlock()
}

// saved records a regular file now in S3: sent by this run, or carried
// over from the previous manifest.
func (j *jobState) saved(f File, carried bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.man.Files = append(j.man.Files, f)
	j.man.Bytes += f.Size
	if carried {
		j.man.Carried++
	} else {
		j.man.Uploaded += f.Size
	}
}

func (j *jobState) skip(rel, reason string) {
	j.mu.Lock()
	j.man.Skipped = append(j.man.Skipped, Skipped{Path: rel, Reason: reason})
	j.mu.Unlock()
}

func (j *jobState) uncertain(key string) {
	j.mu.Lock()
	j.lost = append(j.lost, key)
	j.mu.Unlock()
}

// snapshot copies the manifest with its entries sorted by path.
func (j *jobState) snapshot() Manifest {
	j.mu.Lock()
	m := j.man
	m.Files = append([]File(nil), j.man.Files...)
	m.Skipped = append([]Skipped(nil), j.man.Skipped...)
	j.mu.Unlock()
	sort.Slice(m.Files, func(a, b int) bool { return m.Files[a].Path < m.Files[b].Path })
	sort.Slice(m.Skipped, func(a, b int) bool { return m.Skipped[a].Path < m.Skipped[b].Path })
	return m
}

// complete reports whether everything was saved that could be: special
// files, reserved names and files deleted meanwhile do not count.
func (j *jobState) complete() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, sk := range j.man.Skipped {
		switch sk.Reason {
		case SkipSpecial, SkipReserved, SkipVanished:
		default:
			return false
		}
	}
	return true
}

// session is one Rescue call in progress.
type session struct {
	agent    *Agent
	plan     *Plan
	alg      checksum
	patterns []string
	d        Deadlines
	log      *zap.Logger
	s3       *s3.Client
	pool     *partPool
	partSize int64
	started  time.Time
	// ctx is the caller's; hard is cancelled at the hard deadline (in-flight
	// parts stop, multipart uploads are aborted); grace a little after it, so
	// that single PUTs and completions already under way can finish.
	ctx, hard, grace context.Context
	stop             context.CancelFunc // cancels everything: a pre-sync superseded by the final rescue

	total, done struct{ files, bytes atomic.Int64 }
	sent        atomic.Int64 // bytes sent to S3, parts of aborted uploads included

	mu  sync.Mutex
	mpu map[string]string // multipart uploads in flight: upload id -> key

	packOnce sync.Once
	packer   *packer // small files being gathered, when the plan packs them

	// packing is set when small files go into packs: from the start with
	// Plan.Pack, or when late with Plan.PackLate (latepack.go).
	packing    atomic.Bool
	smallLeft  atomic.Int64 // small files not yet handed to a worker
	runStarted time.Time
}

// putGrace is how long after the hard deadline a PUT or a multipart
// completion under way may still finish: short, and leaving the manifest
// time to be written before the instance goes.
const putGrace = 2 * time.Second

// farAway stands in for "no deadline" in a pre-sync.
const farAway = 30 * 24 * time.Hour

// Rescue uploads every job of the plan and writes each job's manifest
// last. A job another agent on the node is rescuing is left to it (see
// lock.go); results come in the plan's order.
func (a *Agent) Rescue(ctx context.Context, p *Plan, d Deadlines) []JobResult {
	log := a.Log.With(zap.String("node", p.Node), zap.String("instance", p.Instance), zap.String("plan", p.ID))
	held, mine, theirs := a.lockJobs(p, log)
	defer held.unlock()
	results := make([]JobResult, len(p.Jobs))
	var wg sync.WaitGroup
	if len(theirs) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.afterOthers(ctx, p, d, theirs, results, log)
		}()
	}
	if len(mine) > 0 {
		for k, r := range a.rescue(ctx, p.subset(mine), d) {
			results[mine[k]] = r
		}
	}
	wg.Wait()
	return results
}

func (a *Agent) rescue(ctx context.Context, p *Plan, d Deadlines) []JobResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, release := a.newSession(ctx, p, d)
	defer release()
	s.stop = cancel
	results := make([]JobResult, len(p.Jobs))
	jobs := make([]*jobState, len(p.Jobs))
	var queue []upload
	for i, pj := range p.Jobs {
		results[i].JobID, results[i].URI = pj.JobID, "s3://"+p.Bucket+"/"+pj.Prefix
		js, files, err := s.prepare(pj)
		if js != nil && js.done != nil {
			results[i].Manifest, results[i].LeftToOther = js.done, true
			continue
		}
		jobs[i], results[i].Err = js, err
		queue = append(queue, files...)
	}
	order(queue, s.patterns)
	for _, u := range queue {
		s.total.files.Add(1)
		s.total.bytes.Add(u.size)
	}
	s.log.Info("rescue starting", zap.Strings("jobs", s.jobIDs()), zap.Int("files", len(queue)), zap.Int64("bytes", s.total.bytes.Load()),
		zap.Bool("presync", p.Presync), zap.String("checksum", string(s.alg)), zap.Strings("priority", s.patterns),
		zap.Time("deadline", s.d.Soft), zap.Time("hard_stop", s.d.Hard))
	s.run(queue, jobs)
	for _, js := range jobs {
		if js != nil {
			js.close()
		}
	}
	for i, js := range jobs {
		if js == nil {
			continue
		}
		m, err := s.finish(js)
		results[i].Manifest = m
		if err != nil && results[i].Err == nil {
			results[i].Err = err
		}
	}
	return results
}

func (a *Agent) newSession(ctx context.Context, p *Plan, d Deadlines) (*session, func()) {
	log := a.Log.With(zap.String("node", p.Node), zap.String("instance", p.Instance), zap.String("plan", p.ID))
	alg, err := checksumFor(p.Checksum)
	if err != nil {
		// A typo in the configuration must not cost the rescue.
		log.Warn("unknown checksum algorithm; using the default", zap.String("checksum", p.Checksum), zap.String("default", ChecksumAlgorithm))
		alg = ChecksumAlgorithm
	}
	if p.Presync {
		far := a.now().Add(farAway)
		d = Deadlines{Soft: far, Hard: far}
	}
	s := &session{agent: a, plan: p, alg: alg, patterns: a.priority(p, log), d: d, log: log, s3: a.client(),
		partSize: a.partSize(), started: a.now(), ctx: ctx, mpu: map[string]string{}}
	s.pool = newPartPool(s.partSize, a.partBuffers())
	var cancelHard, cancelGrace context.CancelFunc
	s.hard, cancelHard = context.WithDeadline(ctx, d.Hard)
	s.grace, cancelGrace = context.WithDeadline(ctx, d.Hard.Add(putGrace))
	return s, func() { cancelHard(); cancelGrace() }
}

// priority returns the plan's patterns, else the agent's, without any
// that are not valid globs.
func (a *Agent) priority(p *Plan, log *zap.Logger) []string {
	patterns := a.Priority
	if len(p.Priority) > 0 {
		patterns = p.Priority
	}
	var ok []string
	for _, pat := range patterns {
		if err := ValidPriority([]string{pat}); err != nil {
			log.Warn("ignoring a priority pattern", zap.Error(err))
			continue
		}
		ok = append(ok, pat)
	}
	return ok
}

// prepare reads a job's previous manifest and scans its directory.
func (s *session) prepare(pj PlanJob) (*jobState, []upload, error) {
	js := &jobState{pj: pj, man: Manifest{Version: manifestVersion, JobID: pj.JobID, Run: pj.Run, Node: s.plan.Node, Instance: s.plan.Instance,
		Presync: s.plan.Presync, Started: s.started.UTC(), Deadline: s.d.Soft.UTC(), Algorithm: string(s.alg), Files: []File{}}}
	tree, ident, dirErr := s.agent.openJob(s.plan.Node, pj)
	if dirErr != nil && !errors.Is(dirErr, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("job %s: %w", pj.JobID, dirErr)
	}
	js.tree, js.ident = tree, ident
	// Read before the directory is known to exist: a job whose directory
	// is gone still owns what a pre-sync left under its prefix.
	if err := s.loadBase(js); err != nil {
		js.close()
		return nil, nil, err
	}
	if js.done != nil {
		js.close()
		return js, nil, nil
	}
	if dirErr != nil {
		// A job without a scratch directory is saved as empty and complete:
		// there was nothing to lose.
		s.log.Info("job has no scratch directory", zap.String("job", pj.JobID), zap.String("dir", pj.Dir))
		return js, nil, nil
	}
	files, err := scan(js)
	if err != nil {
		err = fmt.Errorf("scan job %s: %w", pj.JobID, err)
	}
	return js, s.candidates(js, files), err
}

// run moves the queue: workers upload, verifiers check the files a
// previous manifest may already hold, and nothing new starts after the
// soft deadline.
func (s *session) run(queue []upload, jobs []*jobState) {
	soft, cancel := context.WithDeadline(s.hard, s.d.Soft)
	defer cancel()
	fresh, known := splitKnown(queue)
	redo := make(chan upload, len(known)) // never blocks a verifier
	go s.verifyAll(soft, known, redo)
	work := make(chan upload)
	var wg sync.WaitGroup
	for range s.agent.concurrency() {
		wg.Go(func() {
			for u := range work {
				s.save(u)
			}
		})
	}
	s.startPacing(fresh)
	stop := s.background(jobs)
	s.dispatch(soft, &feed{queue: fresh, redo: redo}, work)
	close(work)
	wg.Wait()
	s.flushPacks()
	stop()
}

// dispatch hands files to the workers in priority order until the feed is
// empty or the soft deadline passes; what is left is skipped.
func (s *session) dispatch(ctx context.Context, f *feed, work chan<- upload) {
	for {
		u, ok := f.pop(ctx)
		if !ok {
			break
		}
		if !send(ctx, work, u) {
			u.job.skip(u.rel, s.stopReason())
			break
		}
		s.handedOut(u)
	}
	if ctx.Err() != nil {
		left := f.rest()
		for _, u := range left {
			u.job.skip(u.rel, s.stopReason())
		}
		if len(left) > 0 {
			s.log.Warn("deadline reached: not starting the remaining files", zap.Int("files", len(left)))
		}
	}
}

func send(ctx context.Context, work chan<- upload, u upload) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case work <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// feed merges the ranked queue with the files verifiers found changed
// since the previous manifest, keeping the priority order.
type feed struct {
	queue   []upload
	next    int
	redo    <-chan upload
	pending []upload
}

func (f *feed) pop(ctx context.Context) (upload, bool) {
	f.drain(false)
	for len(f.pending) == 0 && f.next == len(f.queue) && f.redo != nil {
		select {
		case u, ok := <-f.redo:
			f.take(u, ok)
		case <-ctx.Done():
			return upload{}, false
		}
	}
	switch {
	case len(f.pending) > 0 && (f.next == len(f.queue) || before(f.pending[0], f.queue[f.next])):
		u := f.pending[0]
		f.pending = f.pending[1:]
		return u, true
	case f.next < len(f.queue):
		f.next++
		return f.queue[f.next-1], true
	}
	return upload{}, false
}

// drain moves what verifiers have sent into pending; wait waits for them
// to finish.
func (f *feed) drain(wait bool) {
	for f.redo != nil {
		if wait {
			u, ok := <-f.redo
			f.take(u, ok)
			continue
		}
		select {
		case u, ok := <-f.redo:
			f.take(u, ok)
		default:
			return
		}
	}
}

func (f *feed) take(u upload, ok bool) {
	if !ok {
		f.redo = nil
		return
	}
	f.pending = append(f.pending, u)
	sort.SliceStable(f.pending, func(i, j int) bool { return before(f.pending[i], f.pending[j]) })
}

// rest returns every file not handed out, once the verifiers have stopped.
func (f *feed) rest() []upload {
	f.drain(true)
	left := append(f.pending, f.queue[f.next:]...)
	f.pending, f.next = nil, len(f.queue)
	return left
}

// save uploads one file, reading it again once if it changed while read.
func (s *session) save(u upload) {
	if s.packing.Load() && u.size < s.packLimit() && s.savePacked(u) {
		return
	}
	changed, failed := 0, 0
	for {
		if s.hard.Err() != nil {
			u.job.skip(u.rel, s.stopReason())
			return
		}
		f, err := s.put(u)
		switch {
		case err == nil:
			u.job.saved(f, false)
			s.done.files.Add(1)
			s.done.bytes.Add(f.Size)
			return
		case errors.Is(err, errChanged) && changed < 1:
			changed++
			continue
		case s.classify(err) == SkipUploadFailed && failed < uploadRetries && s.agent.now().Before(s.d.Soft):
			// The SDK has retried the request already; a file is worth
			// a few more tries while the window lasts.
			failed++
			s.log.Info("upload failed; trying the file again", zap.String("job", u.job.pj.JobID), zap.String("file", u.rel), zap.Int("try", failed+1), zap.Error(err))
			sleepCtx(s.hard, time.Duration(failed)*200*time.Millisecond)
			continue
		}
		s.skipFailed(u, err)
		return
	}
}

// uploadRetries is how many times a file whose upload failed (each time
// after the SDK's own retries) is tried again before the deadline.
const uploadRetries = 2

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// skipFailed records why a file was not saved.
func (s *session) skipFailed(u upload, err error) {
	reason := s.classify(err)
	if reason == SkipUploadFailed {
		s.log.Warn("upload failed", zap.String("job", u.job.pj.JobID), zap.String("file", u.rel), zap.Error(err))
	}
	u.job.skip(u.rel, reason)
}

func (s *session) classify(err error) string {
	switch {
	case errors.Is(err, errChanged):
		return SkipChanging
	case s.hard.Err() != nil:
		return s.stopReason()
	case errors.Is(err, fs.ErrNotExist):
		return SkipVanished
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ELOOP):
		return SkipUnreadable
	}
	return SkipUploadFailed
}

// stopReason says why files are no longer started: the deadline, or the
// caller cancelled the rescue.
func (s *session) stopReason() string {
	if s.ctx.Err() != nil {
		return SkipCancelled
	}
	return SkipDeadline
}

// background logs progress and writes interim manifests until stopped.
func (s *session) background(jobs []*jobState) (stop func()) {
	progress := s.agent.Progress
	if progress <= 0 {
		progress = 5 * time.Second
	}
	checkpoint := s.agent.Checkpoint
	if checkpoint <= 0 {
		checkpoint = 5 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tp, tc, pace := time.NewTicker(progress), time.NewTicker(checkpoint), time.NewTicker(time.Second)
		defer tp.Stop()
		defer tc.Stop()
		defer pace.Stop()
		for {
			select {
			case <-done:
				return
			case <-tp.C:
				s.logProgress()
			case <-tc.C:
				s.checkpoint(jobs)
			case <-pace.C:
				s.pace()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (s *session) checkpoint(jobs []*jobState) {
	for _, js := range jobs {
		if js == nil {
			continue
		}
		if err := s.writeManifest(js, false, true); err != nil {
			s.log.Warn("interim manifest not written", zap.String("job", js.pj.JobID), zap.Error(err))
		}
	}
}

func (s *session) logProgress() {
	secs := time.Since(s.started).Seconds()
	b := s.done.bytes.Load()
	s.log.Info("rescue progress", zap.Strings("jobs", s.jobIDs()),
		zap.Int64("files_done", s.done.files.Load()), zap.Int64("files_total", s.total.files.Load()),
		zap.Int64("bytes_done", b), zap.Int64("bytes_total", s.total.bytes.Load()), zap.Int64("bytes_sent", s.sent.Load()),
		zap.String("rate", mibps(s.sent.Load(), secs)), zap.Duration("left", time.Until(s.d.Soft).Round(time.Second)))
}

func (s *session) jobIDs() []string {
	ids := make([]string, len(s.plan.Jobs))
	for i, j := range s.plan.Jobs {
		ids[i] = j.JobID
	}
	return ids
}

func mibps(b int64, secs float64) string {
	if secs <= 0 {
		return "- MiB/s"
	}
	return fmt.Sprintf("%.1f MiB/s", float64(b)/secs/(1<<20))
}

// finish cleans up after a job's uploads and writes its final manifest:
// objects that are not listed are deleted and multipart uploads left under
// the prefix aborted, so that the manifest lists exactly what S3 holds.
func (s *session) finish(js *jobState) (*Manifest, error) {
	s.deleteUnlisted(js)
	s.sweep(js)
	if err := s.writeManifest(js, !s.plan.Presync && js.complete(), false); err != nil {
		return nil, err
	}
	m := js.snapshot()
	s.log.Info("rescue finished", zap.String("job", js.pj.JobID), zap.Bool("complete", m.Complete), zap.Bool("presync", m.Presync),
		zap.Int("files", len(m.Files)), zap.Int64("bytes", m.Bytes), zap.Int64("uploaded_bytes", m.Uploaded),
		zap.Int("carried_files", m.Carried), zap.Int("skipped", len(m.Skipped)),
		zap.String("uri", "s3://"+s.plan.Bucket+"/"+js.pj.Prefix))
	return &m, nil
}

// manifestRetries gives the manifest, without which nothing saved can be
// restored, more and quicker attempts than other requests: the SDK's
// backoff grows to 20 s, and a few unlucky throttles in a row would spend
// the whole 10 s the write has.
func manifestRetries(o *s3.Options) {
	o.Retryer = retry.AddWithMaxAttempts(retry.AddWithMaxBackoffDelay(o.Retryer, 500*time.Millisecond), 10)
}

// writeManifest uploads the job's manifest as it stands. It runs on its own
// short context: it must be written even when the deadline or the caller
// has cancelled the uploads.
func (s *session) writeManifest(js *jobState, complete, interim bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	if s.plan.Presync {
		if err := s.stillPresync(ctx, js); err != nil {
			return err
		}
	}
	js.mu.Lock()
	js.man.Complete, js.man.Interim = complete, interim
	js.man.Finished = s.agent.now().UTC()
	js.man.Requests = js.requests.Add(1) // this manifest's PUT included
	js.mu.Unlock()
	m := js.snapshot()
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("encode manifest of job %s: %w", js.pj.JobID, err)
	}
	_, err = s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.plan.Bucket),
		Key:         aws.String(ManifestKey(js.pj.Prefix)),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}, manifestRetries)
	if err != nil {
		return fmt.Errorf("write manifest of job %s: %w", js.pj.JobID, err)
	}
	return nil
}
