package rescue

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spotrescue/spotrescue/rescue/confine"
)

// Manifest describes what one node saved of one job run. The agent writes it
// last: without it, or with Complete false, the data is not a full copy.
// Every regular file it lists is an object at <node prefix>/<path>, and no
// other object under the prefix belongs to it (except the manifest).
type Manifest struct {
	Version  int    `json:"version"`
	JobID    string `json:"job_id"`
	Run      int    `json:"run"`
	Node     string `json:"node"`
	Instance string `json:"instance"`
	Complete bool   `json:"complete"`
	// Presync marks a copy taken ahead of an interruption (on a Rebalance
	// Recommendation): never complete, the base of the final rescue.
	Presync bool `json:"presync,omitempty"`
	// Interim marks a manifest written while the rescue was still going
	// (every few seconds, so an instance that dies mid-rescue leaves a
	// truthful record); the last one an agent writes has it false.
	Interim  bool      `json:"interim,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Deadline time.Time `json:"deadline"`
	// Algorithm names the checksum in Files (CRC32C or SHA256 of the whole
	// content, base64).
	Algorithm string `json:"checksum_algorithm"`
	Bytes     int64  `json:"bytes"` // size of the files listed
	// Uploaded is what this run moved; files unchanged since the previous
	// manifest at the prefix (a pre-sync) were carried over, not re-sent.
	Uploaded int64 `json:"uploaded_bytes"`
	Carried  int   `json:"carried_files,omitempty"`
	// Requests is how many S3 requests this run made for the job (PUTs,
	// multipart parts and completions, manifests), retries not counted.
	Requests int64     `json:"requests,omitempty"`
	Files    []File    `json:"files"`
	Skipped  []Skipped `json:"skipped,omitempty"`
}

// File is one saved entry of the scratch directory.
type File struct {
	Path     string    `json:"path"` // slash-separated, relative to the job's scratch directory
	Type     string    `json:"type"` // file, dir or symlink
	Size     int64     `json:"size,omitempty"`
	Mode     uint32    `json:"mode"` // permission bits
	MTime    time.Time `json:"mtime"`
	Checksum string    `json:"checksum,omitempty"`
	Target   string    `json:"target,omitempty"` // symlink target, stored, never followed
	// Pack, for a small file saved in a pack object, is that object's key
	// below the node prefix (_spotrescue/packs/...); the file's bytes are
	// at Offset in it. Empty: the file is the object <node prefix>/<path>.
	Pack   string `json:"pack,omitempty"`
	Offset int64  `json:"offset,omitempty"`
}

// PackDir is where pack objects live below a node prefix: inside the
// reserved _spotrescue/ directory, so no scratch file can collide with one.
const PackDir = "_spotrescue/packs/"

// ObjectKey is the key of the object holding a regular file's bytes.
func (f File) ObjectKey(nodePrefix string) string {
	if f.Pack != "" {
		return nodePrefix + f.Pack
	}
	return nodePrefix + f.Path
}

// Skipped is an entry that was not saved, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Entry types in a manifest.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Reasons an entry is skipped.
const (
	SkipDeadline     = "deadline"
	SkipSpecial      = "special file"
	SkipUnreadable   = "unreadable"
	SkipReserved     = "reserved name"
	SkipChanging     = "changed during upload"
	SkipUploadFailed = "upload failed"
	SkipVanished     = "deleted during rescue" // gone before it could be read: nothing was lost
	SkipCancelled    = "cancelled"             // the agent was stopped (a pre-sync superseded, a signal)
	SkipNotUTF8      = "name is not UTF-8"
)

const manifestVersion = 1

// ParseManifest decodes and checks a manifest. It refuses anything a
// restore could be tricked by: paths that escape the directory, the same
// path twice, entries below a symlink or a file, checksums that do not fit
// the algorithm.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("parse manifest: version %d, want %d", m.Version, manifestVersion)
	}
	alg, err := checksumFor(m.Algorithm)
	if err != nil || m.Algorithm == "" {
		return nil, fmt.Errorf("parse manifest: checksum algorithm %q, want %s or %s", m.Algorithm, ChecksumCRC32C, ChecksumSHA256)
	}
	kinds := make(map[string]string, len(m.Files))
	for _, f := range m.Files {
		if err := checkEntry(f, alg); err != nil {
			return nil, fmt.Errorf("parse manifest: %w", err)
		}
		if kinds[f.Path] != "" {
			return nil, fmt.Errorf("parse manifest: %q is listed twice", f.Path)
		}
		kinds[f.Path] = f.Type
	}
	for _, f := range m.Files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if k := kinds[dir]; k != "" && k != TypeDir {
				return nil, fmt.Errorf("parse manifest: %q is below %s %q", f.Path, k, dir)
			}
		}
	}
	return &m, nil
}

func checkEntry(f File, alg checksum) error {
	if err := checkRelPath(f.Path); err != nil {
		return err
	}
	if reserved(f.Path) {
		return fmt.Errorf("path %q is a name the agent never saves", f.Path)
	}
	switch f.Type {
	case TypeFile:
		if f.Size < 0 || !alg.valid(f.Checksum) {
			return fmt.Errorf("file %q has size %d and checksum %q", f.Path, f.Size, f.Checksum)
		}
		if f.Pack != "" && (checkRelPath(f.Pack) != nil || !strings.HasPrefix(f.Pack, PackDir) || f.Offset < 0) {
			return fmt.Errorf("file %q is in pack %q at offset %d", f.Path, f.Pack, f.Offset)
		}
	case TypeDir:
	case TypeSymlink:
		if f.Target == "" || strings.ContainsRune(f.Target, 0) {
			return fmt.Errorf("symlink %q has no usable target", f.Path)
		}
	default:
		return fmt.Errorf("%q has unknown type %q", f.Path, f.Type)
	}
	if f.Type != TypeFile && (f.Pack != "" || f.Offset != 0) {
		return fmt.Errorf("%s %q has a pack", f.Type, f.Path)
	}
	return nil
}

// checkRelPath accepts only clean, relative, slash-separated paths of an
// entry below the job directory: not "." (the directory itself), "..", an
// empty component, a backslash or a NUL.
func checkRelPath(p string) error {
	if confine.CheckName(p) != nil || strings.Contains(p, "\\") {
		return fmt.Errorf("path %q is not a clean relative path inside the job directory", p)
	}
	return nil
}

// RegularFiles counts the files the manifest lists (not its directories
// and symlinks): what a record calls the files saved.
func (m *Manifest) RegularFiles() int {
	n := 0
	for _, f := range m.Files {
		if f.Type == TypeFile {
			n++
		}
	}
	return n
}

// belongsTo checks that the manifest is the one a restore asked for: the
// job's, of the rescued run, of the node whose data is wanted. Compute
// nodes can write under the cluster's prefix, so a manifest at the right
// key is not proof enough.
func (m *Manifest) belongsTo(jobID string, run int, node string) error {
	if m.JobID != jobID || m.Run != run || m.Node != node {
		return fmt.Errorf("manifest is of job %q run %d node %q, not job %s run %d node %s: refused", m.JobID, m.Run, m.Node, jobID, run, node)
	}
	return nil
}

// S3Manifests reads manifests from the rescue bucket, for the controller.
type S3Manifests struct {
	Client *s3.Client
	Bucket string
}

// Manifest reads the manifest under nodePrefix; ErrNoManifest if there is none.
func (m S3Manifests) Manifest(ctx context.Context, nodePrefix string) (*Manifest, error) {
	return ReadManifest(ctx, m.Client, m.Bucket, nodePrefix)
}

// Resumed reads the word of a later run starting from the data under
// nodePrefix (ReadResumed).
func (m S3Manifests) Resumed(ctx context.Context, nodePrefix, job string, rescued int) (*Resumed, error) {
	return ReadResumed(ctx, m.Client, m.Bucket, nodePrefix, job, rescued)
}
