// Package hostinfo gathers what a host can do for a migration (wire.HostFacts).
package hostinfo

import (
	"context"
	"fmt"
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
		f.SoftDirty = checkpoint.Feature(ctx, "mem_dirty_track")
		f.Userfaultfd = checkpoint.Feature(ctx, "uffd-noncoop")
		f.LazyDump = checkpoint.LazyDumpProblem()
		if ci, err := checkpoint.CPUInfo(ctx); err != nil {
			f.CPUInfoError = err.Error()
		} else {
			f.CPUInfo = ci
		}
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

// Problems are the reasons a host cannot take part in a migration at all (pure): CRIU missing,
// too old or failing `criu check`, rsync missing.
func Problems(f wire.HostFacts) []wire.Problem {
	var p []wire.Problem
	switch {
	case f.CRIUVersion == 0:
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU is not usable on %s: %s", f.Host, f.CRIUCheck), Hint: "install CRIU ≥ 4.0 there (make deps)"})
	case f.CRIUVersion < checkpoint.MinVersion:
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU on %s is %s; ferry needs ≥ %s", f.Host, checkpoint.FormatVersion(f.CRIUVersion), checkpoint.FormatVersion(checkpoint.MinVersion)), Hint: "install a newer CRIU there (make deps)"})
	case f.CRIUCheck != "":
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("`criu check` fails on %s: %s", f.Host, f.CRIUCheck), Hint: "the kernel or CRIU build lacks what checkpoint/restore needs"})
	case f.CPUInfoError != "":
		p = append(p, wire.Problem{Code: "unsupported", Message: fmt.Sprintf("CRIU cannot describe %s's CPU, so its compatibility with the other host cannot be checked: %s", f.Host, f.CPUInfoError), Hint: "see CRIU's message; `criu cpuinfo dump -D DIR` reproduces it"})
	}
	if f.Rsync == "" {
		p = append(p, wire.Problem{Code: "unsupported", Message: "rsync is not installed on " + f.Host, Hint: "install rsync there (make deps)"})
	}
	return p
}
