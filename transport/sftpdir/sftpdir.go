// Package sftpdir moves a flat directory of files (CRIU's image set) to the target with sftp,
// where files fit better than a stream: concurrent writes at offsets, per-file errors. The
// target's side is not OpenSSH's sftp-server: it is a request server inside ferry-receiver that
// writes only new flat regular files into one directory, and can read, list or delete nothing.
// Every file is checksummed (SHA-256) by the sender and verified by the receiver before use.
package sftpdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/transport/wire"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// ValidName reports whether name is a plain file name (no separator, no "..", no hidden file).
func ValidName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("file name %q is not a plain name inside its directory: %w", name, errdefs.ErrInvalid)
	}
	return nil
}

// Send writes every regular file of dir into the receiver's directory over rw and returns the
// files' checksums and the bytes of file data sent.
func Send(ctx context.Context, rw io.ReadWriteCloser, dir string) ([]wire.FileSum, int64, error) {
	c, err := sftp.NewClientPipe(rw, rw, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		return nil, 0, fmt.Errorf("sftp session: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var sums []wire.FileSum
	var total int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return nil, total, fmt.Errorf("%s/%s is not a regular file: %w", dir, e.Name(), errdefs.ErrInvalid)
		}
		if err := ValidName(e.Name()); err != nil {
			return nil, total, err
		}
		sum, err := sendFile(c, dir, e.Name())
		if err != nil {
			if ctx.Err() != nil {
				return nil, total, ctx.Err()
			}
			return nil, total, err
		}
		total += sum.Size
		sums = append(sums, sum)
	}
	return sums, total, nil
}

func sendFile(c *sftp.Client, dir, name string) (wire.FileSum, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return wire.FileSum{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return wire.FileSum{}, err
	}
	r, err := c.OpenFile("/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return wire.FileSum{}, fmt.Errorf("create %s on the target: %w", name, err)
	}
	h := sha256.New()
	// A LimitedReader tells the client the size, which enables concurrent writes.
	n, err := r.ReadFrom(&io.LimitedReader{R: io.TeeReader(f, h), N: fi.Size()})
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return wire.FileSum{}, fmt.Errorf("send %s: %w", name, err)
	}
	if n != fi.Size() {
		return wire.FileSum{}, fmt.Errorf("send %s: %d of %d bytes", name, n, fi.Size())
	}
	return wire.FileSum{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Serve answers one sftp session on rw, confined to dir (which must exist).
func Serve(rw io.ReadWriteCloser, dir string) error {
	h := &handler{dir: dir}
	s := sftp.NewRequestServer(rw, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
	err := s.Serve()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

type handler struct{ dir string }

func (h *handler) path(r *sftp.Request) (string, error) {
	name := strings.TrimPrefix(r.Filepath, "/")
	if err := ValidName(name); err != nil {
		return "", os.ErrPermission
	}
	return filepath.Join(h.dir, name), nil
}

// Filewrite creates (or truncates) a regular file; it never follows a symlink.
func (h *handler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	p, err := h.path(r)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
}

func (h *handler) Fileread(*sftp.Request) (io.ReaderAt, error) { return nil, os.ErrPermission }

// Filecmd accepts only Setstat (the client sends it for times/modes; ignored).
func (h *handler) Filecmd(r *sftp.Request) error {
	if r.Method == "Setstat" {
		_, err := h.path(r)
		return err
	}
	return os.ErrPermission
}

// Filelist answers Stat of a file this session may write; nothing can be listed.
func (h *handler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method != "Stat" && r.Method != "Lstat" {
		return nil, os.ErrPermission
	}
	p, err := h.path(r)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	return n, nil
}

// Verify checks that dir holds exactly the files of sums, with the same sizes and SHA-256, plus
// files that extra accepts (nil: none).
func Verify(dir string, sums []wire.FileSum, extra func(name string) bool) error {
	want := map[string]wire.FileSum{}
	for _, s := range sums {
		want[s.Name] = s
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var unexpected []string
	for _, e := range ents {
		if _, ok := want[e.Name()]; !ok && (extra == nil || !extra(e.Name())) {
			unexpected = append(unexpected, e.Name())
		}
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		return fmt.Errorf("unexpected files in %s: %v: %w", dir, unexpected, errdefs.ErrProtocol)
	}
	for _, s := range sums {
		if err := ValidName(s.Name); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, s.Name))
		if err != nil {
			return fmt.Errorf("checkpoint file %s missing on the target: %w", s.Name, errors.Join(err, errdefs.ErrProtocol))
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); n != s.Size || got != s.SHA256 {
			return fmt.Errorf("checkpoint file %s is corrupt on the target (%d bytes, sha256 %.12s…; sent %d bytes, sha256 %.12s…): %w", s.Name, n, got, s.Size, s.SHA256, errdefs.ErrProtocol)
		}
	}
	return nil
}
