package rescue_test

import (
	"encoding/json"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/rescue"
)

// A CRC32C and a SHA256 value, base64, as a manifest carries them.
const (
	crcSum = "AAAAAA=="
	shaSum = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
)

func manifest(alg string, files ...rescue.File) []byte {
	b, _ := json.Marshal(rescue.Manifest{Version: 1, Algorithm: alg, Complete: true, Files: files})
	return b
}

// inside reports whether p, joined to a directory as the restore does,
// stays in it.
func inside(p string) bool {
	const dir = "/scratch/job"
	j := filepath.Join(dir, filepath.FromSlash(p))
	return j == dir || strings.HasPrefix(j, dir+"/")
}

// FuzzParseManifest: a manifest in S3 is input a restore trusts only after
// ParseManifest. What it accepts can never steer a restore out of the job
// directory: no absolute path, no "..", no backslash or NUL, no path twice,
// nothing below a symlink or a file, every type and checksum known.
func FuzzParseManifest(f *testing.F) {
	f.Add(manifest("CRC32C",
		rescue.File{Path: "out", Type: rescue.TypeDir, Mode: 0o755},
		rescue.File{Path: "out/step-1.dat", Type: rescue.TypeFile, Size: 3, Mode: 0o640, Checksum: crcSum},
		rescue.File{Path: "root-link", Type: rescue.TypeSymlink, Target: "/"}))
	f.Add(manifest("SHA256", rescue.File{Path: "ünï/✓ space.txt", Type: rescue.TypeFile, Checksum: shaSum}))
	f.Add(manifest("CRC32C", rescue.File{Path: "../escape", Type: rescue.TypeFile, Checksum: crcSum}))
	f.Add(manifest("CRC32C", rescue.File{Path: "l", Type: rescue.TypeSymlink, Target: "/etc"}, rescue.File{Path: "l/passwd", Type: rescue.TypeFile, Checksum: crcSum}))
	f.Add([]byte(`{"version":1,"checksum_algorithm":"CRC32C","files":[{"path":"a\\..\\b","type":"file","checksum":"AAAAAA=="}],"skipped":[{"path":"p","reason":"special file"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := rescue.ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatalf("manifest with error %v", err)
			}
			return
		}
		if m.Version != 1 || (m.Algorithm != rescue.ChecksumCRC32C && m.Algorithm != rescue.ChecksumSHA256) {
			t.Fatalf("version %d algorithm %q", m.Version, m.Algorithm)
		}
		kinds := map[string]string{}
		for _, file := range m.Files {
			p := file.Path
			if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\\\x00") || !inside(p) {
				t.Fatalf("path %q accepted", p)
			}
			for _, seg := range strings.Split(p, "/") {
				if seg == ".." {
					t.Fatalf("path %q accepted", p)
				}
			}
			switch file.Type {
			case rescue.TypeFile:
				if file.Size < 0 || file.Checksum == "" {
					t.Fatalf("file %+v accepted", file)
				}
			case rescue.TypeDir:
			case rescue.TypeSymlink:
				if file.Target == "" || strings.ContainsRune(file.Target, 0) {
					t.Fatalf("symlink %+v accepted", file)
				}
			default:
				t.Fatalf("type %q accepted", file.Type)
			}
			if kinds[p] != "" {
				t.Fatalf("%q listed twice", p)
			}
			kinds[p] = file.Type
		}
		for _, file := range m.Files {
			for dir := path.Dir(file.Path); dir != "." && dir != "/"; dir = path.Dir(dir) {
				if k := kinds[dir]; k != "" && k != rescue.TypeDir {
					t.Fatalf("%q is below %s %q", file.Path, k, dir)
				}
			}
		}
	})
}

var numericRe = regexp.MustCompile(`^[0-9]+$`)

// FuzzScratchDir: whatever a job's id, user, node and array ids hold (they
// come from Slurm; a user picks their job's name and comment, which no
// template may use), the expansion of "/scratch/{user}/{job_id}" and of a
// template with every placeholder is exactly that many plain segments
// below /scratch.
func FuzzScratchDir(f *testing.F) {
	f.Add("42", "alice", "compute-1", "", "")
	f.Add("42", "../root", "n1", "7", "3")
	f.Add("42/../../etc", "alice", "..", "1", "x")
	f.Fuzz(func(t *testing.T, jobID, user, node, arrayJob, arrayTask string) {
		v := rescue.NewScratchVars(jobID, user, arrayJob, arrayTask, node)
		for tmpl, segments := range map[string]int{
			"/scratch/{user}/{job_id}":                                       3,
			"/scratch/{node}/{user}/{array_job_id}_{array_task_id}/{job_id}": 5,
		} {
			dir, err := rescue.ScratchDir(tmpl, v)
			if err != nil {
				continue
			}
			parts := strings.Split(dir, "/")
			if len(parts) != segments+1 || parts[0] != "" || parts[1] != "scratch" || filepath.Clean(dir) != dir {
				t.Fatalf("%s with %+v = %q", tmpl, v, dir)
			}
			for _, seg := range parts[1:] {
				if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\x00\n\\ ") {
					t.Fatalf("%s with %+v = %q", tmpl, v, dir)
				}
			}
			if !numericRe.MatchString(parts[len(parts)-1]) {
				t.Fatalf("%s with %+v = %q: the job directory is not the job id", tmpl, v, dir)
			}
		}
	})
}
