package receiver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/snapshot/rsync"
)

// checkVolumePath confines a volume path from the source to this host's volume roots, also
// through symlinks in its existing part.
func checkVolumePath(p string, roots []string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("volume path %q is not a clean absolute path: %w", p, errdefs.ErrInvalid)
	}
	// Resolve the longest existing prefix: a symlink there must not lead outside the roots.
	real := p
	for dir := p; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			real = filepath.Join(r, strings.TrimPrefix(p, dir))
			break
		}
		if dir == "/" {
			break
		}
	}
	for _, root := range roots {
		root = filepath.Clean(root)
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
		if strings.HasPrefix(real, root+"/") {
			return nil
		}
	}
	return fmt.Errorf("volume path %s is outside this host's volume roots (%s; volume_roots in /etc/ferry/ferry.toml): %w",
		p, strings.Join(roots, ", "), errdefs.ErrInvalid)
}

// pathState says what is at a volume path on this host.
type pathState int

const (
	pathAbsent   pathState = iota
	pathEmpty              // an empty directory
	pathBase               // a directory holding a stale copy of this container's volume (rsync)
	pathOccupied           // anything else: data, a file, a mount in use
)

func volumePathState(p, baseMark string) (pathState, string) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return pathAbsent, ""
	}
	if err != nil {
		return pathOccupied, err.Error()
	}
	if !fi.IsDir() {
		return pathOccupied, "it is not a directory"
	}
	if isMountPoint(p) {
		return pathOccupied, "something is mounted there"
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return pathOccupied, err.Error()
	}
	if len(ents) == 0 {
		return pathEmpty, ""
	}
	buf := make([]byte, 512)
	if n, err := unix.Getxattr(p, rsync.BaseXattr, buf); err == nil && string(buf[:n]) == baseMark {
		return pathBase, ""
	}
	return pathOccupied, "it already holds data that is not a copy of this container's volume"
}

func isMountPoint(p string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// clearDir removes what a directory holds, keeping the directory.
func clearDir(p string) error {
	ents, err := os.ReadDir(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(p, e.Name())))
	}
	return errors.Join(errs...)
}

// firstMissing returns the topmost directory of p that does not exist yet ("" if p exists).
func firstMissing(p string) string {
	missing := ""
	for dir := p; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(dir); err == nil {
			break
		}
		missing = dir
	}
	return missing
}
