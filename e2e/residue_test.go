package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostProcesses lists the command names of every process of a lab host (its cgroup subtree).
func hostProcesses(t *testing.T, host string) []string {
	t.Helper()
	var root string
	for _, h := range []string{"pids", "memory", "unified", ""} {
		p := filepath.Join("/sys/fs/cgroup", h, "ferry-lab", host)
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			root = p
			break
		}
	}
	if root == "" {
		t.Fatalf("no cgroup for lab host %s", host)
	}
	var names []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, pid := range strings.Fields(string(b)) {
			if c, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil {
				names = append(names, strings.TrimSpace(string(c)))
			}
		}
		return nil
	})
	return names
}

// assertNoResidue checks that a failed migration left nothing on the target: no container, no
// snapshot, no migration directory, no session socket, no ferry-receiver, CRIU or rsync
// process.
func assertNoResidue(t *testing.T, host, name, migrationID string) {
	t.Helper()
	if st, ok := containers(t, host)[name]; ok {
		t.Errorf("%s: container %s remains (%s)", host, name, st)
	}
	snaps := mustLab(t, "exec", host, "--", "ctr", "snapshot", "ls")
	for _, l := range strings.Split(snaps, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			t.Errorf("%s: snapshot %s remains", host, name)
		}
	}
	if migrationID != "" {
		if r := lab(t, "exec", host, "--", "test", "-e", "/var/lib/ferry/migrations/"+migrationID); r.code == 0 {
			t.Errorf("%s: /var/lib/ferry/migrations/%s remains", host, migrationID)
		}
	}
	if out := mustLab(t, "exec", host, "--", "sh", "-c", "ls /run/ferry/sessions 2>/dev/null || true"); strings.TrimSpace(out) != "" {
		t.Errorf("%s: session sockets remain: %s", host, out)
	}
	for _, p := range hostProcesses(t, host) {
		switch p {
		case "ferry-receiver", "criu", "rsync":
			t.Errorf("%s: process %s remains", host, p)
		}
	}
}

// assertTidyAfterCommit: once ferry has exited, a committed migration has left on the target
// only its record (journal, CRIU's logs and flags) — no checkpoint image, no CRIU working
// directory — and no ferry-receiver or criu still running.
func assertTidyAfterCommit(t *testing.T, host, migrationID string) {
	t.Helper()
	out := mustLab(t, "exec", host, "--", "ls", "-A", "/var/lib/ferry/migrations/"+migrationID)
	for _, name := range strings.Fields(out) {
		if name == "images" || name == "work" {
			t.Errorf("%s: /var/lib/ferry/migrations/%s/%s remains after the commit", host, migrationID, name)
		}
	}
	for _, p := range hostProcesses(t, host) {
		if p == "ferry-receiver" || p == "criu" {
			t.Errorf("%s: process %s remains after the commit", host, p)
		}
	}
}
