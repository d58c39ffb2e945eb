package receiver

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRemoveTreeWithoutMounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.MkdirAll(filepath.Join(dir, "work", "criu"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
}

// A criu killed mid-restore leaves filesystems mounted in its work directory: removeTree
// detaches them and removes the lot.
func TestRemoveTreeUnmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "m")
	yard := filepath.Join(dir, "work", "criu", ".criu.cgyard.x")
	if err := os.MkdirAll(yard, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("ferry-test", yard, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(yard, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(yard, "cgroup.procs"), []byte("1"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), yard) {
		t.Fatalf("%s still mounted", yard)
	}
}
