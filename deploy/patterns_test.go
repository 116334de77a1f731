package deploy

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/rescue"
)

// One validation per setting: the CloudFormation parameter and the head
// node installer's flag that carry a setting accept exactly what config
// validation accepts (config.Patterns). A prefix the stack and the
// installer took but the env file writer refused once failed every
// requeue of the cluster.
func TestEveryWriterUsesTheSettingsPattern(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl["Parameters"].(map[string]any)
	for param, setting := range map[string]string{"ClusterName": "cluster", "BucketName": "bucket", "Prefix": "prefix"} {
		got := str(params[param].(map[string]any)["AllowedPattern"])
		if want := config.Patterns[setting]; got != want && got != "^$|"+want {
			t.Errorf("parameter %s: AllowedPattern %s, want %s (config's %s)", param, got, want, setting)
		}
	}
	script, err := os.ReadFile("parallelcluster/install-headnode.sh")
	if err != nil {
		t.Fatal(err)
	}
	for flag, setting := range map[string]string{"cluster": "cluster", "region": "region", "state-table": "state_table", "bucket": "bucket", "prefix": "prefix", "document": "ssm.document"} {
		m := regexp.MustCompile(`(?m)^check --` + flag + ` "\$[a-z_]+" '([^']*)'$`).FindSubmatch(script)
		if m == nil {
			t.Errorf("install-headnode.sh checks --%s with no pattern in single quotes", flag)
			continue
		}
		if want := config.Patterns[setting]; string(m[1]) != want {
			t.Errorf("install-headnode.sh --%s: %s, want %s (config's %s)", flag, m[1], want, setting)
		}
	}
}

// Every prefix config validation accepts makes env file values the writer
// and every reader accept: the URI is built from bucket, prefix, cluster
// and job id, and ends up in a file a shell-adjacent TaskProlog prints.
func TestEveryValidPrefixMakesAValidEnvFile(t *testing.T) {
	prefixRe := regexp.MustCompile(config.Patterns["prefix"])
	var chars []string
	for c := rune(0x21); c < 0x7f; c++ {
		if prefixRe.MatchString(string(c) + "x") {
			chars = append(chars, string(c))
		}
	}
	dir := t.TempDir()
	for i, c := range chars {
		prefix := fmt.Sprintf("team%sa/b%s", c, strings.Repeat(c, 2))
		cfg := config.Default()
		cfg.Cluster, cfg.Bucket, cfg.Prefix = "hpc-1", "rescue.bucket-1", prefix
		if probs := cfg.Validate(config.RoleAgent); len(probs) > 0 {
			continue // a segment of dots alone, say
		}
		l := rescue.Layout{Bucket: cfg.Bucket, Prefix: cfg.Prefix, Cluster: cfg.Cluster, Spool: dir}
		job := fmt.Sprint(100 + i)
		if err := l.WriteJobEnv(job, rescue.JobEnv{URI: l.RunURI(job, 2), Status: "complete", Run: 2, Nodes: [][]string{{"q-dy-c5-1"}}}); err != nil {
			t.Errorf("prefix %q: %v", prefix, err)
			continue
		}
		if _, err := l.ReadJobEnv(job); err != nil {
			t.Errorf("prefix %q: %v", prefix, err)
		}
	}
	cfg := config.Default()
	cfg.Cluster, cfg.Prefix = "hpc-1", "team(1)/x'y"
	if len(cfg.Validate(config.RoleAgent)) == 0 {
		t.Error("a prefix with characters a shell would interpret passed validation")
	}
}
