package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ferry-project/ferry/internal/errdefs"
)

// Envelope is the payload of a Message frame.
type Envelope struct {
	Type  string          `json:"type"`
	Body  json.RawMessage `json:"body,omitempty"`
	Error *RemoteError    `json:"error,omitempty"`
}

// RemoteError is an error reported by the peer. errors.Is matches its class (errdefs).
type RemoteError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func (e *RemoteError) Error() string { return e.Message }

// Is lets errors.Is(err, errdefs.ErrConflict) work across the wire.
func (e *RemoteError) Is(target error) bool {
	c := errdefs.FromCode(e.Code)
	return c != nil && c == target
}

// NewRemoteError converts a local error for sending.
func NewRemoteError(err error) *RemoteError {
	return &RemoteError{Code: errdefs.Code(err), Message: err.Error()}
}

// DecodeEnvelope parses a Message payload.
func DecodeEnvelope(p []byte) (Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(p))
	if err := dec.Decode(&env); err != nil {
		return Envelope{}, fmt.Errorf("decode message: %v: %w", err, errdefs.ErrProtocol)
	}
	if dec.More() {
		return Envelope{}, fmt.Errorf("decode message: trailing data: %w", errdefs.ErrProtocol)
	}
	if env.Type == "" {
		return Envelope{}, fmt.Errorf("decode message: no type: %w", errdefs.ErrProtocol)
	}
	return env, nil
}

// Decode unmarshals the body into v, strictly.
func (e Envelope) Decode(v any) error {
	if e.Error != nil {
		return e.Error
	}
	if len(e.Body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(e.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %s body: %v: %w", e.Type, err, errdefs.ErrProtocol)
	}
	return nil
}

// Conn is a framed message connection. Writes are serialised; reads must come from one goroutine.
type Conn struct {
	r   *bufio.Reader
	wmu sync.Mutex
	w   io.Writer
	c   io.Closer
}

// NewConn wraps rw. If rw is an io.Closer, Close closes it.
func NewConn(rw io.ReadWriter) *Conn {
	c := &Conn{r: bufio.NewReaderSize(rw, 64<<10), w: rw}
	if cl, ok := rw.(io.Closer); ok {
		c.c = cl
	}
	return c
}

// NewConnRW builds a Conn from separate ends (e.g. an SSH session's stdout and stdin).
func NewConnRW(r io.Reader, w io.Writer, c io.Closer) *Conn {
	return &Conn{r: bufio.NewReaderSize(r, 64<<10), w: w, c: c}
}

// Reader exposes the buffered reader (for switching a stream to raw bytes after its header).
func (c *Conn) Reader() *bufio.Reader { return c.r }

// Close closes the underlying stream.
func (c *Conn) Close() error {
	if c.c == nil {
		return nil
	}
	return c.c.Close()
}

// Send writes one message.
func (c *Conn) Send(typ string, body any) error {
	env := Envelope{Type: typ}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s: %w", typ, err)
		}
		env.Body = b
	}
	return c.sendEnvelope(env)
}

// SendError writes an error reply.
func (c *Conn) SendError(typ string, err error) error {
	return c.sendEnvelope(Envelope{Type: typ, Error: NewRemoteError(err)})
}

func (c *Conn) sendEnvelope(env Envelope) error {
	p, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	if len(p) > MaxMessage {
		return fmt.Errorf("message %s of %d bytes exceeds %d: %w", env.Type, len(p), MaxMessage, errdefs.ErrInvalid)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return WriteFrame(c.w, FrameMessage, p)
}

// Recv reads one message.
func (c *Conn) Recv() (Envelope, error) {
	typ, p, err := ReadFrame(c.r, MaxMessage)
	if err != nil {
		return Envelope{}, err
	}
	if typ != FrameMessage {
		return Envelope{}, fmt.Errorf("expected a message frame, got 0x%02x: %w", typ, errdefs.ErrProtocol)
	}
	return DecodeEnvelope(p)
}

// Call sends a request and waits for the reply of the same type. A reply carrying an error is
// returned as *RemoteError. If ctx ends first, Call closes the connection (its state is unknown
// after an abandoned request) and returns ctx's error.
func (c *Conn) Call(ctx context.Context, typ string, req, resp any) error {
	if err := c.Send(typ, req); err != nil {
		return fmt.Errorf("send %s: %w", typ, err)
	}
	type result struct {
		env Envelope
		err error
	}
	ch := make(chan result, 1)
	go func() {
		env, err := c.Recv()
		ch <- result{env, err}
	}()
	select {
	case <-ctx.Done():
		_ = c.Close()
		return fmt.Errorf("waiting for %s reply: %w", typ, ctx.Err())
	case res := <-ch:
		if res.err != nil {
			if errors.Is(res.err, io.EOF) {
				return fmt.Errorf("waiting for %s reply: connection closed by the peer: %w", typ, errdefs.ErrTransient)
			}
			return fmt.Errorf("waiting for %s reply: %w", typ, res.err)
		}
		if res.env.Type != typ {
			return fmt.Errorf("expected a %s reply, got %s: %w", typ, res.env.Type, errdefs.ErrProtocol)
		}
		if res.env.Error != nil {
			return res.env.Error
		}
		if resp == nil {
			return nil
		}
		return res.env.Decode(resp)
	}
}

// ReadPreamble consumes the receiver's preamble. Any other output is reported verbatim (bounded)
// so that a wrong command, a shell banner or an old receiver gives a readable error.
func ReadPreamble(r *bufio.Reader) error {
	got := make([]byte, 0, len(Preamble))
	for len(got) < len(Preamble) {
		b, err := r.ReadByte()
		if err != nil {
			if len(got) == 0 {
				return fmt.Errorf("the target closed the connection before ferry-receiver answered (is ferry-receiver installed and on PATH there?): %w", errdefs.ErrProtocol)
			}
			return fmt.Errorf("the target printed %q instead of ferry-receiver's greeting: %w", got, errdefs.ErrProtocol)
		}
		got = append(got, b)
		if got[len(got)-1] != Preamble[len(got)-1] {
			rest, _ := r.Peek(min(r.Buffered(), 200))
			return fmt.Errorf("the target printed %q instead of ferry-receiver's greeting: %w", append(got, rest...), errdefs.ErrProtocol)
		}
	}
	return nil
}
