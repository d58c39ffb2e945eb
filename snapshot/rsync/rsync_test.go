package rsync

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
)

// TestMain lets the test binary act as the relay helper that rsync runs.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == RshCmd {
		if err := RshMain(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// loopback serves rsync streams in-process into dest, as ferry-receiver does.
type loopback struct {
	t    *testing.T
	dest string
}

func (l loopback) OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error) {
	ua, ub, err := unixPair()
	if err != nil {
		return nil, err
	}
	opts, err := CheckServerArgs(h.Args, h.Name)
	if err != nil {
		return nil, err
	}
	go func() {
		defer ub.Close()
		if err := Serve(ctx, ub, opts, l.dest); err != nil {
			l.t.Errorf("server: %v", err)
		}
	}()
	return ua, nil
}

func unixPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, _ := net.FileConn(f)
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1]), nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRsyncPreservesEverything moves a tree with hard links, xattrs, an ACL, a sparse file, a
// device node, a fifo, a symlink and foreign numeric ownership, then a delta with a deletion,
// and compares both trees attribute by attribute.
func TestRsyncPreservesEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: device nodes, foreign ownership and trusted.* xattrs")
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed (make deps)")
	}
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a"), []byte("hello"), 0o640))
	must(t, os.Link(filepath.Join(src, "a"), filepath.Join(src, "a-link")))
	must(t, os.Mkdir(filepath.Join(src, "d"), 0o750))
	must(t, os.Chown(filepath.Join(src, "d"), 1234, 5678))
	must(t, unix.Setxattr(filepath.Join(src, "d"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(src, "a"), "user.color", []byte("blue"), 0))
	must(t, unix.Mknod(filepath.Join(src, "whiteout"), unix.S_IFCHR, 0)) // overlay whiteout: 0/0, mode 0
	must(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(t, os.Symlink("a", filepath.Join(src, "sym")))
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	must(t, f.Truncate(64<<20))
	_, err = f.WriteAt([]byte("end"), 64<<20-3)
	must(t, err)
	f.Close()
	acl := exec.Command("setfacl", "-m", "u:4321:rw", filepath.Join(src, "a"))
	hasACL := acl.Run() == nil

	d := &Driver{Streams: loopback{t, dst}, Rsh: []string{os.Args[0], RshCmd}}
	m := snapshot.Mount{Name: "rootfs", Source: src}
	st, err := d.PreSync(context.Background(), m)
	must(t, err)
	if st.Bytes <= 0 {
		t.Errorf("pre-sync reports %d bytes carried", st.Bytes)
	}
	// rsync's sender reads holes as zeros and sends them; only the receiver recreates the holes
	// (checked below). The README names this limit.
	// A change while "frozen": new content, a deletion.
	must(t, os.WriteFile(filepath.Join(src, "a"), []byte("hello, again"), 0o640))
	must(t, os.Remove(filepath.Join(src, "fifo")))
	_, err = d.FinalSync(context.Background(), m)
	must(t, err)

	compare(t, src, dst, hasACL)
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !os.IsNotExist(err) {
		t.Errorf("deleted file survives on the target")
	}
	var s1, s2 unix.Stat_t
	must(t, unix.Stat(filepath.Join(dst, "a"), &s1))
	must(t, unix.Stat(filepath.Join(dst, "a-link"), &s2))
	if s1.Ino != s2.Ino {
		t.Errorf("hard link became a copy")
	}
	var sp unix.Stat_t
	must(t, unix.Stat(filepath.Join(dst, "sparse"), &sp))
	if sp.Blocks*512 > 1<<20 {
		t.Errorf("sparse file occupies %d bytes on the target", sp.Blocks*512)
	}
	if !hasACL {
		t.Log("setfacl unavailable: ACLs not exercised (install acl)")
	}
}

func compare(t *testing.T, src, dst string, acl bool) {
	t.Helper()
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
			t.Errorf("%s missing on the target", rel)
			return nil
		}
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev || a.Size != b.Size {
			t.Errorf("%s: mode/owner/dev/size %o %d:%d %d %d vs %o %d:%d %d %d", rel, a.Mode, a.Uid, a.Gid, a.Rdev, a.Size, b.Mode, b.Uid, b.Gid, b.Rdev, b.Size)
		}
		if fi.Mode().IsRegular() {
			x, _ := os.ReadFile(p)
			y, _ := os.ReadFile(q)
			if !bytes.Equal(x, y) {
				t.Errorf("%s: content differs", rel)
			}
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			x, _ := os.Readlink(p)
			y, _ := os.Readlink(q)
			if x != y {
				t.Errorf("%s: symlink %q vs %q", rel, x, y)
			}
			return nil
		}
		if xa, xb := xattrs(p), xattrs(q); xa != xb && (acl || !strings.Contains(xa, "posix_acl")) {
			t.Errorf("%s: xattrs %q vs %q", rel, xa, xb)
		}
		return nil
	})
	must(t, err)
}

func xattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "err:" + err.Error()
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		m, _ := unix.Lgetxattr(p, name, v)
		out = append(out, name+"="+string(v[:max(m, 0)]))
	}
	return strings.Join(out, ",")
}

func TestSentFiles(t *testing.T) {
	out := "<f.st...... big\n.f...p..... d/e/f\ncd+++++++++ newdir/\n<f+++++++++ newdir/x\n*deleting   gone\n<f..t...... odd\\#012name\n\n"
	got := sentFiles([]byte(out))
	want := map[string]bool{"big": true, "newdir/x": true, "odd\\#012name": true}
	if len(got) != len(want) {
		t.Fatalf("sentFiles = %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("sentFiles = %v, want %v", got, want)
		}
	}
	// What was only re-permissioned, created as a directory or deleted was not sent.
	for _, k := range []string{"d/e/f", "newdir/", "gone"} {
		if got[k] {
			t.Errorf("%s counted as sent", k)
		}
	}
}

func TestModifiedSinceSkipsSent(t *testing.T) {
	d := t.TempDir()
	for _, f := range []string{"a", "b", "sub/c"} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(d, f)), 0o755))
		must(t, os.WriteFile(filepath.Join(d, f), []byte(f), 0o644))
	}
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(d, "b"), old, old))
	list, err := modifiedSince(d, time.Now().Add(-time.Minute), map[string]bool{"a": true})
	if err != nil || string(list) != "sub/c\x00" {
		t.Fatalf("modifiedSince = %q, %v; want only sub/c (a was sent, b is old)", list, err)
	}
}

type refusing struct{}

func (refusing) OpenStream(context.Context, wire.StreamHeader) (transport.Stream, error) {
	return nil, errors.New("the target refused the stream")
}

// A stream the target refuses fails the sync at once: rsync, waiting on its relay, must not be
// left waiting (it did, until a context ended it).
func TestRefusedStreamFailsPromptly(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed (make deps)")
	}
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	d := &Driver{Streams: refusing{}, Rsh: []string{os.Args[0], RshCmd}}
	done := make(chan error, 1)
	go func() {
		_, err := d.PreSync(context.Background(), snapshot.Mount{Name: "vol", Source: src})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "refused the stream") {
			t.Fatalf("PreSync: %v, want the refusal", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PreSync still waits 30 s after the target refused its stream")
	}
}
