package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// [text](target): a Markdown link; web links and anchors are not files.
	mdLinkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// A path in the repository named in prose: a top-level directory, then
	// a file with an extension or a directory with a trailing slash.
	repoPathRe = regexp.MustCompile("(?:^|[\\s`'\"(])((?:controller|rescue|state|deploy|hack)/(?:[A-Za-z0-9_.-]+/)*(?:[A-Za-z0-9_-]+\\.(?:go|md|yaml|yml|json|sh|in|service)\\b)?)")
)

// Every relative link and every repository path that README.md and the
// files under deploy/ name exists: a reader sent to a file that is not
// there (deploy/README-deploying.md once) is a reader lost.
func TestNamedFilesExist(t *testing.T) {
	docs := []string{"../README.md"}
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			docs = append(docs, p)
		}
		return nil
	})
	checked := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, m := range mdLinkRe.FindAllStringSubmatch(text, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			if _, err := os.Stat(filepath.Join(filepath.Dir(doc), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, m[1])
			}
		}
		for _, m := range repoPathRe.FindAllStringSubmatch(text, -1) {
			p := m[1]
			if !strings.HasSuffix(p, "/") && filepath.Ext(p) == "" {
				continue
			}
			checked++
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s names %s, which does not exist", doc, p)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d links and paths checked: the patterns find nothing", checked)
	}
}
