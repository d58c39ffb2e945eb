package sftpdir

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"

	"github.com/ferry-project/ferry/internal/errdefs"
)

func serve(t *testing.T, dir string) net.Conn {
	a, b := net.Pipe()
	go func() { _ = Serve(b, dir) }()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func TestSendAndVerify(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000)
	for name, data := range map[string][]byte{"pages-1.img": big, "core-1.img": []byte("x"), "descriptors.json": []byte("[]"), "empty.img": nil} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sums, n, err := Send(context.Background(), serve(t, dst), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 4 || n != int64(len(big)+3) {
		t.Fatalf("sums %d files, %d bytes", len(sums), n)
	}
	if err := Verify(dst, sums, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// One flipped byte is found.
	p := filepath.Join(dst, "pages-1.img")
	b, _ := os.ReadFile(p)
	b[12345] ^= 1
	_ = os.WriteFile(p, b, 0o600)
	if err := Verify(dst, sums, nil); !errors.Is(err, errdefs.ErrProtocol) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corruption not found: %v", err)
	}
	// An extra file is found.
	b[12345] ^= 1
	_ = os.WriteFile(p, b, 0o600)
	_ = os.WriteFile(filepath.Join(dst, "stray"), nil, 0o600)
	if err := Verify(dst, sums, nil); err == nil {
		t.Fatal("extra file accepted")
	}
}

// TestServerConfinement: a client that is not ferry cannot escape, read, list, link or delete.
func TestServerConfinement(t *testing.T) {
	root := t.TempDir()
	dst := filepath.Join(root, "images")
	_ = os.Mkdir(dst, 0o700)
	_ = os.WriteFile(filepath.Join(root, "secret"), []byte("s"), 0o600)
	_ = os.Symlink("../secret", filepath.Join(dst, "link"))
	conn := serve(t, dst)
	cl, err := sftp.NewClientPipe(conn, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Paths that climb are cleaned by sftp to names inside the directory; nested or hidden
	// names are refused. Either way nothing outside the directory may change.
	for _, p := range []string{"/../secret", "../secret", "/a/../../secret"} {
		if f, err := cl.Create(p); err == nil {
			f.Close()
		}
	}
	for _, p := range []string{"/sub/x", "/.hidden", "/a/b"} {
		if f, err := cl.Create(p); err == nil {
			f.Close()
			t.Errorf("created %q", p)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 2 {
		t.Errorf("the parent directory changed: %v", ents)
	}
	if f, err := cl.OpenFile("/link", os.O_WRONLY|os.O_CREATE|os.O_TRUNC); err == nil {
		_, _ = f.Write([]byte("pwned"))
		f.Close()
	}
	if b, _ := os.ReadFile(filepath.Join(root, "secret")); string(b) != "s" {
		t.Errorf("write through a symlink reached %q", b)
	}
	if _, err := cl.Open("/link"); err == nil {
		t.Error("read allowed")
	}
	if _, err := cl.ReadDir("/"); err == nil {
		t.Error("listing allowed")
	}
	if err := cl.Remove("/link"); err == nil {
		t.Error("remove allowed")
	}
	if err := cl.Symlink("/etc/passwd", "/x"); err == nil {
		t.Error("symlink allowed")
	}
	if err := cl.Mkdir("/d"); err == nil {
		t.Error("mkdir allowed")
	}
}
