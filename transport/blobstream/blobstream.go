// Package blobstream carries content blobs (an image's index, manifests, config and layers) in
// one stream: for each blob a "blob" message with its descriptor, its bytes in data frames, an
// end frame; then a "done" message. The receiver checks each blob's size here and its digest
// where it stores it.
package blobstream

import (
	"context"
	"fmt"
	"io"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

const chunk = 1 << 20

// Send writes the blobs to w, reading each with open, and returns the bytes of content sent.
func Send(ctx context.Context, w io.Writer, blobs []wire.Descriptor, open func(wire.Descriptor) (io.ReadCloser, error)) (int64, error) {
	c := wire.NewConnRW(nil, w, nil)
	var total int64
	buf := make([]byte, chunk)
	for _, d := range blobs {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if err := c.Send("blob", d); err != nil {
			return total, err
		}
		r, err := open(d)
		if err != nil {
			return total, fmt.Errorf("read blob %s: %w", d.Digest, err)
		}
		var n int64
		for {
			k, rerr := r.Read(buf)
			if k > 0 {
				if err := wire.WriteFrame(w, wire.FrameData, buf[:k]); err != nil {
					r.Close()
					return total, err
				}
				n += int64(k)
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				r.Close()
				return total, fmt.Errorf("read blob %s: %w", d.Digest, rerr)
			}
		}
		r.Close()
		if n != d.Size {
			return total, fmt.Errorf("blob %s has %d bytes, its descriptor says %d", d.Digest, n, d.Size)
		}
		if err := wire.WriteFrame(w, wire.FrameEnd, nil); err != nil {
			return total, err
		}
		total += n
	}
	return total, c.Send("done", nil)
}

// Receive reads blobs from r and hands each to store with a reader of exactly its bytes. It
// returns at the "done" message. A blob longer or shorter than its descriptor is an error.
func Receive(r io.Reader, store func(wire.Descriptor, io.Reader) error) error {
	c := wire.NewConnRW(r, io.Discard, nil)
	br := c.Reader()
	for {
		env, err := c.Recv()
		if err != nil {
			return err
		}
		switch env.Type {
		case "done":
			return nil
		case "blob":
		default:
			return fmt.Errorf("unexpected %q in a blob stream: %w", env.Type, errdefs.ErrProtocol)
		}
		var d wire.Descriptor
		if err := env.Decode(&d); err != nil {
			return err
		}
		if d.Size < 0 {
			return fmt.Errorf("blob %s: negative size: %w", d.Digest, errdefs.ErrProtocol)
		}
		fr := &frames{r: br, left: d.Size}
		if err := store(d, fr); err != nil {
			return err
		}
		if err := fr.finish(); err != nil {
			return fmt.Errorf("blob %s: %w", d.Digest, err)
		}
	}
}

// frames reads the data frames of one blob, up to its end frame.
type frames struct {
	r    io.Reader
	cur  []byte
	left int64
	end  bool
}

func (f *frames) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if f.end {
			return 0, io.EOF
		}
		typ, payload, err := wire.ReadFrame(f.r, chunk)
		if err != nil {
			return 0, err
		}
		switch typ {
		case wire.FrameEnd:
			f.end = true
			if f.left != 0 {
				return 0, fmt.Errorf("blob ended %d bytes short: %w", f.left, errdefs.ErrProtocol)
			}
		case wire.FrameData:
			if int64(len(payload)) > f.left {
				return 0, fmt.Errorf("blob longer than its descriptor: %w", errdefs.ErrProtocol)
			}
			f.left -= int64(len(payload))
			f.cur = payload
		default:
			return 0, fmt.Errorf("unexpected frame in a blob: %w", errdefs.ErrProtocol)
		}
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

// finish consumes what the store did not read, up to the end frame.
func (f *frames) finish() error {
	_, err := io.Copy(io.Discard, f)
	return err
}
