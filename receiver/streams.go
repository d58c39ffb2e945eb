package receiver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/internal/failpoint"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/snapshot/rsync"
	"github.com/ferry-project/ferry/snapshot/zfs"
	"github.com/ferry-project/ferry/transport/blobstream"
	"github.com/ferry-project/ferry/transport/relay"
	"github.com/ferry-project/ferry/transport/sftpdir"
	"github.com/ferry-project/ferry/transport/wire"
	"github.com/ferry-project/ferry/transport/zstream"
)

// Bulk streams arrive on a per-session unix socket (reached through SSH's direct-streamlocal).
// Each starts with a header naming the session token, its kind and mount; the receiver answers
// before any data flows.

func (s *server) listen() error {
	dir := filepath.Join(s.cfg.RunDir, "sessions")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sweepSockets(dir)
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	s.sock = filepath.Join(dir, hex.EncodeToString(b[:8])+".sock")
	s.token = hex.EncodeToString(b[8:])
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		return fmt.Errorf("stream socket: %w", err)
	}
	if err := os.Chmod(s.sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	s.ln = ln
	go s.acceptStreams()
	return nil
}

// sweepSockets removes the sockets of sessions whose receiver died without cleaning up.
func sweepSockets(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, p := range socks {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(p)
		}
	}
}

func (s *server) closeStreams() {
	for c := range s.streams {
		c.Close()
	}
}

func (s *server) acceptStreams() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serveStream(c)
	}
}

func (s *server) serveStream(c net.Conn) {
	keep := false // set when the connection outlives this handler (post-copy's lazy stream)
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	wc := wire.NewConn(c)
	env, err := wc.Recv()
	if err != nil || env.Type != wire.TypeStream {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var h wire.StreamHeader
	if err := env.Decode(&h); err != nil {
		_ = wc.SendError(wire.TypeStream, err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(h.Token), []byte(s.token)) != 1 {
		_ = wc.SendError(wire.TypeStream, fmt.Errorf("stream token refused: %w", errdefs.ErrInvalid))
		return
	}
	if h.Kind == wire.StreamProbe { // before any migration: measures the link
		if err := wc.Send(wire.TypeStream, nil); err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, wc.Reader())
		_ = wc.Send(wire.TypeStream, wire.StreamSum{Bytes: n})
		return
	}
	if h.Compress != "" && h.Compress != wire.CompressZstd {
		_ = wc.SendError(wire.TypeStream, fmt.Errorf("unknown stream compression %q: %w", h.Compress, errdefs.ErrProtocol))
		return
	}
	s.mu.Lock()
	if s.state() != StatePrepared {
		s.mu.Unlock()
		_ = wc.SendError(wire.TypeStream, fmt.Errorf("no migration is receiving files (state %q): %w", s.state(), errdefs.ErrProtocol))
		return
	}
	s.streams[c] = true
	dest, dataset, imagesDir, image, rt := s.mounts[h.Name], s.datasets[h.Name], s.imagesDir, s.image, s.rt
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.streams, c); s.mu.Unlock() }()

	// Everything after the acknowledgement flows through dc (decompressed, compressed).
	uc := c.(*net.UnixConn)
	dc := newDataConn(wc.Reader(), uc, h.Compress)
	reply := wire.NewConnRW(dc, dc, nil)
	ack := func() bool { return wc.Send(wire.TypeStream, nil) == nil }

	switch h.Kind {
	case wire.StreamRsync:
		opts, err := rsync.CheckServerArgs(h.Args, h.Name)
		if err == nil && dest == "" {
			err = fmt.Errorf("no mount %q in this migration: %w", h.Name, errdefs.ErrInvalid)
		}
		if err != nil {
			_ = wc.SendError(wire.TypeStream, err)
			return
		}
		if !ack() {
			return
		}
		var rw io.ReadWriter = c // rsync gets the socket itself
		if dc.compressed {
			rw = dc
		}
		if failpoint.Enabled {
			// Test builds: receiver/rsync-N fires in the migration's N-th rsync stream (with
			// one mount: 1 is the pre-sync, 2 the final sync).
			s.mu.Lock()
			s.rsyncStreams++
			point := fmt.Sprintf("receiver/rsync-%d", s.rsyncStreams)
			s.mu.Unlock()
			rw = &faultRW{ReadWriter: rw, point: point}
		}
		if err := rsync.Serve(context.Background(), rw, opts, dest); err != nil {
			s.streamFailed("rsync of "+h.Name, err)
		}
	case wire.StreamZFS:
		if dataset == "" {
			_ = wc.SendError(wire.TypeStream, fmt.Errorf("no ZFS mount %q in this migration: %w", h.Name, errdefs.ErrInvalid))
			return
		}
		if !ack() {
			return
		}
		// The answer comes after `zfs receive` has consumed the whole stream.
		if err := zfs.Receive(context.Background(), dc, dataset); err != nil {
			s.streamFailed("zfs receive of "+h.Name, err)
			_ = reply.SendError(wire.TypeStream, err)
			return
		}
		_ = reply.Send(wire.TypeStream, nil)
	case wire.StreamPages:
		s.mu.Lock()
		ps, dir, err := s.pagesInto(h.Name)
		s.mu.Unlock()
		if err != nil {
			_ = wc.SendError(wire.TypeStream, err)
			return
		}
		if !ack() {
			ps.err = errors.New("could not acknowledge the pages stream")
			close(ps.done)
			return
		}
		fr := &faultReader{point: "receiver/pages-mid", ReadWriteCloser: struct {
			io.Reader
			io.Writer
			io.Closer
		}{dc, dc, c}}
		ps.sum, ps.err = s.servePages(fr, dc, dir)
		if ps.err != nil {
			s.streamFailed("page stream "+h.Name, ps.err)
		}
		close(ps.done)
	case wire.StreamLazy:
		s.mu.Lock()
		if s.lazyConn != nil || s.lazy != nil {
			s.mu.Unlock()
			_ = wc.SendError(wire.TypeStream, fmt.Errorf("a lazy stream is already open: %w", errdefs.ErrProtocol))
			return
		}
		var end lazyEnd = uc
		if dc.compressed {
			// The daemon needs a socket: relay between one of a pair and the stream.
			ours, theirs, err := relay.Pair()
			if err != nil {
				s.mu.Unlock()
				_ = wc.SendError(wire.TypeStream, err)
				return
			}
			go func() {
				_, _ = relay.Run(ours, dc)
				ours.Close()
				uc.Close()
			}()
			end = &relayedEnd{theirs: theirs, c: uc}
		}
		s.lazyConn = end
		s.mu.Unlock()
		if !ack() {
			return
		}
		// The lazy-pages daemon speaks on it from the restore on (it talks first: nothing can be
		// buffered here). The server owns it now.
		keep = true
	case wire.StreamBlobs:
		s.mu.Lock()
		present := s.imagePresent
		s.mu.Unlock()
		if image == nil && present {
			if !ack() {
				return
			}
			_, _ = io.Copy(io.Discard, dc) // no blobs: the image is here already
			_ = reply.Send(wire.TypeStream, nil)
			return
		}
		if image == nil {
			_ = wc.SendError(wire.TypeStream, fmt.Errorf("no image is being shipped: %w", errdefs.ErrProtocol))
			return
		}
		if !ack() {
			return
		}
		err := s.importImage(rt, image, dc)
		s.mu.Lock()
		if err == nil {
			s.image = nil
		}
		if s.imageLock != nil {
			s.imageLock.Close()
			s.imageLock = nil
		}
		s.mu.Unlock()
		if err != nil {
			s.streamFailed("image import of "+image.Name, err)
			_ = reply.SendError(wire.TypeStream, err)
			return
		}
		_ = reply.Send(wire.TypeStream, nil)
	case wire.StreamImages:
		if !ack() {
			return
		}
		rw := &faultReader{point: "receiver/images-mid", ReadWriteCloser: struct {
			io.Reader
			io.Writer
			io.Closer
		}{dc, dc, c}}
		if err := sftpdir.Serve(rw, imagesDir); err != nil {
			s.streamFailed("checkpoint files", err)
		}
	default:
		_ = wc.SendError(wire.TypeStream, fmt.Errorf("unknown stream kind %q: %w", h.Kind, errdefs.ErrProtocol))
	}
}

// dataConn is a stream after its header: reads come through the buffered reader that read
// the header, and both directions through zstream when the stream is compressed.
type dataConn struct {
	io.Reader
	io.Writer
	c          *net.UnixConn
	compressed bool
}

func newDataConn(r io.Reader, c *net.UnixConn, compress string) *dataConn {
	if compress == wire.CompressZstd {
		return &dataConn{Reader: zstream.NewReader(r), Writer: zstream.NewWriter(c), c: c, compressed: true}
	}
	return &dataConn{Reader: r, Writer: c, c: c}
}

func (d *dataConn) Close() error      { return d.c.Close() }
func (d *dataConn) CloseWrite() error { return d.c.CloseWrite() }

// lazyEnd is the lazy-pages daemon's end of the lazy stream: the stream's socket itself, or,
// when the stream is compressed, one end of a relayed socket pair.
type lazyEnd interface {
	File() (*os.File, error)
	Close() error
}

type relayedEnd struct {
	theirs *os.File
	c      *net.UnixConn
}

// File returns a copy of the daemon's end.
func (e *relayedEnd) File() (*os.File, error) {
	fd, err := unix.Dup(int(e.theirs.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "lazy"), nil
}

// Close drops this process's copy of the daemon's end; the relay then ends with the daemon's.
// Before the daemon has it, that ends the relay at once; closing the stream makes sure.
func (e *relayedEnd) Close() error {
	err := e.theirs.Close()
	return err
}

// faultReader lets tests inject a fault (failpoint `point`) in the middle of a transfer, once
// more than 1 MiB has arrived.
type faultReader struct {
	io.ReadWriteCloser
	point string
	n     int64
	fired bool
}

func (f *faultReader) Read(p []byte) (int, error) {
	n, err := f.ReadWriteCloser.Read(p)
	return n, fault(f.point, &f.fired, &f.n, 1<<20, p[:n], err)
}

// fault fires failpoint point once more than after bytes have been read (n counts them);
// "corrupt" flips one bit of data and lets the transfer go on.
func fault(point string, fired *bool, n *int64, after int64, data []byte, err error) error {
	*n += int64(len(data))
	if *fired || *n <= after || len(data) == 0 {
		return err
	}
	*fired = true
	switch ferr := failpoint.Inject(point); {
	case errors.Is(ferr, failpoint.ErrCorrupt):
		data[len(data)/2] ^= 0x10
	case ferr != nil:
		return ferr
	}
	return err
}

// faultRW is an rsync stream with a failpoint on what arrives (failpoint builds only).
type faultRW struct {
	io.ReadWriter
	point string
	n     int64
	fired bool
}

func (f *faultRW) Read(p []byte) (int, error) {
	n, err := f.ReadWriter.Read(p)
	return n, fault(f.point, &f.fired, &f.n, 0, p[:n], err)
}

func (f *faultRW) CloseWrite() error {
	if cw, ok := f.ReadWriter.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// importImage stores the shipped blobs (each checked against its digest) under a lease, then
// creates and unpacks the image.
func (s *server) importImage(rt *runtime.Client, img *wire.ImageRequest, r io.Reader) error {
	ctx, release, err := rt.WithLease(context.Background())
	if err != nil {
		return err
	}
	defer func() { _ = release(context.Background()) }()
	wanted := map[string]bool{}
	for _, b := range img.Blobs {
		wanted[b.Digest] = true
	}
	err = blobstream.Receive(r, func(d wire.Descriptor, br io.Reader) error {
		if !wanted[d.Digest] {
			return fmt.Errorf("blob %s is not part of image %s: %w", d.Digest, img.Name, errdefs.ErrProtocol)
		}
		return rt.WriteBlob(ctx, d, br)
	})
	if err != nil {
		return err
	}
	return rt.CreateImage(ctx, img.Name, img.Target, img.Snapshotter)
}

// parentLink is CRIU's link from a round's images to the previous round's.
const parentLink = "parent"

// pagesInto prepares a pages stream: "pages" (the dump: into the restore images) or, for
// pre-copy, "pre-N" (the Nth pre-dump, in order: into pre-N beside them). Each round's images
// link to the previous round's, so that CRIU's page server and restore find the pages that did
// not change since. Called with s.mu held.
func (s *server) pagesInto(name string) (*pagesResult, string, error) {
	ps := &pagesResult{done: make(chan struct{})}
	n := len(s.preRounds)
	if name == "pages" {
		if s.pages != nil {
			return nil, "", fmt.Errorf("pages already received: %w", errdefs.ErrProtocol)
		}
		if n > 0 {
			if err := os.Symlink(fmt.Sprintf("../pre-%d", n), filepath.Join(s.imagesDir, parentLink)); err != nil {
				return nil, "", err
			}
		}
		s.pages = ps
		return ps, s.imagesDir, nil
	}
	if s.pages != nil || name != fmt.Sprintf("pre-%d", n+1) || n >= maxPreRounds {
		return nil, "", fmt.Errorf("pages stream %q out of order (%d pre-copy rounds received, dump received: %v): %w", name, n, s.pages != nil, errdefs.ErrProtocol)
	}
	if n > 0 && !isDone(s.preRounds[n-1]) {
		return nil, "", fmt.Errorf("pre-copy round %d is still arriving: %w", n, errdefs.ErrProtocol)
	}
	dir := filepath.Join(filepath.Dir(s.imagesDir), name) // inside the migration directory
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, "", err
	}
	if n > 0 {
		if err := os.Symlink(fmt.Sprintf("../pre-%d", n), filepath.Join(dir, parentLink)); err != nil {
			return nil, "", err
		}
	}
	s.preRounds = append(s.preRounds, ps)
	return ps, dir, nil
}

// maxPreRounds bounds the pre-copy rounds a source may send.
const maxPreRounds = 32

func isDone(ps *pagesResult) bool {
	select {
	case <-ps.done:
		return true
	default:
		return false
	}
}

// pagesResult is what the page server received.
type pagesResult struct {
	done chan struct{}
	sum  relay.Sum
	err  error
}

// servePages relays the stream into `criu page-server`, which writes the pages into the restore
// directory, and hashes what arrived.
func (s *server) servePages(r io.Reader, dc *dataConn, imagesDir string) (relay.Sum, error) {
	ours, theirs, err := relay.Pair()
	if err != nil {
		return relay.Sum{}, err
	}
	defer ours.Close()
	psErr := make(chan error, 1)
	go func() {
		psErr <- checkpoint.PageServer(context.Background(), theirs, imagesDir, s.workDir)
		theirs.Close() // our copy: its close is the end of the page server's side
	}()
	sum, rerr := relay.RunHashIn(ours, readWriteHalf{r, dc})
	return sum, errors.Join(rerr, <-psErr)
}

// readWriteHalf reads through r (a fault injector) and writes to the data connection.
type readWriteHalf struct {
	io.Reader
	dc *dataConn
}

func (h readWriteHalf) Write(p []byte) (int, error) { return h.dc.Write(p) }
func (h readWriteHalf) Close() error                { return h.dc.Close() }
func (h readWriteHalf) CloseWrite() error           { return h.dc.CloseWrite() }

// streamFailed records a stream's failure for the source, which sees only the broken stream.
func (s *server) streamFailed(what string, err error) {
	s.log.Warn("stream failed", "stream", what, "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 8 {
		s.failures = append(s.failures, fmt.Sprintf("%s failed: %v", what, err))
	}
}

// streamFailures returns the recorded failures, once the streams still open have ended (a
// source asking has seen its end of one break; the target's end may take a moment longer).
func (s *server) streamFailures() []string {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		open := len(s.streams)
		s.mu.Unlock()
		if open == 0 {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.failures...)
}
