package rescue

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Manifest describes what one node saved of one job run. The agent writes it
// last: without it, or with Complete false, the data is not a full copy.
type Manifest struct {
	Version  int       `json:"version"`
	JobID    string    `json:"job_id"`
	Run      int       `json:"run"`
	Node     string    `json:"node"`
	Instance string    `json:"instance"`
	Complete bool      `json:"complete"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Deadline time.Time `json:"deadline"`
	// Algorithm names the checksum in Files: CRC32C of the whole content, base64.
	Algorithm string    `json:"checksum_algorithm"`
	Bytes     int64     `json:"bytes"`
	Files     []File    `json:"files"`
	Skipped   []Skipped `json:"skipped,omitempty"`
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
)

const manifestVersion = 1

// ChecksumAlgorithm is the only algorithm manifests use for now.
const ChecksumAlgorithm = "CRC32C"

func newChecksum() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

func encodeChecksum(h hash.Hash32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	return base64.StdEncoding.EncodeToString(b[:])
}

// ParseManifest decodes and checks a manifest, rejecting any path that
// would escape the directory it is restored into.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("parse manifest: version %d, want %d", m.Version, manifestVersion)
	}
	if m.Algorithm != ChecksumAlgorithm {
		return nil, fmt.Errorf("parse manifest: checksum algorithm %q, want %s", m.Algorithm, ChecksumAlgorithm)
	}
	for _, f := range m.Files {
		if err := checkRelPath(f.Path); err != nil {
			return nil, fmt.Errorf("parse manifest: %w", err)
		}
		switch f.Type {
		case TypeFile, TypeDir:
		case TypeSymlink:
			if f.Target == "" {
				return nil, fmt.Errorf("parse manifest: symlink %q has no target", f.Path)
			}
		default:
			return nil, fmt.Errorf("parse manifest: %q has unknown type %q", f.Path, f.Type)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("parse manifest: %q has negative size", f.Path)
		}
	}
	return &m, nil
}

// checkRelPath accepts only clean, relative, slash-separated paths.
func checkRelPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "\x00\\") {
		return fmt.Errorf("path %q is not a clean relative path inside the job directory", p)
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
