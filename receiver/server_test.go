package receiver

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// session runs Serve on pipes and returns the source's end of the control channel.
func session(t *testing.T) *wire.Conn {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	cfg := Config{StateDir: t.TempDir(), RunDir: t.TempDir()}
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), cfg, inR, outW); outW.Close() }()
	t.Cleanup(func() {
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c := wire.NewConnRW(outR, inW, nil)
	if err := wire.ReadPreamble(c.Reader()); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequestsBeforeHelloAreRefused(t *testing.T) {
	c := session(t)
	err := c.Call(context.Background(), wire.TypePrepare, wire.PrepareRequest{}, nil)
	if !errors.Is(err, errdefs.ErrProtocol) {
		t.Fatalf("prepare before hello: %v", err)
	}
}

// A source speaking another protocol learns the receiver's version and can do nothing else.
func TestOtherProtocolVersion(t *testing.T) {
	c := session(t)
	var h wire.Hello
	if err := c.Call(context.Background(), wire.TypeHello, wire.Hello{Protocol: wire.ProtocolVersion + 1}, &h); err != nil {
		t.Fatal(err)
	}
	if h.Protocol != wire.ProtocolVersion || h.StreamSocket != "" {
		t.Fatalf("reply %+v: want our version and no stream socket", h)
	}
	err := c.Call(context.Background(), wire.TypePreflight, wire.PreflightRequest{}, nil)
	if !errors.Is(err, errdefs.ErrProtocol) {
		t.Fatalf("preflight after a mismatched hello: %v", err)
	}
}

// Input from the other side that names paths or ids is refused before anything is created.
func TestBadMigrationInput(t *testing.T) {
	c := session(t)
	var h wire.Hello
	if err := c.Call(context.Background(), wire.TypeHello, wire.Hello{Protocol: wire.ProtocolVersion}, &h); err != nil {
		t.Fatal(err)
	}
	ok := wire.Container{Namespace: "default", ID: "web", Image: "i", Snapshotter: "s", SnapshotKey: "k", Spec: []byte("{}")}
	withID := func(id string) wire.Container { c := ok; c.ID = id; return c }
	withNS := func(ns string) wire.Container { c := ok; c.Namespace = ns; return c }
	bad := []wire.PrepareRequest{
		{MigrationID: "../../etc", Container: ok},
		{MigrationID: "m-12345678", Container: withID("../web")},
		{MigrationID: "m-12345678", Container: withNS("a/b")},
		{MigrationID: "m-12345678", Container: wire.Container{Namespace: "default", ID: "web"}},
	}
	for _, req := range bad {
		if err := c.Call(context.Background(), wire.TypePrepare, req, nil); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("prepare %s/%s (migration %q): %v, want invalid", req.Container.Namespace, req.Container.ID, req.MigrationID, err)
		}
	}
}
