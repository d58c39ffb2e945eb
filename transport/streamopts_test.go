package transport

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-project/ferry/internal/errdefs"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "100": 100 << 10, "800K": 800 << 10, "50M": 50 << 20, "50MiB": 50 << 20,
		"50MB/s": 50 << 20, "1.5G": 3 << 29, "2g": 2 << 30, " 10m ": 10 << 20, "64KiB/s": 64 << 10,
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1M", "10T", "0.5", "1e30", "M"} {
		if _, err := ParseRate(in); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseRate(%q): %v, want an invalid-argument error", in, err)
		}
	}
}

func TestStreamOptionsValidate(t *testing.T) {
	for _, o := range []StreamOptions{{}, {Compress: "none"}, {Compress: "zstd", BytesPerSecond: 1 << 20}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []StreamOptions{{Compress: "gzip"}, {BytesPerSecond: -1}} {
		if err := o.Validate(); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// The limiter holds a writer to its rate (counted on what it writes) and gives up when the
// context ends.
func TestMeteredWriter(t *testing.T) {
	var n atomic.Int64
	const bps = 2 << 20
	m := &meteredWriter{w: io.Discard, n: &n, lim: rate.NewLimiter(bps, burst(bps)), ctx: context.Background()}
	start := time.Now()
	buf := make([]byte, 1<<20)
	for i := 0; i < 2; i++ {
		if _, err := m.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	// 2 MiB at 2 MiB/s with a 0.2 MiB bucket: at least ~0.9 s.
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("2 MiB at 2 MiB/s took only %s", d)
	}
	if n.Load() != 2<<20 {
		t.Fatalf("counted %d bytes", n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.ctx = ctx
	if _, err := m.Write(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("write after cancel: %v", err)
	}
}
