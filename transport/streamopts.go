package transport

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/internal/units"
	"github.com/ferry-project/ferry/transport/wire"
	"github.com/ferry-project/ferry/transport/zstream"
)

// StreamOptions apply to every bulk stream of a session: memory, filesystem, image content.
type StreamOptions struct {
	// Compress is "" or wire.CompressNone (off) or wire.CompressZstd.
	Compress string
	// BytesPerSecond caps what all streams together send to the target (after compression);
	// 0 is no limit.
	BytesPerSecond int64
}

// Validate checks the options.
func (o StreamOptions) Validate() error {
	switch o.Compress {
	case "", wire.CompressNone, wire.CompressZstd:
	default:
		return fmt.Errorf("compression %q: want %s or %s: %w", o.Compress, wire.CompressZstd, wire.CompressNone, errdefs.ErrInvalid)
	}
	if o.BytesPerSecond < 0 {
		return fmt.Errorf("bandwidth limit %d: %w", o.BytesPerSecond, errdefs.ErrInvalid)
	}
	return nil
}

// SetStreamOptions applies o to the streams opened from now on.
func (r *Receiver) SetStreamOptions(o StreamOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Compress == wire.CompressNone {
		o.Compress = ""
	}
	r.opts = o
	r.limiter = nil
	if o.BytesPerSecond > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.BytesPerSecond), burst(o.BytesPerSecond))
	}
	return nil
}

// StreamOptions returns the options in force.
func (r *Receiver) StreamOptions() StreamOptions { return r.opts }

// WireBytes is what all streams sent to the target so far, as it went into SSH (after
// compression, before SSH's own framing).
func (r *Receiver) WireBytes() int64 { return r.wire.Load() }

// burst is the limiter's bucket: a tenth of a second of traffic, within [16 KiB, 256 KiB].
func burst(bps int64) int {
	b := bps / 10
	if b < 16<<10 {
		b = 16 << 10
	}
	if b > 256<<10 {
		b = 256 << 10
	}
	return int(b)
}

// wrap applies the session's options to an opened stream: writes are counted, limited, then
// compressed (so the limit is on wire bytes); reads are decompressed.
func (r *Receiver) wrap(ctx context.Context, s Stream, compress, limit bool, progress func(int64)) Stream {
	m := &meteredWriter{w: s, n: &r.wire, ctx: ctx}
	if limit {
		m.lim = r.limiter
	}
	var w io.Writer = m
	var rd io.Reader = s
	if compress {
		w = zstream.NewWriter(w)
		rd = zstream.NewReader(s)
	}
	if progress != nil {
		w = progressWriter{w: w, f: progress}
	}
	return &wrapped{Stream: s, r: rd, w: w}
}

// progressWriter reports the payload written (before compression).
type progressWriter struct {
	w io.Writer
	f func(int64)
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if n > 0 {
		p.f(int64(n))
	}
	return n, err
}

type wrapped struct {
	Stream
	r io.Reader
	w io.Writer
}

func (s *wrapped) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *wrapped) Write(p []byte) (int, error) { return s.w.Write(p) }

// meteredWriter counts, and waits for the limiter before each piece it writes.
type meteredWriter struct {
	w   io.Writer
	n   *atomic.Int64
	lim *rate.Limiter
	ctx context.Context
}

func (m *meteredWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		c := p
		if m.lim != nil {
			if len(c) > m.lim.Burst() {
				c = c[:m.lim.Burst()]
			}
			if err := m.lim.WaitN(m.ctx, len(c)); err != nil {
				return done, err
			}
		}
		n, err := m.w.Write(c)
		m.n.Add(int64(n))
		done += n
		if err != nil {
			return done, err
		}
		p = p[n:]
	}
	return done, nil
}

// ParseRate reads a bandwidth like rsync's --bwlimit: a number with an optional unit K, M or G
// (powers of 1024; "KiB", "MB/s" and the like are accepted), KiB when there is none. "0"
// means no limit. It returns bytes per second.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "ps")
	v, unit, err := units.Split(t, 1<<10)
	if err != nil || v < 0 || v > 1<<50 {
		return 0, fmt.Errorf("bandwidth %q: want a number with an optional unit K, M or G (per second), e.g. 50M: %w", s, errdefs.ErrInvalid)
	}
	b := int64(v * float64(unit))
	if v > 0 && b < 1024 {
		return 0, fmt.Errorf("bandwidth %q is below 1 KiB/s: %w", s, errdefs.ErrInvalid)
	}
	return b, nil
}
