// Package zstream compresses a byte stream with zstd in independent chunks, one or more per
// Write, so that an interactive protocol (rsync, CRIU's page server) flows exactly as it would
// uncompressed: nothing waits in a buffer for more data.
//
// Each chunk is a 4-byte big-endian header and its payload. The header's top bit says whether
// the payload is a zstd frame (else the bytes as they were: small writes and incompressible
// data, e.g. random memory, are sent raw rather than paying the decoder for nothing); the low
// 31 bits are the payload's length, at most MaxChunk. A stream ends cleanly only at a chunk
// boundary.
package zstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// MaxChunk bounds a chunk's payload and its decompressed size.
const MaxChunk = 256 << 10

// minCompress is the smallest write worth compressing.
const minCompress = 512

const flagZstd = 1 << 31

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	dec     *zstd.Decoder
	encErr  error
)

func codecs() (*zstd.Encoder, *zstd.Decoder, error) {
	encOnce.Do(func() {
		// EncodeAll and DecodeAll are safe for concurrent use by every stream.
		enc, encErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if encErr != nil {
			return
		}
		dec, encErr = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxChunk), zstd.WithDecoderMaxWindow(MaxChunk))
	})
	return enc, dec, encErr
}

// Writer compresses into w.
type Writer struct {
	w   io.Writer
	buf []byte
	n   int64 // bytes written to w
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sends p as one or more chunks before returning.
func (z *Writer) Write(p []byte) (int, error) {
	e, _, err := codecs()
	if err != nil {
		return 0, err
	}
	done := 0
	for len(p) > 0 {
		c := p
		if len(c) > MaxChunk {
			c = c[:MaxChunk]
		}
		z.buf = append(z.buf[:0], 0, 0, 0, 0)
		flag := uint32(0)
		if len(c) >= minCompress {
			z.buf = e.EncodeAll(c, z.buf)
			if len(z.buf)-4 < len(c) {
				flag = flagZstd
			}
		}
		if flag == 0 {
			z.buf = append(z.buf[:4], c...)
		}
		binary.BigEndian.PutUint32(z.buf, flag|uint32(len(z.buf)-4))
		n, err := z.w.Write(z.buf)
		z.n += int64(n)
		if err != nil {
			return done, err
		}
		done += len(c)
		p = p[len(c):]
	}
	return done, nil
}

// WireBytes is how many bytes went to the underlying writer.
func (z *Writer) WireBytes() int64 { return z.n }

// Reader decompresses from r.
type Reader struct {
	r    io.Reader
	in   []byte
	out  []byte
	rest []byte // decoded, not yet read
	err  error
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// ErrCorrupt is returned (with errdefs.ErrProtocol) for a malformed stream.
var ErrCorrupt = errors.New("corrupt compressed stream")

func (z *Reader) Read(p []byte) (int, error) {
	for len(z.rest) == 0 {
		if z.err != nil {
			return 0, z.err
		}
		z.err = z.next()
	}
	n := copy(p, z.rest)
	z.rest = z.rest[n:]
	return n, nil
}

// next reads and decodes one chunk.
func (z *Reader) next() error {
	var h [4]byte
	if _, err := io.ReadFull(z.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated chunk header: %w", ErrCorrupt, errdefs.ErrProtocol)
		}
		return err // io.EOF at a chunk boundary is the clean end
	}
	v := binary.BigEndian.Uint32(h[:])
	n := int(v &^ flagZstd)
	if n == 0 || n > MaxChunk+MaxChunk/8 {
		return fmt.Errorf("%w: chunk of %d bytes: %w", ErrCorrupt, n, errdefs.ErrProtocol)
	}
	if cap(z.in) < n {
		z.in = make([]byte, n)
	}
	z.in = z.in[:n]
	if _, err := io.ReadFull(z.r, z.in); err != nil {
		return fmt.Errorf("%w: truncated chunk: %v: %w", ErrCorrupt, err, errdefs.ErrProtocol)
	}
	if v&flagZstd == 0 {
		if n > MaxChunk {
			return fmt.Errorf("%w: raw chunk of %d bytes: %w", ErrCorrupt, n, errdefs.ErrProtocol)
		}
		z.rest = z.in
		return nil
	}
	_, d, err := codecs()
	if err != nil {
		return err
	}
	out, err := d.DecodeAll(z.in, z.out[:0])
	if err != nil || len(out) > MaxChunk {
		return fmt.Errorf("%w: %v: %w", ErrCorrupt, err, errdefs.ErrProtocol)
	}
	z.out = out
	z.rest = out
	return nil
}
