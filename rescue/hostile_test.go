package rescue_test

import (
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/rescue"
)

// Hostile manifests and scratch path values. The agent-side hostile inputs
// (a scratch directory holding symlinks to /, FIFOs, unreadable files, a
// job directory that is a symlink out of the root, tampered objects) are
// lab tests: see controller/testdata/HOSTILE.md for the list.

func TestHostileManifests(t *testing.T) {
	file := func(p string) rescue.File {
		return rescue.File{Path: p, Type: rescue.TypeFile, Size: 1, Checksum: crcSum}
	}
	cases := []struct {
		name string
		data []byte
		ok   bool
	}{
		// Paths that escape, or could be read as escaping, are refused
		// (agent_test.go has ../x, /etc/passwd, a/../../b, a//b, ./a, "",
		// a\b and a NUL).
		{"..", manifest("CRC32C", file("..")), false},
		{"a/..", manifest("CRC32C", file("a/..")), false},
		{"a/.", manifest("CRC32C", file("a/.")), false},
		{"trailing slash", manifest("CRC32C", file("a/")), false},
		{"leading //", manifest("CRC32C", file("//etc/passwd")), false},
		{"backslash ..", manifest("CRC32C", file(`..\..\etc\passwd`)), false},
		{"NUL in the middle", manifest("CRC32C", file("a\x00/../../b")), false},
		{"dir then a file below a symlink deeper down", manifest("CRC32C",
			rescue.File{Path: "d", Type: rescue.TypeDir}, rescue.File{Path: "d/l", Type: rescue.TypeSymlink, Target: "/"}, file("d/l/etc/passwd")), false},
		{"file below a file", manifest("CRC32C", file("f"), file("f/g/h")), false},
		{"child listed before its symlink parent", manifest("CRC32C", file("l/x"), rescue.File{Path: "l", Type: rescue.TypeSymlink, Target: "/etc"}), false},
		{"same path as dir and file", manifest("CRC32C", rescue.File{Path: "a", Type: rescue.TypeDir}, file("a")), false},
		{"symlink target with NUL", manifest("CRC32C", rescue.File{Path: "l", Type: rescue.TypeSymlink, Target: "/etc\x00/x"}), false},
		{"fifo type", manifest("CRC32C", rescue.File{Path: "p", Type: "fifo"}), false},
		{"type in capitals", manifest("CRC32C", rescue.File{Path: "p", Type: "FILE", Checksum: crcSum}), false},
		// Wrong JSON types.
		{"files an object", []byte(`{"version":1,"checksum_algorithm":"CRC32C","files":{"a":1}}`), false},
		{"version a string", []byte(`{"version":"1","checksum_algorithm":"CRC32C","files":[]}`), false},
		{"mode over uint32", []byte(`{"version":1,"checksum_algorithm":"CRC32C","files":[{"path":"a","type":"dir","mode":4294967296}]}`), false},
		{"size a string", []byte(`{"version":1,"checksum_algorithm":"CRC32C","files":[{"path":"a","type":"file","size":"1","checksum":"AAAAAA=="}]}`), false},
		{"not JSON", []byte("PK\x03\x04"), false},
		// Accepted: names a job may really have, kept inside the directory.
		{"unicode and spaces", manifest("CRC32C", file("ünï/✓ check point.dat")), true},
		{"newline in a name", manifest("CRC32C", file("line\nbreak")), true},
		{"name that starts with ..", manifest("CRC32C", file("..hidden"), file("a/...")), true},
		{"symlink to / (stored, never followed)", manifest("CRC32C", rescue.File{Path: "root", Type: rescue.TypeSymlink, Target: "/"}), true},
		{"symlink to ../../etc", manifest("CRC32C", rescue.File{Path: "up", Type: rescue.TypeSymlink, Target: "../../etc"}), true},
		{"mode with setuid bits (restore applies permission bits only)", manifest("CRC32C", rescue.File{Path: "x", Type: rescue.TypeFile, Mode: 0o4755, Checksum: crcSum}), true},
		{"unknown fields", []byte(`{"version":1,"checksum_algorithm":"CRC32C","zz":[1],"files":[{"path":"a","type":"dir","zz":{}}]}`), true},
		// "." names the job directory itself: a restore applying its owner
		// and mode would change the directory it stages in.
		{"the directory itself as .", manifest("CRC32C", rescue.File{Path: ".", Type: rescue.TypeDir}), false},
		{". as a file", manifest("CRC32C", file(".")), false},
		// Names the agent never saves: they would shadow its manifest or
		// its staging directory and marker.
		{"reserved _spotrescue", manifest("CRC32C", file("_spotrescue/manifest.json")), false},
		{"reserved staging name", manifest("CRC32C", rescue.File{Path: ".spotrescue-restore-x", Type: rescue.TypeDir}), false},
		{"reserved marker name", manifest("CRC32C", file(".spotrescue-restored.json")), false},
		{"reserved name below a directory is a plain name", manifest("CRC32C", rescue.File{Path: "d", Type: rescue.TypeDir}, file("d/.spotrescue-x")), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := rescue.ParseManifest(tc.data)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseManifest = %+v, %v; want accepted %v", m, err, tc.ok)
			}
			if m != nil {
				for _, f := range m.Files {
					if !inside(f.Path) {
						t.Errorf("%q leaves the directory", f.Path)
					}
				}
			}
		})
	}
}

// Job names never reach a scratch path: no placeholder takes them (config
// refuses unknown placeholders). What does reach it is checked.
func TestHostileScratchValues(t *testing.T) {
	tmpl := "/scratch/{node}/{user}/{array_job_id}_{array_task_id}/{job_id}"
	type vars struct{ job, user, arrayJob, arrayTask, node string }
	good := vars{"42", "alice", "40", "2", "compute-1"}
	expand := func(v vars) (string, error) {
		return rescue.ScratchDir(tmpl, rescue.NewScratchVars(v.job, v.user, v.arrayJob, v.arrayTask, v.node))
	}
	if dir, err := expand(good); err != nil || dir != "/scratch/compute-1/alice/40_2/42" {
		t.Fatalf("good values: %q, %v", dir, err)
	}
	for name, change := range map[string]func(v *vars){
		"node ..":              func(v *vars) { v.node = ".." },
		"node with slash":      func(v *vars) { v.node = "a/b" },
		"node too long":        func(v *vars) { v.node = strings.Repeat("n", 65) },
		"user with newline":    func(v *vars) { v.user = "alice\n" },
		"user in unicode":      func(v *vars) { v.user = "ålice" },
		"user like an option":  func(v *vars) { v.user = "-rf" },
		"user .":               func(v *vars) { v.user = "." },
		"user with shell":      func(v *vars) { v.user = "a$(id)" },
		"job id with NUL":      func(v *vars) { v.job = "42\x00" },
		"job id negative":      func(v *vars) { v.job = "-1" },
		"array task with path": func(v *vars) { v.arrayTask = "1/../../x" },
		"array job with space": func(v *vars) { v.arrayJob = "40 41" },
		"array task missing":   func(v *vars) { v.arrayTask = "" },
	} {
		v := good
		change(&v)
		if dir, err := expand(v); err == nil {
			t.Errorf("%s: expanded to %q", name, dir)
		}
	}
}
