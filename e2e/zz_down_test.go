package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestZZLabDownLeavesNothing runs last (files and tests run in name order): `ferry-lab down`
// leaves no process, mount, namespace, interface, cgroup or file of the lab behind.
func TestZZLabDownLeavesNothing(t *testing.T) {
	requireLab(t)
	mustLab(t, "down")
	mustLab(t, "down") // idempotent
	for _, p := range []string{"/var/lib/ferry-lab", "/run/ferry-lab"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s remains", p)
		}
	}
	for _, p := range labMountPoints {
		if _, err := os.Stat(p); err == nil && !existedBefore[p] {
			t.Errorf("mount point %s created by the lab remains", p)
		}
	}
	if now, _ := os.ReadFile("/proc/sys/fs/pipe-max-size"); string(now) != string(pipeMaxBefore) {
		t.Errorf("fs.pipe-max-size is %s, it was %s before the lab", now, pipeMaxBefore)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, "ferry-lab") {
			t.Errorf("mount remains: %s", l)
		}
	}
	ns, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(ns), "ferrylab-") {
		t.Errorf("network namespaces remain: %s", ns)
	}
	links, _ := exec.Command("ip", "-o", "link").Output()
	for _, n := range []string{"veth-a", "veth-b", "br0"} {
		if strings.Contains(string(links), " "+n+"@") || strings.Contains(string(links), " "+n+":") {
			t.Errorf("interface %s remains", n)
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/ferry-lab")
	if len(cgs) > 0 {
		t.Errorf("cgroups remain: %v", cgs)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "/var/lib/ferry-lab") || strings.Contains(cmd, "ferry-workload") {
			t.Errorf("process remains: %s (%s)", cmd, filepath.Dir(p))
		}
	}
}
