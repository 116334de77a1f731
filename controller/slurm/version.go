package slurm

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
)

// Version is a Slurm release, such as 22.05.8.
type Version struct{ Major, Minor, Micro int }

func (v Version) String() string { return fmt.Sprintf("%02d.%02d.%d", v.Major, v.Minor, v.Micro) }

// AtLeast reports whether v is release major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// jsonScontrol: `scontrol --json show job|node` exists from 23.02 on.
func (v Version) jsonScontrol() bool { return v.AtLeast(23, 2) }

// versionPattern finds the release in "slurm 22.05.8", "slurm-wlm 22.05.8",
// "slurm 24.05.4-1" or "slurm 23.11.0-0rc1".
var versionPattern = regexp.MustCompile(`(?:^|\s)(\d{2})\.(\d{1,2})\.(\d+)`)

// ParseVersion reads the output of `scontrol --version`.
func ParseVersion(s string) (Version, error) {
	m := versionPattern.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("no Slurm version in %q", truncate(s, 80))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Micro, _ = strconv.Atoi(m[3])
	return v, nil
}

// Version returns the version of the Slurm tools, from `scontrol --version`.
// It is cached after the first success: the controller is restarted when
// ParallelCluster updates Slurm.
func (c *Client) Version(ctx context.Context) (Version, error) {
	c.mu.Lock()
	v, ok := c.version, c.haveVersion
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	out, err := c.run(ctx, "scontrol", "--version")
	if err != nil {
		return Version{}, fmt.Errorf("slurm version: %w", err)
	}
	if v, err = ParseVersion(string(out)); err != nil {
		return Version{}, fmt.Errorf("slurm version: %w", err)
	}
	c.mu.Lock()
	c.version, c.haveVersion = v, true
	c.mu.Unlock()
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
