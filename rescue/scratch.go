package rescue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/spotrescue/spotrescue/rescue/confine"
	"github.com/spotrescue/spotrescue/rescue/naming"
)

// ScratchVars are the values a scratch path template may use. Every
// caller, on the head node (from squeue or a record) and on the compute
// node (from the Prolog's and TaskProlog's environment), makes them with
// NewScratchVars, which takes every value: a value left out is a compile
// error, not a path the Prolog and the controller disagree on (the array
// ids were once lost that way).
type ScratchVars struct {
	jobID, user, arrayJobID, arrayTaskID, node string
}

// NewScratchVars gives the values of a job on a node; the array ids are ""
// unless the job is an array task.
func NewScratchVars(jobID, user, arrayJobID, arrayTaskID, node string) ScratchVars {
	return ScratchVars{jobID: jobID, user: user, arrayJobID: arrayJobID, arrayTaskID: arrayTaskID, node: node}
}

// Node is the node the values are for.
func (v ScratchVars) Node() string { return v.node }

// userRe is a POSIX user name as useradd takes it.
var userRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

func validUser(s string) error {
	if !userRe.MatchString(s) {
		return errors.New("not a user name")
	}
	return nil
}

// ScratchDir expands template with v. Every value is checked against a
// strict pattern first, so a job or user name can never steer the path
// (no "/", no ".."). Values that do not apply to a job (array ids of a
// plain job) expand to "none".
func ScratchDir(template string, v ScratchVars) (string, error) {
	if v.arrayJobID == "" {
		v.arrayJobID, v.arrayTaskID = "none", "none"
	}
	type check struct {
		name, value string
		valid       func(string) error
	}
	checks := []check{{"job_id", v.jobID, naming.JobNumber}, {"user", v.user, validUser}, {"node", v.node, naming.Node}}
	if v.arrayJobID != "none" {
		checks = append(checks, check{"array_job_id", v.arrayJobID, naming.JobNumber}, check{"array_task_id", v.arrayTaskID, naming.TaskID})
	}
	for _, c := range checks {
		if strings.Contains(template, "{"+c.name+"}") && c.valid(c.value) != nil {
			return "", fmt.Errorf("scratch path: %s %q is not usable in a path", c.name, c.value)
		}
	}
	r := strings.NewReplacer("{job_id}", v.jobID, "{user}", v.user, "{node}", v.node, "{array_job_id}", v.arrayJobID, "{array_task_id}", v.arrayTaskID)
	return filepath.Clean(r.Replace(template)), nil
}

// Who owns each directory of a scratch path below the scratch root.
type owner int

const (
	// ownedByRoot: shared between users (literal text or {node}): root's,
	// 0755. Owned by anyone else, it was planted.
	ownedByRoot owner = iota
	// ownedByUser: a per-user parent ({user}): the user's, 0700, so that
	// they can reach their jobs' directories and nobody else can. Root's
	// is accepted (an administrator made it).
	ownedByUser
	// ownedByJob: the job's directory ({job_id}, an array id) and below:
	// the user's, 0700. Root's is adopted; anyone else's was planted.
	ownedByJob
)

// part is one directory of a scratch path below the root.
type part struct {
	name  string
	owner owner
}

// Scratch is a job's scratch directory on a node: the node's scratch root,
// which an administrator made and the agent trusts by path, and the
// directories below it, which the Prolog makes.
type Scratch struct {
	Root  string
	parts []part
}

// NewScratch expands the template for a job on a node. root is the
// scratch.root setting ({node} expanded here); the template starts with it,
// as config validation checks, and each of its components below the root
// says, by its placeholders, who owns that directory.
func NewScratch(root, template string, v ScratchVars) (Scratch, error) {
	full, err := ScratchDir(template, v)
	if err != nil {
		return Scratch{}, err
	}
	root = filepath.Clean(root)
	below, ok := strings.CutPrefix(filepath.Clean(template), root+"/")
	if !ok {
		return Scratch{}, fmt.Errorf("scratch path template %s is not below the scratch root %s", template, root)
	}
	s := Scratch{Root: strings.ReplaceAll(root, "{node}", v.node)}
	names := strings.Split(strings.TrimPrefix(full, s.Root+"/"), "/")
	comps := strings.Split(below, "/")
	if !strings.HasPrefix(full, s.Root+"/") || len(names) != len(comps) {
		return Scratch{}, fmt.Errorf("scratch path %s does not follow the template %s", full, template)
	}
	job := false
	for i, c := range comps {
		job = job || strings.Contains(c, "{job_id}") || strings.Contains(c, "{array_job_id}") || strings.Contains(c, "{array_task_id}")
		o := ownedByRoot
		switch {
		case job:
			o = ownedByJob
		case strings.Contains(c, "{user}"):
			o = ownedByUser
		}
		s.parts = append(s.parts, part{name: names[i], owner: o})
	}
	return s, nil
}

// Path is the job's scratch directory.
func (s Scratch) Path() string {
	p := s.Root
	for _, pt := range s.parts {
		p += "/" + pt.name
	}
	return p
}

// Prepare opens the job's scratch directory through handles from the
// scratch root, making each missing directory with the owner and mode its
// part calls for, and returns it. No symlink is followed at any component.
// An entry in the way that is not what it should be (a symlink, a file, a
// directory another user made) is moved aside and replaced when we are
// root, and refused when we are not: the job gets a fresh directory, and
// nothing the entry pointed at is touched. Ownership and modes are set on
// the open directory (fchown, fchmod), never by path.
func (s Scratch) Prepare(uid, gid int, log *zap.Logger) (*confine.Dir, error) {
	cur, err := confine.OpenRoot(s.Root)
	if err != nil {
		return nil, fmt.Errorf("scratch root: %w", err)
	}
	for _, pt := range s.parts {
		next, err := s.step(cur, pt, uid, gid, log)
		cur.Close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// step opens (or makes) one directory of the path below cur.
func (s Scratch) step(cur *confine.Dir, pt part, uid, gid int, log *zap.Logger) (*confine.Dir, error) {
	mode := uint32(0o700)
	if pt.owner == ownedByRoot {
		mode = 0o755
	}
	for range 3 {
		err := cur.Mkdir(pt.name, mode)
		made := err == nil
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("make %s/%s: %w", cur.Name(), pt.name, err)
		}
		d, err := cur.OpenDir(pt.name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed between our mkdir and open
		}
		if err != nil && !confine.IsSymlinkErr(err) {
			return nil, fmt.Errorf("open %s/%s: %w", cur.Name(), pt.name, err)
		}
		if err == nil {
			ok, err := settle(d, pt.owner, made, uid, gid, mode)
			if err != nil {
				d.Close()
				return nil, err
			}
			if ok {
				return d, nil
			}
			d.Close()
		}
		if err := plantedAside(cur, pt.name, log); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s/%s keeps being replaced by another user", cur.Name(), pt.name)
}

// settle checks who owns an opened directory of the path and gives one we
// made (or a root-owned job directory) its owner and mode. ok false means
// the directory was planted.
func settle(d *confine.Dir, o owner, made bool, uid, gid int, mode uint32) (ok bool, err error) {
	info, err := d.Stat()
	if err != nil {
		return false, err
	}
	me := os.Geteuid()
	switch {
	case made && me == 0 && o != ownedByRoot:
		return true, confine.SetAttrs(d.File(), uid, gid, fs.FileMode(mode), time.Time{})
	case made:
		return true, confine.SetAttrs(d.File(), -1, -1, fs.FileMode(mode), time.Time{}) // the umask may have cut it
	case o == ownedByRoot:
		return info.UID == 0 || info.UID == me, nil
	case o == ownedByUser:
		return info.UID == uid || info.UID == 0, nil
	case info.UID == uid:
		return true, nil
	case info.UID == 0 && me == 0: // ours from before, or an administrator's: the job's now
		return true, confine.SetAttrs(d.File(), uid, gid, fs.FileMode(mode), time.Time{})
	}
	return false, nil
}

// plantedAside moves an entry planted where we need a directory of our
// own out of the way, keeping it for whoever investigates (it is evidence,
// not ours to delete). Only root may; anyone else is refused, as a planted
// entry must never be used.
func plantedAside(dir *confine.Dir, name string, log *zap.Logger) error {
	info, _ := dir.Lstat(name)
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s/%s is not ours (owner uid %d, %s); remove it", dir.Name(), name, info.UID, info.Mode)
	}
	aside := fmt.Sprintf("%s.planted-%d", name, time.Now().UnixNano())
	if err := dir.Rename(name, dir, aside, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move aside %s/%s: %w", dir.Name(), name, err)
	}
	if log != nil {
		log.Warn("moved aside an entry another user planted where a directory of ours belongs; made a fresh one",
			zap.String("path", dir.Name()+"/"+name), zap.String("now", aside), zap.Int("owner", info.UID), zap.String("mode", info.Mode.String()))
	}
	return nil
}
