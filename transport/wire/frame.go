// Package wire is ferry's protocol between the coordinator (`ferry`, on the source) and
// `ferry-receiver` (on the target).
//
// Everything is framed: a 5-byte header (1 byte type, 4 bytes big-endian payload length) then the
// payload. Frame sizes are bounded by the reader, so a corrupt or hostile length cannot make the
// reader allocate more than its limit. The control channel carries Message frames whose payload
// is a JSON Envelope; bulk streams carry a StreamHeader message and then either raw bytes (rsync)
// or a sub-protocol (sftp).
//
// A connection starts with Preamble written by the receiver, so that anything else the remote
// side prints (a login banner, "command not found") is reported as such instead of being parsed
// as a frame.
package wire

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// Preamble opens every receiver control channel.
const Preamble = "FERRY-RECEIVER\n"

// ProtocolVersion is the version of the message set below. Peers with different versions refuse
// each other in the handshake.
const ProtocolVersion = 2

// Frame types.
const (
	FrameMessage byte = 'M' // JSON Envelope
	FrameData    byte = 'D' // raw bytes
	FrameEnd     byte = 'E' // end of a sequence of Data frames
)

const headerLen = 5

// MaxMessage bounds control messages (JSON). The largest real message is an OCI spec.
const MaxMessage = 4 << 20

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > 1<<31 {
		return fmt.Errorf("frame of %d bytes: %w", len(payload), errdefs.ErrInvalid)
	}
	var h [headerLen]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if len(payload) > 0 {
		if _, err := w.Write(payload); err != nil {
			return fmt.Errorf("write frame payload: %w", err)
		}
	}
	return nil
}

// ReadFrame reads one frame whose payload must not exceed max bytes.
func ReadFrame(r io.Reader, max int) (typ byte, payload []byte, err error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("truncated frame header: %w", errdefs.ErrProtocol)
		}
		return 0, nil, err // io.EOF: clean end between frames
	}
	typ = h[0]
	switch typ {
	case FrameMessage, FrameData, FrameEnd:
	default:
		return 0, nil, fmt.Errorf("unknown frame type 0x%02x: %w", typ, errdefs.ErrProtocol)
	}
	n := binary.BigEndian.Uint32(h[1:])
	if uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds the limit of %d: %w", n, max, errdefs.ErrProtocol)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("truncated frame payload (%d bytes expected): %w", n, errdefs.ErrProtocol)
	}
	return typ, payload, nil
}
