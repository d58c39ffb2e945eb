// Package snapshottest is the conformance suite every snapshot.Driver passes, on real
// filesystems. An Env provides two hosts (A and B), the driver, and what ferry-receiver does on
// the target side; the suite drives the lifecycle (prepare → pre-sync while the data changes →
// final sync → commit or abort) and compares the trees byte for byte and attribute by attribute.
package snapshottest

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/snapshot"
)

// Host is one side.
type Host string

// The two hosts.
const (
	A Host = "A"
	B Host = "B"
)

// Other is the host that is not h.
func Other(h Host) Host {
	if h == A {
		return B
	}
	return A
}

// Env is a driver under test with its two hosts.
type Env interface {
	// NewVolume creates an empty volume on host A and returns its directory there.
	NewVolume(t *testing.T) string
	// Plan prepares a move of the volume from host `from` (what preflight and the receiver's
	// prepare do) and returns the driver for this migration and the mount.
	Plan(t *testing.T, from Host) (snapshot.Driver, snapshot.Mount)
	// Activate makes the target's copy usable (mounted where the volume lives) and returns its
	// directory on the target.
	Activate(t *testing.T, m snapshot.Mount) string
	// CommitTarget and AbortTarget do the receiver's side of a commit or an abort.
	CommitTarget(t *testing.T, m snapshot.Mount)
	AbortTarget(t *testing.T, m snapshot.Mount)
	// TargetResidue describes what the aborted move left on the target ("" if nothing).
	TargetResidue(t *testing.T, m snapshot.Mount) string
}

// Run runs the suite.
func Run(t *testing.T, env Env) {
	t.Run("SyncWhileChanging", func(t *testing.T) { testSync(t, env) })
	t.Run("AbortLeavesTargetClean", func(t *testing.T) { testAbort(t, env) })
	t.Run("MoveBackSendsOnlyChanges", func(t *testing.T) { testMoveBack(t, env) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Features are what a filesystem can hold besides files, directories, links and ownership.
type Features struct {
	Xattrs  bool // user.* extended attributes
	ACLs    bool // POSIX ACLs (setfacl)
	Devices bool // device nodes and fifos
}

// featurer is implemented by an Env whose filesystem lacks some features (default: all).
type featurer interface{ Features() Features }

func features(env Env) Features {
	if f, ok := env.(featurer); ok {
		return f.Features()
	}
	return Features{Xattrs: true, ACLs: true, Devices: true}
}

// populate writes a tree with every kind of file a container volume can hold.
func populate(t *testing.T, dir string, f Features) {
	t.Helper()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("populate: %s: %v", what, err)
		}
	}
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	step("write big", os.WriteFile(filepath.Join(dir, "big"), big, 0o640))
	step("write small", os.WriteFile(filepath.Join(dir, "small"), []byte("hello"), 0o600))
	step("hard link", os.Link(filepath.Join(dir, "small"), filepath.Join(dir, "small-link")))
	step("symlink", os.Symlink("small", filepath.Join(dir, "sym")))
	step("mkdir", os.MkdirAll(filepath.Join(dir, "d/e"), 0o750))
	step("chown", os.Chown(filepath.Join(dir, "d"), 1234, 5678))
	step("write nested", os.WriteFile(filepath.Join(dir, "d/e/f"), []byte("nested"), 0o644))
	if f.Xattrs {
		step("setxattr", unix.Setxattr(filepath.Join(dir, "small"), "user.color", []byte("blue"), 0))
	}
	if f.Devices {
		step("mkfifo", unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
		step("mknod", unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	} else {
		step("stand-in for the fifo", os.WriteFile(filepath.Join(dir, "fifo"), nil, 0o600))
	}
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	step("create sparse", err)
	step("truncate sparse", sp.Truncate(32<<20))
	_, err = sp.WriteAt([]byte("end"), 32<<20-3)
	step("write sparse", err)
	step("close sparse", sp.Close())
	if f.ACLs {
		step("setfacl", exec.Command("setfacl", "-m", "u:4321:rw", filepath.Join(dir, "small")).Run())
	}
}

// mutate changes the tree as a running container would.
func mutate(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "big"), os.O_WRONLY, 0)
	must(t, err)
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	_, err = f.WriteAt(chunk, 3<<20)
	must(t, err)
	must(t, f.Close())
	must(t, os.WriteFile(filepath.Join(dir, "new"), []byte("written while running"), 0o644))
	must(t, os.Remove(filepath.Join(dir, "fifo")))
	must(t, os.Chmod(filepath.Join(dir, "d/e/f"), 0o600))
	// A rewrite in place that keeps size and mtime: what happens when two writes fall in one tick
	// of the clock file times come from, and the pre-sync read the file between them.
	p := filepath.Join(dir, "d/e/f")
	fi, err := os.Stat(p)
	must(t, err)
	must(t, os.WriteFile(p, []byte("NESTED"), 0o600))
	must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
}

// move runs one migration of the volume from host `from`, up to the final sync.
func move(t *testing.T, env Env, from Host) (int64, snapshot.Driver, snapshot.Mount) {
	t.Helper()
	ctx := context.Background()
	d, m := env.Plan(t, from)
	must(t, d.Prepare(ctx, m))
	st1, err := d.PreSync(ctx, m)
	must(t, err)
	st2, err := d.FinalSync(ctx, m)
	must(t, err)
	return st1.Bytes + st2.Bytes, d, m
}

func commit(t *testing.T, env Env, d snapshot.Driver, m snapshot.Mount) {
	t.Helper()
	must(t, d.Commit(context.Background(), m))
	env.CommitTarget(t, m)
}

func testSync(t *testing.T, env Env) {
	src := env.NewVolume(t)
	populate(t, src, features(env))
	ctx := context.Background()
	d, m := env.Plan(t, A)
	must(t, d.Prepare(ctx, m))
	if _, err := d.PreSync(ctx, m); err != nil {
		t.Fatal(err)
	}
	mutate(t, src)
	if _, err := d.FinalSync(ctx, m); err != nil {
		t.Fatal(err)
	}
	dst := env.Activate(t, m)
	Compare(t, src, dst)
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !os.IsNotExist(err) {
		t.Error("a file deleted before the final sync survives on the target")
	}
	// The source must be untouched by the move (before the commit retires it).
	if b, _ := os.ReadFile(filepath.Join(src, "new")); string(b) != "written while running" {
		t.Error("the source changed")
	}
	commit(t, env, d, m)
}

func testAbort(t *testing.T, env Env) {
	src := env.NewVolume(t)
	populate(t, src, features(env))
	ctx := context.Background()
	d, m := env.Plan(t, A)
	must(t, d.Prepare(ctx, m))
	if _, err := d.PreSync(ctx, m); err != nil {
		t.Fatal(err)
	}
	must(t, d.Abort(ctx, m))
	env.AbortTarget(t, m)
	if r := env.TargetResidue(t, m); r != "" {
		t.Errorf("an aborted move left %s on the target", r)
	}
	if b, err := os.ReadFile(filepath.Join(src, "small")); err != nil || string(b) != "hello" {
		t.Errorf("the source lost data on abort: %q %v", b, err)
	}
}

// testMoveBack: A → B, change 1 MiB on B, B → A: the second move sends a fraction of the first.
func testMoveBack(t *testing.T, env Env) {
	src := env.NewVolume(t)
	populate(t, src, features(env))
	first, d1, m1 := move(t, env, A)
	dst := env.Activate(t, m1)
	Compare(t, src, dst)
	commit(t, env, d1, m1)

	mutateSmall(t, dst)
	second, d2, m2 := move(t, env, B)
	back := env.Activate(t, m2)
	Compare(t, dst, back)
	commit(t, env, d2, m2)
	if first <= 0 || second*4 > first {
		t.Errorf("moving back sent %d bytes after %d for the first move: want only the changes", second, first)
	}
	t.Logf("first move %d bytes, move back %d bytes", first, second)
}

func mutateSmall(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "big"), os.O_WRONLY, 0)
	must(t, err)
	chunk := make([]byte, 256<<10)
	_, _ = rand.Read(chunk)
	_, err = f.WriteAt(chunk, 1<<20)
	must(t, err)
	must(t, f.Close())
}

// Compare checks that dst is an exact copy of src: content, mode, ownership, device numbers,
// symlinks, hard links, xattrs (ACLs included) and sparseness.
func Compare(t *testing.T, src, dst string) {
	t.Helper()
	links := map[uint64]string{}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(q, &b); err != nil {
			t.Errorf("%s is missing on the target", rel)
			return nil
		}
		if rel == "." {
			return nil
		}
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev || a.Size != b.Size {
			t.Errorf("%s: mode %o uid %d gid %d rdev %d size %d, target %o %d %d %d %d", rel, a.Mode, a.Uid, a.Gid, a.Rdev, a.Size, b.Mode, b.Uid, b.Gid, b.Rdev, b.Size)
		}
		if a.Nlink > 1 && fi.Mode().IsRegular() {
			if other, ok := links[a.Ino]; ok {
				var o unix.Stat_t
				_ = unix.Lstat(filepath.Join(dst, other), &o)
				if o.Ino != b.Ino {
					t.Errorf("%s and %s are hard links on the source, not on the target", rel, other)
				}
			}
			links[a.Ino] = rel
		}
		switch {
		case fi.Mode().IsRegular():
			x, _ := os.ReadFile(p)
			y, _ := os.ReadFile(q)
			if !bytes.Equal(x, y) {
				t.Errorf("%s: content differs", rel)
			}
			if a.Blocks*512 < a.Size/2 && b.Blocks*512 > a.Blocks*512+(1<<20) {
				t.Errorf("%s: sparse on the source (%d bytes allocated), %d on the target", rel, a.Blocks*512, b.Blocks*512)
			}
		case fi.Mode()&os.ModeSymlink != 0:
			x, _ := os.Readlink(p)
			y, _ := os.Readlink(q)
			if x != y {
				t.Errorf("%s: symlink %q, target %q", rel, x, y)
			}
			return nil
		}
		if xa, xb := xattrs(p), xattrs(q); xa != xb {
			t.Errorf("%s: xattrs %q, target %q", rel, xa, xb)
		}
		return nil
	})
	must(t, err)
}

func xattrs(p string) string {
	buf := make([]byte, 8192)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "error: " + err.Error()
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 8192)
		m, _ := unix.Lgetxattr(p, name, v)
		out = append(out, name+"="+string(v[:max(m, 0)]))
	}
	return strings.Join(out, ",")
}
