package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-project/ferry/internal/proc"
)

// A restore stuck on a dead CRIU: runc talks to criu over a socket pair and waits for it to
// close. When criu dies mid-restore (killed, OOM), the tasks it had begun to build inherit
// that socket and wait forever for the dead criu, so runc, the shim's Start and the
// migration would all wait forever. restoreWatch notices and kills what is left.

// stuckAfter is how long runc may keep an exited criu unreaped before the restore counts as
// stuck (normally runc reaps it at once).
const stuckAfter = 3 * time.Second

type restoreWatch struct {
	fired atomic.Bool
	stop  chan struct{}
	done  chan struct{}
}

// watchRestore watches the `runc restore` of imagesDir until stop is called. If its criu has
// exited and runc still waits, or ctx ends while the restore runs, it SIGKILLs the processes
// of the half-restored container and runc.
func watchRestore(ctx context.Context, imagesDir string) *restoreWatch {
	w := &restoreWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		var zombieSince time.Time
		for {
			select {
			case <-w.stop:
				if ctx.Err() != nil {
					w.kill(imagesDir)
				}
				return
			case <-ctx.Done():
				w.kill(imagesDir)
				return
			case <-t.C:
			}
			pid := findRuncRestore(imagesDir)
			if pid == 0 || !hasZombieChild(pid) {
				zombieSince = time.Time{}
				continue
			}
			if zombieSince.IsZero() {
				zombieSince = time.Now()
				continue
			}
			if time.Since(zombieSince) >= stuckAfter {
				w.kill(imagesDir)
				return
			}
		}
	}()
	return w
}

func (w *restoreWatch) kill(imagesDir string) {
	if pid := findRuncRestore(imagesDir); pid > 0 {
		w.fired.Store(true)
		killRestore(pid)
	}
}

// Stop ends the watch and reports whether it had to kill a stuck restore.
func (w *restoreWatch) Stop() bool {
	close(w.stop)
	<-w.done
	return w.fired.Load()
}

// findRuncRestore returns the pid of `runc … restore --image-path imagesDir`, or 0.
func findRuncRestore(imagesDir string) int {
	want := []byte("\x00--image-path\x00" + imagesDir + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, want) || !bytes.Contains(b, []byte("\x00restore\x00")) {
			continue
		}
		if comm, _, _ := proc.Stat(pid); comm == "runc" {
			return pid
		}
	}
	return 0
}

// children maps each process to its children.
func children() map[int][]int {
	m := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, _ := proc.Stat(pid); ppid > 0 {
			m[ppid] = append(m[ppid], pid)
		}
	}
	return m
}

func hasZombieChild(pid int) bool {
	for _, c := range children()[pid] {
		if _, _, st := proc.Stat(c); st == "Z" {
			return true
		}
	}
	return false
}

// killRestore SIGKILLs runc's descendants and every process in the cgroups they were moved
// to (the half-restored container's: criu's helpers may have been reparented away from
// runc), then runc itself if it still waits.
func killRestore(runcPid int) {
	own := pidsCgroup(runcPid)
	kids := children()
	victims := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		for _, c := range kids[p] {
			victims[c] = true
			walk(c)
		}
	}
	walk(runcPid)
	for p := range victims {
		// Only a cgroup of its own: never the shim's (runc's) or the root.
		if cg := pidsCgroup(p); cg != "" && cg != own && cg != "/" && cg != "pids" {
			for _, q := range cgroupProcs(cg) {
				victims[q] = true
			}
		}
	}
	for p := range victims {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, _, st := proc.Stat(runcPid); st == "" || st == "Z" {
			return
		}
	}
	_ = syscall.Kill(runcPid, syscall.SIGKILL)
}

// pidsCgroup returns the cgroup directory (under /sys/fs/cgroup) a process belongs to for the
// pids controller (cgroup v1) or the unified hierarchy (v2), or "".
func pidsCgroup(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	var v2 string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			v2 = f[2]
		case f[1] == "pids":
			return filepath.Join("pids", f[2])
		}
	}
	return v2
}

func cgroupProcs(cg string) []int {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}
