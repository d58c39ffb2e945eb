package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/internal/errdefs"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("ab"), 5000)} {
		if err := WriteFrame(&b, FrameData, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{0, 1, 10000} {
		typ, p, err := ReadFrame(&b, 1<<20)
		if err != nil || typ != FrameData || len(p) != want {
			t.Fatalf("ReadFrame = %c %d %v, want %d bytes", typ, len(p), err, want)
		}
	}
	if _, _, err := ReadFrame(&b, 1<<20); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	cases := map[string][]byte{
		"oversized":     {FrameData, 0x7f, 0xff, 0xff, 0xff},
		"unknown type":  {'Z', 0, 0, 0, 0},
		"short header":  {FrameData, 0},
		"short payload": {FrameData, 0, 0, 0, 9, 'a'},
		"just over max": {FrameMessage, 0, 0, 0, 11},
	}
	for name, in := range cases {
		_, _, err := ReadFrame(bytes.NewReader(in), 10)
		if !errors.Is(err, errdefs.ErrProtocol) {
			t.Errorf("%s: err = %v, want a protocol error", name, err)
		}
	}
}

func TestEnvelopeStrictDecoding(t *testing.T) {
	for _, in := range []string{``, `{}`, `{"type":""}`, `{"type":"x"} {"type":"y"}`, `not json`} {
		if _, err := DecodeEnvelope([]byte(in)); !errors.Is(err, errdefs.ErrProtocol) {
			t.Errorf("DecodeEnvelope(%q) = %v, want protocol error", in, err)
		}
	}
	env, err := DecodeEnvelope([]byte(`{"type":"hello","body":{"protocol":1,"bogus":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	var h Hello
	if err := env.Decode(&h); !errors.Is(err, errdefs.ErrProtocol) {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

func TestCallCarriesErrorClass(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := NewConn(a), NewConn(b)
	go func() {
		env, err := cb.Recv()
		if err != nil {
			return
		}
		_ = cb.SendError(env.Type, errors.Join(errors.New(`container "web" already exists on b`), errdefs.ErrConflict))
	}()
	err := ca.Call(context.Background(), TypePrepare, PrepareRequest{}, nil)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("err = %v, want a conflict naming the cause", err)
	}
}

func TestCallCancelled(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() { _, _ = NewConn(b).Recv() }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewConn(a).Call(ctx, TypeCommit, CommitRequest{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadPreamble(t *testing.T) {
	if err := ReadPreamble(bufio.NewReader(strings.NewReader(Preamble + "rest"))); err != nil {
		t.Fatal(err)
	}
	err := ReadPreamble(bufio.NewReader(strings.NewReader("bash: ferry-receiver: command not found\n")))
	if err == nil || !strings.Contains(err.Error(), "command not found") {
		t.Fatalf("err = %v, want the remote output quoted", err)
	}
	if err := ReadPreamble(bufio.NewReader(strings.NewReader(""))); err == nil || !strings.Contains(err.Error(), "installed") {
		t.Fatalf("err = %v", err)
	}
}
