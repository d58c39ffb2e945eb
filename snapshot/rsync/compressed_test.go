package rsync

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-project/ferry/snapshot"
	"github.com/ferry-project/ferry/transport"
	"github.com/ferry-project/ferry/transport/wire"
	"github.com/ferry-project/ferry/transport/zstream"
)

// compressed serves like loopback, but both ends talk through zstream (as with --compress
// zstd): the rsync server then runs on pipes, not on the socket.
type compressed struct {
	t    *testing.T
	dest string
}

type zconn struct {
	io.Reader
	io.Writer
	c interface {
		Close() error
		CloseWrite() error
	}
}

func (z zconn) Close() error      { return z.c.Close() }
func (z zconn) CloseWrite() error { return z.c.CloseWrite() }

func (l compressed) OpenStream(ctx context.Context, h wire.StreamHeader) (transport.Stream, error) {
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
		if err := Serve(ctx, zconn{zstream.NewReader(ub), zstream.NewWriter(ub), ub}, opts, l.dest); err != nil {
			l.t.Errorf("server: %v", err)
		}
	}()
	return zconn{zstream.NewReader(ua), zstream.NewWriter(ua), ua}, nil
}

// TestRsyncCompressed: the rsync server runs on a compressed stream (pipes, not the socket)
// and ends by itself, a live pass then a final one with a change.
func TestRsyncCompressed(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a"), make([]byte, 1<<20), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "b"), []byte("hello"), 0o644))
	d := &Driver{Streams: compressed{t, dst}, Rsh: []string{os.Args[0], RshCmd}}
	m := snapshot.Mount{Name: "rootfs", Source: src}
	if _, err := d.PreSync(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(src, "b"), []byte("hello again"), 0o644))
	if _, err := d.FinalSync(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "b"))
	if err != nil || string(b) != "hello again" {
		t.Fatalf("%q %v", b, err)
	}
	if a, err := os.ReadFile(filepath.Join(dst, "a")); err != nil || len(a) != 1<<20 {
		t.Fatalf("a: %d bytes, %v", len(a), err)
	}
}
