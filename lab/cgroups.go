package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup hierarchy of the real machine.
type hierarchy struct {
	Mount   string // e.g. /sys/fs/cgroup/memory
	FSType  string // cgroup or cgroup2
	Options string // mount options to mount it again, e.g. "memory" or "none,name=systemd"
}

// hierarchies lists the machine's cgroup hierarchies from /proc/self/mountinfo.
func hierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/1/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hs []hierarchy
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || !strings.HasPrefix(pf[4], "/sys/fs/cgroup") {
			continue
		}
		h := hierarchy{Mount: pf[4], FSType: qf[0]}
		switch qf[0] {
		case "cgroup2":
		case "cgroup":
			var opts []string
			for _, o := range strings.Split(qf[2], ",") {
				if o == "rw" || o == "ro" {
					continue
				}
				opts = append(opts, o)
			}
			if len(opts) > 0 && strings.HasPrefix(opts[0], "name=") {
				opts = append([]string{"none"}, opts...)
			}
			h.Options = strings.Join(opts, ",")
		default:
			continue
		}
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted under /sys/fs/cgroup")
	}
	return hs, sc.Err()
}

// makeCgroup creates rel (e.g. ferry-lab/a) in every hierarchy, ready to take processes.
func makeCgroup(hs []hierarchy, rel string) error {
	for _, h := range hs {
		p := h.Mount
		for _, part := range strings.Split(rel, "/") {
			p = filepath.Join(p, part)
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", p, err)
			}
			// A v1 cpuset cgroup takes no task until it has cpus and mems.
			if strings.HasSuffix(h.Mount, "/cpuset") || strings.Contains(h.Options, "cpuset") {
				for _, k := range []string{"cpuset.cpus", "cpuset.mems"} {
					b, err := os.ReadFile(filepath.Join(filepath.Dir(p), k))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(p, k), b, 0o644); err != nil {
						return fmt.Errorf("set %s of %s: %w", k, p, err)
					}
				}
			}
		}
	}
	return nil
}

// cgroupProcsFiles are the files a process writes its pid into to join rel everywhere.
func cgroupProcsFiles(hs []hierarchy, rel string) []string {
	var fs []string
	for _, h := range hs {
		fs = append(fs, filepath.Join(h.Mount, rel, "cgroup.procs"))
	}
	return fs
}

// joinCgroup moves the calling process (all its threads) into rel in every hierarchy.
func joinCgroup(hs []hierarchy, rel string) error {
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, f := range cgroupProcsFiles(hs, rel) {
		if err := os.WriteFile(f, pid, 0o644); err != nil {
			return fmt.Errorf("join %s: %w", f, err)
		}
	}
	return nil
}

// cgroupDirs lists rel and all cgroups below it in one hierarchy, deepest first.
func cgroupDirs(h hierarchy, rel string) []string {
	var dirs []string
	_ = filepath.WalkDir(filepath.Join(h.Mount, rel), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// cgroupPIDs returns every process in rel's subtree (all hierarchies).
func cgroupPIDs(hs []hierarchy, rel string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, h := range hs {
		for _, d := range cgroupDirs(h, rel) {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// destroyCgroup kills every process in rel's subtree (thawing frozen ones so that SIGKILL lands)
// and removes the cgroups.
func destroyCgroup(hs []hierarchy, rel string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, h := range hs {
			for _, d := range cgroupDirs(h, rel) {
				if st := filepath.Join(d, "freezer.state"); fileExists(st) {
					_ = os.WriteFile(st, []byte("THAWED"), 0o644)
				}
				if fr := filepath.Join(d, "cgroup.freeze"); fileExists(fr) {
					_ = os.WriteFile(fr, []byte("0"), 0o644)
				}
			}
		}
		pids := cgroupPIDs(hs, rel)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroup %s survive SIGKILL", pids, rel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	for _, h := range hs {
		for _, d := range cgroupDirs(h, rel) {
			var err error
			for i := 0; i < 50; i++ { // a just-killed task can keep its cgroup busy briefly
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
