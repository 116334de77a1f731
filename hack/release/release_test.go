// Package release is tested here: hack/release/release.sh, behind make
// release, builds what a deployment starts from.
package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make release builds a tarball for each architecture ParallelCluster runs,
// with the binary (its version stamped in), deploy/, README and LICENSE,
// and SHA256SUMS; built twice, the bytes are the same.
func TestReleaseTarballs(t *testing.T) {
	const version = "v0.0.0-releasetest"
	build := func(out string) {
		t.Helper()
		cmd := exec.Command("./release.sh")
		cmd.Env = append(os.Environ(), "VERSION="+version, "OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release.sh: %v\n%s", err, b)
		}
	}
	first, second := t.TempDir(), t.TempDir()
	build(first)
	sums, err := os.ReadFile(filepath.Join(first, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []struct {
		name    string
		machine elf.Machine
	}{{"amd64", elf.EM_X86_64}, {"arm64", elf.EM_AARCH64}} {
		name := "spotrescue-" + version + "-linux-" + arch.name
		data, err := os.ReadFile(filepath.Join(first, name+".tar.gz"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if !strings.Contains(string(sums), hex.EncodeToString(sum[:])+"  "+name+".tar.gz") {
			t.Errorf("SHA256SUMS does not list %s as %x", name, sum)
		}
		files := untar(t, data, filepath.Join(first, "x-"+arch.name))
		for _, want := range []string{"spotrescue", "README.md", "LICENSE", "deploy/cloudformation/spotrescue.yaml", "deploy/parallelcluster/install-headnode.sh",
			"deploy/slurm/prolog.sh", "deploy/slurm/taskprolog.sh", "deploy/ssm/spotrescue-rescue.yaml", "deploy/systemd/spotrescue.service"} {
			if !files[name+"/"+want] {
				t.Errorf("%s lacks %s", name, want)
			}
		}
		for f := range files {
			if strings.HasSuffix(f, ".go") {
				t.Errorf("%s ships source %s", name, f)
			}
		}
		bin := filepath.Join(first, "x-"+arch.name, name, "spotrescue")
		if f, err := elf.Open(bin); err != nil || f.Machine != arch.machine {
			t.Errorf("%s: binary %v, %v; want %v", name, f, err, arch.machine)
		}
		if arch.name == "amd64" {
			out, err := exec.Command(bin, "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "spotrescue "+version+" ") {
				t.Errorf("spotrescue version: %q, %v", out, err)
			}
		}
	}
	build(second)
	if again, _ := os.ReadFile(filepath.Join(second, "SHA256SUMS")); !bytes.Equal(again, sums) {
		t.Errorf("not reproducible:\n%s\nthen\n%s", sums, again)
	}
}

// untar extracts a gzipped tarball into dir and lists its entries.
func untar(t *testing.T, data []byte, dir string) map[string]bool {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = true
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.IsZero() {
			t.Errorf("%s: owner %d:%d, mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		os.WriteFile(p, b, os.FileMode(h.Mode))
	}
}
