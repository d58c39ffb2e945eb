package zstream

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"

	"github.com/ferry-project/ferry/internal/errdefs"
)

func roundTrip(t *testing.T, writes [][]byte) []byte {
	t.Helper()
	var wire bytes.Buffer
	w := NewWriter(&wire)
	var want []byte
	for _, p := range writes {
		n, err := w.Write(p)
		if err != nil || n != len(p) {
			t.Fatalf("write: %d, %v", n, err)
		}
		want = append(want, p...)
	}
	if w.WireBytes() != int64(wire.Len()) {
		t.Fatalf("WireBytes %d, wrote %d", w.WireBytes(), wire.Len())
	}
	got, err := io.ReadAll(NewReader(bytes.NewReader(wire.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip changed the data: %d bytes in, %d out", len(want), len(got))
	}
	return wire.Bytes()
}

func TestRoundTrip(t *testing.T) {
	rnd := make([]byte, 3*MaxChunk+17)
	rand.New(rand.NewSource(1)).Read(rnd)
	text := bytes.Repeat([]byte("ferry moves running containers; "), 40000)
	cases := map[string][][]byte{
		"empty":        nil,
		"tiny":         {[]byte("a"), []byte("bc"), {0}},
		"random":       {rnd},
		"compressible": {text},
		"mixed":        {text[:1000], rnd[:5], text, rnd[:MaxChunk+1]},
		"zeros":        {make([]byte, 4<<20)},
	}
	for name, writes := range cases {
		t.Run(name, func(t *testing.T) {
			wire := roundTrip(t, writes)
			switch name {
			case "compressible", "zeros":
				if len(wire) > 1<<20/10 {
					t.Fatalf("compressible data took %d bytes on the wire", len(wire))
				}
			case "random":
				if len(wire) > len(rnd)+64 {
					t.Fatalf("random data grew to %d bytes (from %d)", len(wire), len(rnd))
				}
			}
		})
	}
}

// A write is readable on the other side before the writer writes anything else.
func TestNoBuffering(t *testing.T) {
	pr, pw := io.Pipe()
	w := NewWriter(pw)
	r := NewReader(pr)
	msg := bytes.Repeat([]byte("x"), 4096)
	go func() { _, _ = w.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	var wire bytes.Buffer
	_, _ = NewWriter(&wire).Write(bytes.Repeat([]byte("ferry "), 1000))
	good := wire.Bytes()
	flip := append([]byte{}, good...)
	flip[len(flip)/2] ^= 0xff
	cases := map[string][]byte{
		"truncated header": good[:2],
		"truncated chunk":  good[:len(good)-1],
		"zero length":      {0, 0, 0, 0},
		"oversized":        {0x7f, 0xff, 0xff, 0xff},
		"oversized raw":    {0x00, 0x04, 0x00, 0x01},
		"flipped byte":     flip,
		"not zstd":         append([]byte{0x80, 0, 0, 8}, []byte("notzstd!")...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := io.ReadAll(NewReader(bytes.NewReader(in)))
			if !errors.Is(err, errdefs.ErrProtocol) {
				t.Fatalf("got %v, want a protocol error", err)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	var wire bytes.Buffer
	_, _ = NewWriter(&wire).Write(bytes.Repeat([]byte("ferry "), 1000))
	f.Add(wire.Bytes())
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := io.Copy(io.Discard, NewReader(bytes.NewReader(in)))
		if err == nil && n > int64(len(in))*MaxChunk {
			t.Fatalf("%d bytes out of %d in", n, len(in))
		}
	})
}

func benchWrite(b *testing.B, p []byte) {
	w := NewWriter(io.Discard)
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		_, _ = w.Write(p)
	}
}

func BenchmarkWriteRandom(b *testing.B) {
	p := make([]byte, MaxChunk)
	rand.New(rand.NewSource(1)).Read(p)
	benchWrite(b, p)
}

func BenchmarkWriteText(b *testing.B) {
	benchWrite(b, bytes.Repeat([]byte("ferry moves running containers; "), MaxChunk/32))
}
