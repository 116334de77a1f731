package slurm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// A job id never changes its array task, so what a read saw can address
// later commands. Entries expire so that ids reused after a slurmctld state
// wipe, or after MaxJobId wraps, are looked up afresh.
const (
	targetTTL     = time.Hour
	maxTargetSize = 200000
)

type targetEntry struct {
	target string
	seen   time.Time
}

// targetCache maps a numeric job id to the id commands must use for it
// (Job.Target). Guarded by Client.mu.
type targetCache struct {
	m map[string]targetEntry
}

func (t *targetCache) init() { t.m = map[string]targetEntry{} }

// remember records the command targets of jobs just read.
func (c *Client) remember(jobs []Job) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen.m)+len(jobs) > maxTargetSize {
		for id, e := range c.seen.m {
			if now.Sub(e.seen) > targetTTL {
				delete(c.seen.m, id)
			}
		}
		if len(c.seen.m)+len(jobs) > maxTargetSize {
			c.seen.init()
		}
	}
	for i := range jobs {
		c.seen.m[jobs[i].ID] = targetEntry{target: jobs[i].Target(), seen: now}
	}
}

func (c *Client) cachedTarget(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.seen.m[id]
	if !ok || time.Since(e.seen) > targetTTL {
		return "", false
	}
	return e.target, true
}

// target returns how a command must address the job the caller named: an
// explicit "123_4" as is; a numeric id as Job.Target, so that the last task
// of an array (whose id is the array's) is not mistaken for the whole array.
// A job slurmctld no longer knows keeps its id, and the command reports it.
func (c *Client) target(ctx context.Context, id string) (string, error) {
	if err := validTarget(id); err != nil {
		return "", err
	}
	if strings.Contains(id, "_") {
		return id, nil
	}
	if t, ok := c.cachedTarget(id); ok {
		return t, nil
	}
	j, err := c.Job(ctx, id)
	switch {
	case errors.Is(err, ErrNoJob):
		return id, nil
	case err != nil:
		return "", fmt.Errorf("find how to address job %s: %w", id, err)
	}
	if t := j.Target(); t != id {
		c.log.Debug("addressing array task by array id", zap.String("job", id), zap.String("target", t))
		return t, nil
	}
	return id, nil
}

// resolve finds the targets of several ids; byTarget maps each target back to the id
// the caller gave.
func (c *Client) resolve(ctx context.Context, idList []string) (targets []string, byTarget map[string]string, err error) {
	for _, id := range idList {
		if err := validTarget(id); err != nil {
			return nil, nil, err
		}
	}
	byTarget = make(map[string]string, len(idList))
	for _, id := range idList {
		t, err := c.target(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		if _, dup := byTarget[t]; dup {
			continue
		}
		byTarget[t] = id
		targets = append(targets, t)
	}
	return targets, byTarget, nil
}
