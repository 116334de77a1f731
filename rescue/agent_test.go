package rescue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestPriorityPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"*.ckpt", "model.ckpt", true},
		{"*.ckpt", "a/b/model.ckpt", true},
		{"*.ckpt", "model.ckpt.tmp", false},
		{"ckpt", "ckpt/step-1/x.bin", true}, // a directory name anywhere
		{"ckpt", "out/ckpt", true},
		{"ckpt", "ckpts/x", false},
		{"out/step-*", "out/step-9/x.dat", true}, // leading directories of the path
		{"out/step-*", "out/step-9", true},
		{"out/step-*", "a/out/step-9", false}, // anchored at the job directory
		{"/out/*.dat", "out/a.dat", true},
		{"out/", "out/a.dat", true},
	} {
		if got := matchPriority(c.pattern, c.path); got != c.want {
			t.Errorf("%q vs %q: %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
	if err := ValidPriority([]string{"*.ckpt", "out/*/x"}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"[", "a/[b", "", "/"} {
		if ValidPriority([]string{bad}) == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

// Files matching earlier patterns go first; within a class, newest first;
// ties by path so the order is the same on every run.
func TestOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := []upload{
		{rel: "old.dat", mod: t0},
		{rel: "new.dat", mod: t0.Add(3 * time.Hour)},
		{rel: "ckpt/old.ckpt", mod: t0},
		{rel: "b.log", mod: t0.Add(time.Hour)},
		{rel: "new.ckpt", mod: t0.Add(2 * time.Hour)},
		{rel: "a.log", mod: t0.Add(time.Hour)},
		{rel: "meta.json", mod: t0},
	}
	order(q, []string{"*.ckpt", "meta.json"})
	var got []string
	for _, u := range q {
		got = append(got, u.rel)
	}
	want := "new.ckpt ckpt/old.ckpt meta.json new.dat a.log b.log old.dat"
	if strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
	order(q, nil)
	if q[0].rel != "new.dat" || q[len(q)-1].rel != "old.dat" {
		t.Fatalf("without patterns: %v", q)
	}
}

func TestPlanPriorityOverridesAgent(t *testing.T) {
	a := &Agent{Priority: []string{"*.a"}}
	log := zap.NewNop()
	if got := a.priority(&Plan{}, log); fmt.Sprint(got) != "[*.a]" {
		t.Errorf("agent default: %v", got)
	}
	if got := a.priority(&Plan{Priority: []string{"*.p", "[bad"}}, log); fmt.Sprint(got) != "[*.p]" {
		t.Errorf("plan patterns, bad one dropped: %v", got)
	}
}

// Known vectors: CRC32C("123456789") = e3069283, SHA256("abc") = ba7816bf...
func TestChecksumChoice(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"", "4waSgw=="},
		{"CRC32C", "4waSgw=="},
		{"SHA256", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
	} {
		alg, err := checksumFor(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := alg.sum([]byte("123456789")); got != c.want {
			t.Errorf("%q: %s, want %s", c.name, got, c.want)
		}
		if !alg.valid(c.want) || alg.valid("AAAA") {
			t.Errorf("%q: validity of encoded sums is wrong", c.name)
		}
	}
	if sha := checksum(ChecksumSHA256).sum([]byte("abc")); sha != "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=" {
		t.Errorf("SHA256(abc) = %s", sha)
	}
	for _, bad := range []string{"crc32c", "MD5", "CRC32"} {
		if ValidChecksum(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	if !ValidChecksum("") || !ValidChecksum("SHA256") {
		t.Error("valid algorithms refused")
	}
}

func manifestJSON(alg string, files ...File) []byte {
	b, _ := json.Marshal(Manifest{Version: 1, Algorithm: alg, Files: files})
	return b
}

func TestParseManifestAcceptsBothAlgorithms(t *testing.T) {
	crc := checksum(ChecksumCRC32C).sum([]byte("x"))
	sha := checksum(ChecksumSHA256).sum([]byte("x"))
	m, err := ParseManifest(manifestJSON("CRC32C", File{Path: "a", Type: TypeFile, Size: 1, Checksum: crc}))
	if err != nil || m.Algorithm != ChecksumCRC32C {
		t.Fatalf("CRC32C: %v", err)
	}
	m, err = ParseManifest(manifestJSON("SHA256", File{Path: "a", Type: TypeFile, Size: 1, Checksum: sha}))
	if err != nil || m.Algorithm != ChecksumSHA256 {
		t.Fatalf("SHA256: %v", err)
	}
	for name, data := range map[string][]byte{
		"no algorithm":           manifestJSON("", File{Path: "a", Type: TypeFile, Checksum: crc}),
		"unknown algorithm":      manifestJSON("MD5", File{Path: "a", Type: TypeFile, Checksum: crc}),
		"SHA256 value as CRC32C": manifestJSON("CRC32C", File{Path: "a", Type: TypeFile, Checksum: sha}),
		"CRC32C value as SHA256": manifestJSON("SHA256", File{Path: "a", Type: TypeFile, Checksum: crc}),
		"no checksum":            manifestJSON("CRC32C", File{Path: "a", Type: TypeFile}),
		"not base64":             manifestJSON("CRC32C", File{Path: "a", Type: TypeFile, Checksum: "!!!!"}),
		"version 2":              []byte(`{"version":2,"checksum_algorithm":"CRC32C","files":[]}`),
		"not JSON":               []byte(`{"version":1,`),
	} {
		if _, err := ParseManifest(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A restore must not be steered outside its directory: not by a path, not
// by a symlink entry that a later entry would be written through.
func TestParseManifestRefusesEscapes(t *testing.T) {
	crc := checksum(ChecksumCRC32C).sum([]byte("x"))
	for _, p := range []string{"../x", "/etc/passwd", "a/../../b", "a//b", "./a", "", "a\\b", "a/\x00"} {
		if _, err := ParseManifest(manifestJSON("CRC32C", File{Path: p, Type: TypeFile, Size: 1, Checksum: crc})); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	for name, files := range map[string][]File{
		"below a symlink": {{Path: "l", Type: TypeSymlink, Target: "/etc"}, {Path: "l/passwd", Type: TypeFile, Size: 1, Checksum: crc}},
		"below a file":    {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc}, {Path: "f/x", Type: TypeDir}},
		"listed twice":    {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc}, {Path: "f", Type: TypeSymlink, Target: "/"}},
		"empty target":    {{Path: "l", Type: TypeSymlink}},
		"unknown type":    {{Path: "p", Type: "fifo"}},
		"pack outside":    {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc, Pack: "../other/x.pack"}},
		"pack not packs/": {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc, Pack: "_spotrescue/manifest.json"}},
		"pack escapes":    {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc, Pack: "_spotrescue/packs/../../x"}},
		"negative offset": {{Path: "f", Type: TypeFile, Size: 1, Checksum: crc, Pack: "_spotrescue/packs/1.pack", Offset: -1}},
		"dir in a pack":   {{Path: "d", Type: TypeDir, Pack: "_spotrescue/packs/1.pack"}},
		"negative size":   {{Path: "f", Type: TypeFile, Size: -1, Checksum: crc}},
	} {
		if _, err := ParseManifest(manifestJSON("CRC32C", files...)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := []File{{Path: "a", Type: TypeDir}, {Path: "a/b.txt", Type: TypeFile, Size: 1, Checksum: crc}, {Path: "l", Type: TypeSymlink, Target: "/etc"},
		{Path: "a/c.txt", Type: TypeFile, Size: 1, Checksum: crc, Pack: "_spotrescue/packs/1-0001.pack", Offset: 7}}
	if _, err := ParseManifest(manifestJSON("CRC32C", ok...)); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
}

func TestParseManifestKeepsIncrementalFields(t *testing.T) {
	data := []byte(`{"version":1,"checksum_algorithm":"SHA256","complete":false,"presync":true,"bytes":10,"uploaded_bytes":4,"carried_files":2,"files":[]}`)
	m, err := ParseManifest(data)
	if err != nil || !m.Presync || m.Complete || m.Bytes != 10 || m.Uploaded != 4 || m.Carried != 2 {
		t.Fatalf("%+v, %v", m, err)
	}
	// A manifest from before these fields still reads.
	if m, err := ParseManifest([]byte(`{"version":1,"checksum_algorithm":"CRC32C","complete":true,"files":[]}`)); err != nil || m.Presync {
		t.Fatalf("old manifest: %+v, %v", m, err)
	}
}

// The pool never hands out more bytes than its budget: a reader waits
// (back-pressure) instead of allocating, and gives up when its context ends.
// Small buffers cost their size, part-sized ones a whole part.
func TestPartPoolBoundsMemory(t *testing.T) {
	p := newPartPool(1<<10, 3) // 3 KiB
	ctx := context.Background()
	full := func() bool {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		b, err := p.get(short, 1)
		if err == nil {
			p.put(b)
		}
		return err != nil
	}
	var small [][]byte
	for range 32 { // 32 x 96 bytes fill 3 KiB
		b, err := p.get(ctx, 96)
		if err != nil || len(b) != 96 || cap(b) != 96 {
			t.Fatalf("get: %d bytes (cap %d), %v", len(b), cap(b), err)
		}
		small = append(small, b)
	}
	if !full() {
		t.Fatal("a buffer was handed out beyond the budget")
	}
	for _, b := range small {
		p.put(b)
	}
	part, err := p.get(ctx, 1<<10)
	if err != nil || cap(part) != 1<<10 {
		t.Fatalf("part-sized buffer: cap %d, %v", cap(part), err)
	}
	p.put(part)
	// A file of a quarter part or more takes a part-sized buffer, reused.
	b, err := p.get(ctx, 1<<9)
	if err != nil || &b[:1][0] != &part[:1][0] {
		t.Fatalf("a returned buffer is not reused: %v", err)
	}
	var parts [][]byte
	for range 2 {
		x, err := p.get(ctx, 300)
		if err != nil || cap(x) != 1<<10 {
			t.Fatalf("a 300-byte buffer: cap %d, %v", cap(x), err)
		}
		parts = append(parts, x)
	}
	if !full() {
		t.Fatal("three part-sized buffers should take the whole budget")
	}
	p.put(b)
	// A part wider than one part is charged its size; more than all is refused.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.get(short, 1<<10+1); err == nil {
		t.Fatal("a 1025-byte part was handed out with 1024 bytes left")
	}
	p.put(parts[0])
	if big, err := p.get(ctx, 2<<10); err != nil || len(big) != 2<<10 {
		t.Fatalf("two-part-wide buffer: %v", err)
	} else {
		p.put(big)
	}
	if _, err := p.get(ctx, 4<<10); err == nil {
		t.Fatal("a part beyond the budget was handed out")
	}
	p.put(parts[1])
	if !p.sem.TryAcquire(3 << 10) {
		t.Fatal("bytes still taken after every buffer came back")
	}
}

// Files found changed since the pre-sync rejoin the queue in priority order.
func TestFeedMergesChangedFiles(t *testing.T) {
	t0 := time.Now()
	queue := []upload{{rel: "a", rank: 0, mod: t0}, {rel: "c", rank: 1, mod: t0}, {rel: "e", rank: 2, mod: t0}}
	redo := make(chan upload, 2)
	redo <- upload{rel: "b", rank: 0, mod: t0.Add(-time.Second)}
	redo <- upload{rel: "d", rank: 1, mod: t0.Add(-time.Second)}
	close(redo)
	f := &feed{queue: queue, redo: redo}
	var got []string
	for {
		u, ok := f.pop(context.Background())
		if !ok {
			break
		}
		got = append(got, u.rel)
	}
	if strings.Join(got, "") != "abcde" {
		t.Fatalf("order %v", got)
	}
}

func TestCompleteIgnoresWhatCannotBeSaved(t *testing.T) {
	js := &jobState{}
	for _, r := range []string{SkipSpecial, SkipReserved, SkipVanished} {
		js.skip("x", r)
	}
	if !js.complete() {
		t.Fatal("special files, reserved names and deleted files made the rescue partial")
	}
	js.skip("y", SkipChanging)
	if js.complete() {
		t.Fatal("a file that changed during upload left the rescue complete")
	}
}

func TestSummaryLine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &Manifest{Started: t0, Finished: t0.Add(4 * time.Second), Files: make([]File, 3), Bytes: 3 << 30, Uploaded: 400 << 20, Carried: 2,
		Skipped: []Skipped{{"p", SkipSpecial}, {"a", SkipDeadline}, {"b", SkipDeadline}}}
	got := JobResult{JobID: "42", URI: "s3://b/p/", Manifest: m}.Summary()
	want := "job 42: PARTIAL: 3 entries, 3.0 GiB; sent 400.0 MiB in 4.0s (100.0 MiB/s); 2 unchanged files carried over; skipped 3 (2 deadline, 1 special file); s3://b/p/"
	if got != want {
		t.Fatalf("summary\n got %s\nwant %s", got, want)
	}
	if got := (JobResult{JobID: "7", Err: fmt.Errorf("boom")}).Summary(); got != "job 7: not rescued: boom" {
		t.Fatalf("failed job: %s", got)
	}
}
