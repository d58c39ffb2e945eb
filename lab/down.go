package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ferry-project/ferry/internal/mountinfo"
)

// DownOptions configure Down.
type DownOptions struct {
	Log *slog.Logger
}

// Down removes everything the lab made: processes, cgroups, mounts, namespaces, interfaces and
// files. It works on a half-made lab too, and is a no-op when nothing is left.
func Down(ctx context.Context, o DownOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return errors.New("ferry-lab down needs root")
	}
	st, _ := readState() // may be missing: clean what residue() finds anyway
	var errs []error
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	for _, h := range Hosts {
		log.Info("stopping host", "name", h.Name)
		if err := destroyCgroup(hs, h.cgroup()); err != nil {
			errs = append(errs, err)
		}
		for _, k := range []string{"mnt", "uts", "cgroup"} {
			if err := unmountIfMounted(h.nsFile(k)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := delNetns(ctx, h.netns()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountIfMounted(SwitchNetnsFile()); err != nil {
		errs = append(errs, err)
	}
	if err := delNetns(ctx, switchNS); err != nil {
		errs = append(errs, err)
	}
	if err := destroyCgroup(hs, CgroupRoot); err != nil {
		errs = append(errs, err)
	}
	if err := unmountIfMounted(RunDir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Keep the state so that another down can finish the job.
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(RunDir); err != nil {
		errs = append(errs, err)
	}
	if st != nil && st.PipeMaxSize > 0 {
		if err := os.WriteFile(pipeMaxSize, []byte(fmt.Sprint(st.PipeMaxSize)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", pipeMaxSize, err))
		}
	}
	if st != nil {
		for i := len(st.Created) - 1; i >= 0; i-- {
			// Only empty directories: anything a host wrote lives under StateDir, not here.
			// One the lab created may still be a mount point of its own making (ip netns binds
			// /run/netns onto itself): detach that first.
			if err := unmountIfMounted(st.Created[i]); err != nil {
				errs = append(errs, err)
			}
			if err := syscall.Rmdir(st.Created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", st.Created[i], err))
			}
		}
	}
	if err := os.RemoveAll(StateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func delNetns(ctx context.Context, name string) error {
	if !fileExists("/run/netns/" + name) {
		return nil
	}
	return run(ctx, "ip", "netns", "del", name)
}

// unmountIfMounted detaches whatever is mounted at or below path.
func unmountIfMounted(path string) error { return mountinfo.Detach(path) }

// residue lists what a previous lab left on this machine.
func residue() []string {
	var r []string
	for _, p := range []string{StateDir, RunDir} {
		if fileExists(p) {
			r = append(r, p)
		}
	}
	if len(mountinfo.Below(RunDir)) > 0 {
		r = append(r, "mounts under "+RunDir)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], netnsPref) {
			r = append(r, "network namespace "+f[0])
		}
	}
	if hs, err := hierarchies(); err == nil {
		for _, h := range hs {
			if fileExists(filepath.Join(h.Mount, CgroupRoot)) {
				r = append(r, "cgroup "+filepath.Join(h.Mount, CgroupRoot))
				break
			}
		}
	}
	return r
}

// Residue lists what of the lab remains on this machine (empty after a clean down).
func Residue() []string { return residue() }
