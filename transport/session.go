package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

// Stream is one bulk stream to the receiver. CloseWrite signals end of data while still reading.
type Stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Receiver is ferry-receiver running on the target, reached through its control channel.
type Receiver struct {
	Conn   *wire.Conn
	Hello  wire.Hello // the target's
	client *Client
	sess   *ssh.Session
	stdin  io.Closer
	// closeOnce: Close waits for the receiver's exit once (ssh.Session.Wait may be called once).
	closeOnce sync.Once
	closeErr  error
	stderr    *tail
	command   string // how to run ferry-receiver on the target
	redial    func(context.Context) (*Client, error)
	opts      StreamOptions
	limiter   *rate.Limiter
	wire      atomic.Int64 // bytes sent on streams
	// OnBytes, if set before streams open, is told the payload each stream writes (before
	// compression), as it goes: stream kind and name, bytes just written. It is called from
	// the streams' goroutines and must be quick.
	OnBytes func(kind, name string, n int64)
}

// ReceiverOptions configure StartReceiver.
type ReceiverOptions struct {
	// Command runs ferry-receiver on the target; default "ferry-receiver".
	Command string
	// Redial reconnects when the connection is lost (for out-of-band abort and status).
	Redial func(context.Context) (*Client, error)
}

// StartReceiver runs `ferry-receiver serve` on the target and performs the version handshake.
// It fails with errdefs.ErrUnsupported when the versions do not match.
func (c *Client) StartReceiver(ctx context.Context, hello wire.Hello, o ReceiverOptions) (*Receiver, error) {
	if o.Command == "" {
		o.Command = "ferry-receiver"
	}
	command := o.Command + " serve"
	sess, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open an SSH session on %s: %w", c.Endpoint, errors.Join(err, errdefs.ErrTransient))
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	r := &Receiver{client: c, sess: sess, stdin: stdin, stderr: &tail{max: 16 << 10}, command: o.Command, redial: o.Redial}
	sess.Stderr = r.stderr
	if err := sess.Start(command); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start %q on %s: %w", command, c.Endpoint, err)
	}
	br := bufio.NewReaderSize(stdout, 64<<10)
	pre := make(chan error, 1)
	go func() { pre <- wire.ReadPreamble(br) }()
	select {
	case err = <-pre:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		sess.Close()
		if s := r.Stderr(); s != "" {
			err = fmt.Errorf("%w; its stderr: %s", err, s)
		}
		return nil, fmt.Errorf("start ferry-receiver on %s: %w", c.Endpoint, err)
	}
	r.Conn = wire.NewConnRW(br, stdin, sessCloser{sess})
	if err := r.Conn.Call(ctx, wire.TypeHello, hello, &r.Hello); err != nil {
		sess.Close()
		return nil, fmt.Errorf("handshake with ferry-receiver on %s: %w", c.Endpoint, err)
	}
	if r.Hello.Protocol != wire.ProtocolVersion {
		sess.Close()
		return nil, fmt.Errorf("ferry-receiver on %s speaks protocol %d (ferry %s), this ferry speaks %d (ferry %s): install the same ferry version on both hosts: %w",
			c.Endpoint.Host, r.Hello.Protocol, r.Hello.Version, wire.ProtocolVersion, hello.Version, errdefs.ErrUnsupported)
	}
	return r, nil
}

type sessCloser struct{ s *ssh.Session }

func (c sessCloser) Close() error { return c.s.Close() }

// Stderr returns the last lines ferry-receiver wrote to stderr.
func (r *Receiver) Stderr() string { return strings.TrimSpace(r.stderr.String()) }

// closeWait bounds how long Close waits for the receiver to finish.
const closeWait = 20 * time.Second

// Close ends the session. The receiver sees the end of its input and finishes before it exits:
// a committed migration's checkpoint files are removed, an uncommitted one is undone. Close
// waits for that (up to closeWait), so that when ferry exits the target is tidy, then closes
// the channel. A receiver that takes longer goes on alone (a post-copy fill that has not ended
// keeps it: it removes the images when the lazy-pages daemon ends).
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		_ = r.stdin.Close()
		exited := make(chan struct{})
		go func() { _ = r.sess.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(closeWait):
		}
		r.closeErr = r.sess.Close()
	})
	return r.closeErr
}

// Client is the SSH connection the receiver runs on.
func (r *Receiver) Client() *Client { return r.client }

// OpenStream opens a bulk stream to the receiver: an SSH channel to its unix socket
// (direct-streamlocal), or, where the server forbids that, a `ferry-receiver attach` session.
// The receiver checks the header (token, kind, name) and acknowledges before data flows.
// The session's StreamOptions apply, except to the link probe, which measures the bare link.
func (r *Receiver) OpenStream(ctx context.Context, h wire.StreamHeader) (Stream, error) {
	h.Token = r.Hello.StreamToken
	h.Compress = ""
	if r.opts.Compress != "" && h.Kind != wire.StreamProbe {
		h.Compress = r.opts.Compress
	}
	var ch Stream
	nc, err := r.client.Dial("unix", r.Hello.StreamSocket)
	if err == nil {
		ch = nc.(Stream)
	} else {
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) {
			return nil, fmt.Errorf("open a stream to %s: %w", r.client.Endpoint, errors.Join(err, errdefs.ErrTransient))
		}
		// Forwarding refused by sshd's configuration: relay through a session instead.
		s, err := r.client.attach(r.command, r.Hello.StreamSocket)
		if err != nil {
			return nil, err
		}
		ch = s
	}
	c := wire.NewConn(ch)
	if err := c.Call(ctx, wire.TypeStream, h, nil); err != nil {
		ch.Close()
		return nil, fmt.Errorf("open %s stream %q: %w", h.Kind, h.Name, err)
	}
	var progress func(int64)
	if r.OnBytes != nil && h.Kind != wire.StreamProbe {
		progress = func(n int64) { r.OnBytes(h.Kind, h.Name, n) }
	}
	return r.wrap(ctx, &stream{Stream: ch, r: c.Reader()}, h.Compress != "", h.Kind != wire.StreamProbe, progress), nil
}

// stream reads through the buffered reader that read the acknowledgement.
type stream struct {
	Stream
	r *bufio.Reader
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// attach relays a stream through `ferry-receiver attach SOCKET` on the target.
func (c *Client) attach(command, socket string) (Stream, error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	rd, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.Start(command + " attach " + shellQuote(socket)); err != nil {
		sess.Close()
		return nil, err
	}
	return &sessStream{sess: sess, r: rd, w: w}, nil
}

type sessStream struct {
	sess *ssh.Session
	r    io.Reader
	w    io.WriteCloser
}

func (s *sessStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *sessStream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *sessStream) CloseWrite() error           { return s.w.Close() }
func (s *sessStream) Close() error                { return s.sess.Close() }

// Run runs a command on the target and returns its stdout; stderr goes into the error.
func (c *Client) Run(ctx context.Context, command string) ([]byte, error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open an SSH session on %s: %w", c.Endpoint, errors.Join(err, errdefs.ErrTransient))
	}
	defer sess.Close()
	var out strings.Builder
	errb := &tail{max: 8 << 10}
	sess.Stdout, sess.Stderr = &out, errb
	done := make(chan error, 1)
	go func() { done <- sess.Run(command) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err != nil {
		return []byte(out.String()), fmt.Errorf("%s on %s: %w: %s", command, c.Endpoint.Host, err, strings.TrimSpace(errb.String()))
	}
	return []byte(out.String()), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tail keeps the last max bytes written.
type tail struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
