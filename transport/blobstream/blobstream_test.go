package blobstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

func TestRoundTrip(t *testing.T) {
	blobs := map[string][]byte{"sha256:a": []byte("index"), "sha256:b": bytes.Repeat([]byte("L"), 3<<20+7), "sha256:c": nil}
	var descs []wire.Descriptor
	for _, d := range []string{"sha256:a", "sha256:b", "sha256:c"} {
		descs = append(descs, wire.Descriptor{Digest: d, Size: int64(len(blobs[d]))})
	}
	var buf bytes.Buffer
	n, err := Send(context.Background(), &buf, descs, func(d wire.Descriptor) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blobs[d.Digest])), nil
	})
	if err != nil || n != int64(3<<20+12) {
		t.Fatalf("send: %d %v", n, err)
	}
	got := map[string][]byte{}
	err = Receive(&buf, func(d wire.Descriptor, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[d.Digest] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for d, b := range blobs {
		if !bytes.Equal(got[d], b) {
			t.Errorf("%s: %d bytes, want %d", d, len(got[d]), len(b))
		}
	}
}

func TestReceiveRefusesLyingSizes(t *testing.T) {
	for name, actual := range map[string]string{"longer": "abcdef", "shorter": "ab"} {
		var buf bytes.Buffer
		c := wire.NewConnRW(nil, &buf, nil)
		_ = c.Send("blob", wire.Descriptor{Digest: "sha256:x", Size: 4})
		_ = wire.WriteFrame(&buf, wire.FrameData, []byte(actual))
		_ = wire.WriteFrame(&buf, wire.FrameEnd, nil)
		_ = c.Send("done", nil)
		err := Receive(&buf, func(d wire.Descriptor, r io.Reader) error { _, err := io.ReadAll(r); return err })
		if !errors.Is(err, errdefs.ErrProtocol) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var buf bytes.Buffer
	_ = wire.NewConnRW(nil, &buf, nil).Send("exec", "rm -rf /")
	if err := Receive(&buf, nil); err == nil || !strings.Contains(err.Error(), "unexpected") {
		t.Errorf("unexpected message accepted: %v", err)
	}
}
