package rescue_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// testSources are the packages whose tests play the node side's hostile
// cases.
var testSources = []string{".", "confine", "../controller/cmd/spotrescue"}

var (
	// A comment naming cases: the file name, a colon, then quoted cases
	// joined by "and" or commas.
	markRe   = regexp.MustCompile(`HOSTILE\.md: ((?:"(?:[^"\\]|\\.)*"(?:,? and |, )?)+)`)
	quotedRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	testRe   = regexp.MustCompile("`((?:confine\\.)?(?:Test|Fuzz)[A-Za-z0-9]+)`")
	funcRe   = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9]+)\(`)
)

// TestHostileNodeDoc keeps testdata/HOSTILE.md and the tests in step: every
// case a test names has a row, every row a test that names it, and every
// test a row cites exists.
func TestHostileNodeDoc(t *testing.T) {
	doc, err := os.ReadFile("testdata/HOSTILE.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // case -> its row
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, " | ")
		if strings.HasPrefix(line, "| ") && len(cells) >= 3 && !strings.HasPrefix(line, "| Case") && !strings.HasPrefix(line, "|---") {
			rows[strings.TrimPrefix(cells[0], "| ")] = line
		}
	}
	named := map[string]bool{}
	funcs := map[string]bool{}
	for _, dir := range testSources {
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			prefix := ""
			if dir == "confine" {
				prefix = "confine."
			}
			for _, m := range funcRe.FindAllStringSubmatch(string(src), -1) {
				funcs[prefix+m[1]] = true
			}
			for _, m := range markRe.FindAllStringSubmatch(joinComments(string(src)), -1) {
				for _, q := range quotedRe.FindAllString(m[1], -1) {
					c, err := strconv.Unquote(q)
					if err != nil {
						t.Fatalf("%s: %s: %v", f, q, err)
					}
					named[c] = true
					if rows[c] == "" {
						t.Errorf("%s names the case %q, which testdata/HOSTILE.md has no row for", f, c)
					}
				}
			}
		}
	}
	for c, row := range rows {
		if strings.Contains(row, "`Test") && !named[c] {
			t.Errorf("the row %q is named by no test's HOSTILE.md comment", c)
		}
	}
	for _, m := range testRe.FindAllStringSubmatch(string(doc), -1) {
		if !funcs[m[1]] {
			t.Errorf("testdata/HOSTILE.md cites %s, which is not a test of %v", m[1], testSources)
		}
	}
	if len(named) < 15 {
		t.Errorf("only %d cases named by tests; the markers are not being found", len(named))
	}
}

// joinComments turns each run of // comment lines into one line, so that a
// case quoted across lines reads as one string.
func joinComments(src string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(src, "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "//")
		switch {
		case ok && in:
			b.WriteString(" " + strings.TrimSpace(text))
		case ok:
			b.WriteString("\n" + strings.TrimSpace(text))
			in = true
		default:
			in = false
		}
	}
	return b.String()
}
