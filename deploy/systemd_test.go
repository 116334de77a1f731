package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// render fills the install-time placeholders of a deploy file.
func render(t *testing.T, path string, values map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range values {
		s = strings.ReplaceAll(s, "@"+k+"@", v)
	}
	if strings.Contains(s, "@SPOTRESCUE_") {
		t.Fatalf("%s: unfilled placeholder left", path)
	}
	return s
}

// The unit passes systemd-analyze verify without a single warning.
func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing: install the systemd package (make deps does)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "spotrescue")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	unit := filepath.Join(dir, "spotrescue.service")
	os.WriteFile(unit, []byte(render(t, "systemd/spotrescue.service", map[string]string{
		"SPOTRESCUE_BIN": bin, "SPOTRESCUE_CONFIG": "/etc/spotrescue/config.yaml", "SPOTRESCUE_SPOOL": "/opt/parallelcluster/shared/spotrescue",
	})), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "ReadWritePaths=/opt/parallelcluster/shared/spotrescue", "StandardOutput=journal"} {
		if !strings.Contains(render(t, "systemd/spotrescue.service", map[string]string{"SPOTRESCUE_BIN": bin, "SPOTRESCUE_CONFIG": "c", "SPOTRESCUE_SPOOL": "/opt/parallelcluster/shared/spotrescue"}), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
}

// verify catches a misspelt key: the check above can fail.
func TestSystemdVerifyCatchesTypos(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "bad.service")
	os.WriteFile(unit, []byte("[Service]\nType=notify\nExecStart=/bin/true\nNoNewPrivilegs=yes\n"), 0o644)
	out, _ := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if !strings.Contains(string(out), "Unknown key") {
		t.Fatalf("systemd-analyze did not flag a typo: %s", out)
	}
}
