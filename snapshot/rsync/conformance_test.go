package rsync

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/snapshot/snapshottest"
)

// env: hosts A and B are two directories; a volume lives at the same relative path on each.
type env struct {
	root    string
	n       int
	created map[string]bool // target directories a plan created
	itemize bool            // the drivers' Itemize
}

func (e *env) path(h snapshottest.Host) string {
	return filepath.Join(e.root, string(h), fmt.Sprintf("vol-%d", e.n))
}

func (e *env) NewVolume(t *testing.T) string {
	e.n++
	p := e.path(snapshottest.A)
	must(t, os.MkdirAll(p, 0o755))
	return p
}

func (e *env) Plan(t *testing.T, from snapshottest.Host) (snapshot.Driver, snapshot.Mount) {
	dst := e.path(snapshottest.Other(from))
	if _, err := os.Stat(dst); os.IsNotExist(err) {
		must(t, os.MkdirAll(dst, 0o755))
		e.created[dst] = true
	}
	d := &Driver{Streams: loopback{t, dst}, Rsh: []string{os.Args[0], RshCmd}, Itemize: e.itemize}
	return d, snapshot.Mount{Name: "vol", Source: e.path(from)}
}

func (e *env) target(m snapshot.Mount) string {
	if filepath.Base(filepath.Dir(m.Source)) == string(snapshottest.A) {
		return e.path(snapshottest.B)
	}
	return e.path(snapshottest.A)
}

func (e *env) Activate(t *testing.T, m snapshot.Mount) string { return e.target(m) }
func (e *env) CommitTarget(t *testing.T, m snapshot.Mount)    {}

func (e *env) AbortTarget(t *testing.T, m snapshot.Mount) {
	if dst := e.target(m); e.created[dst] {
		must(t, os.RemoveAll(dst))
	}
}

func (e *env) TargetResidue(t *testing.T, m snapshot.Mount) string {
	if _, err := os.Stat(e.target(m)); err == nil {
		return "directory " + e.target(m)
	}
	return ""
}

func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: device nodes, foreign ownership, trusted xattrs")
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed (make deps)")
	}
	// Both final syncs: the one that rechecks every recently modified file, and the one that
	// rechecks only those its first pass did not send (a target with FeatureRsyncItemize).
	for _, itemize := range []bool{false, true} {
		t.Run(fmt.Sprintf("itemize=%v", itemize), func(t *testing.T) {
			snapshottest.Run(t, &env{root: t.TempDir(), created: map[string]bool{}, itemize: itemize})
		})
	}
}
