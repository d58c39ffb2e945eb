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

// runc joins any namespace path a spec names: the receiver accepts only the network namespace
// it recreates itself.
func TestSpecNamespacePaths(t *testing.T) {
	net := &wire.NetAttachment{Netns: "/run/netns/ferry-web", Interfaces: []wire.NetInterface{{Name: "eth0", MAC: "02:fe:c6:13:00:02", MTU: 1500, Bridge: "ferry0"}}}
	spec := func(nss string) []byte {
		return []byte(`{"linux":{"namespaces":[` + nss + `]}}`)
	}
	for _, tc := range []struct {
		name string
		nss  string
		net  *wire.NetAttachment
		ok   bool
	}{
		{"own namespaces", `{"type":"pid"},{"type":"network"}`, nil, true},
		{"the recreated network namespace", `{"type":"network","path":"/run/netns/ferry-web"}`, net, true},
		{"a network namespace without its attachment", `{"type":"network","path":"/run/netns/ferry-web"}`, nil, false},
		{"another network namespace", `{"type":"network","path":"/proc/1/ns/net"}`, net, false},
		{"the host's pid namespace", `{"type":"pid","path":"/proc/1/ns/pid"}`, nil, false},
		{"the host's mount namespace", `{"type":"mount","path":"/proc/1/ns/mnt"}`, net, false},
	} {
		c := wire.Container{Namespace: "default", ID: "web", Image: "i", Snapshotter: "s", SnapshotKey: "k", Spec: spec(tc.nss), Network: tc.net}
		if err := validContainer(c); (err == nil) != tc.ok {
			t.Errorf("%s: validContainer = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
