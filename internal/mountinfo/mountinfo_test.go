package mountinfo

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/ferry/m-1/work`:     "/var/lib/ferry/m-1/work",
		`/mnt/with\040space`:          "/mnt/with space",
		`/a\134b`:                     `/a\b`,
		`/trailing\04`:                `/trailing\04`,
		`/tab\011and\012newline\040x`: "/tab\tand\nnewline x",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// Stacked and nested mounts below a directory (a name with a space too) are all found, deepest
// first, and all detached.
func TestBelowAndDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "m")
	inner := filepath.Join(dir, "a b", "c")
	if err := os.MkdirAll(inner, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(inner, syscall.MNT_DETACH); _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := syscall.Mount("ferry-test", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("ferry-test", inner, "tmpfs", 0, "size=1m"); err != nil { // stacked
		t.Fatal(err)
	}
	got := Below(dir)
	if len(got) != 2 || got[0] != inner || got[1] != inner {
		t.Fatalf("Below(%s) = %q, want the stacked %s twice", dir, got, inner)
	}
	if Below(dir+"x") != nil {
		t.Fatalf("Below matched a sibling with the same prefix")
	}
	if err := Detach(dir); err != nil {
		t.Fatal(err)
	}
	if got := Below(dir); len(got) != 0 {
		t.Fatalf("still mounted after Detach: %q", got)
	}
}
