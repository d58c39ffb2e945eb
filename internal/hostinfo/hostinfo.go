// Package hostinfo gathers what a host can do for a migration (wire.HostFacts).
package hostinfo

import (
	"context"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-project/ferry/checkpoint"
	"github.com/ferry-project/ferry/runtime"
	"github.com/ferry-project/ferry/transport/wire"
)

// Gather collects this host's facts. dir is where migration data goes (for free space); rt may
// be nil when containerd is unreachable.
func Gather(ctx context.Context, rt *runtime.Client, dir string) wire.HostFacts {
	var f wire.HostFacts
	f.Host, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		f.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if v, err := checkpoint.Version(ctx); err == nil {
		f.CRIUVersion = v
		f.CRIUCheck = checkpoint.Check(ctx)
	} else {
		f.CRIUCheck = err.Error()
	}
	if out, err := exec.CommandContext(ctx, "rsync", "--version").Output(); err == nil {
		if fs := strings.Fields(string(out)); len(fs) > 2 {
			f.Rsync = fs[2]
		}
	}
	f.FreeBytes = FreeBytes(dir)
	if rt != nil {
		f.ContainerdVer, _ = rt.Version(ctx)
	}
	return f
}

// FreeBytes is the space available to root at dir (or its nearest existing parent).
func FreeBytes(dir string) uint64 {
	for d := dir; d != ""; {
		var s unix.Statfs_t
		if unix.Statfs(d, &s) == nil {
			return s.Bavail * uint64(s.Bsize)
		}
		i := strings.LastIndex(d, "/")
		if i <= 0 {
			d = "/"
			if unix.Statfs(d, &s) == nil {
				return s.Bavail * uint64(s.Bsize)
			}
			return 0
		}
		d = d[:i]
	}
	return 0
}
