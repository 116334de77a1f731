package node

import (
	"os/exec"
	"strings"
	"testing"
)

// What runs on a compute node depends on no head-node package: the agent,
// the Prolog and the TaskProlog are built from package rescue and below.
func TestNodeCodeImportsNoHeadNodePackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/spotrescue/spotrescue/rescue/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/spotrescue/spotrescue/") && !strings.HasPrefix(p, "github.com/spotrescue/spotrescue/rescue") {
			t.Errorf("compute-node code depends on %s", p)
		}
	}
}
