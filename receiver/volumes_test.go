package receiver

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckVolumePath(t *testing.T) {
	root := t.TempDir()
	vols := filepath.Join(root, "srv")
	_ = os.MkdirAll(filepath.Join(vols, "ok"), 0o755)
	_ = os.Symlink("/etc", filepath.Join(vols, "escape"))
	roots := []string{vols}
	for _, good := range []string{filepath.Join(vols, "ok"), filepath.Join(vols, "new/deeper")} {
		if err := checkVolumePath(good, roots); err != nil {
			t.Errorf("%s refused: %v", good, err)
		}
	}
	for _, bad := range []string{"/etc", "relative", vols + "/../etc", vols, "/", filepath.Join(vols, "escape"), filepath.Join(vols, "escape/sub")} {
		if err := checkVolumePath(bad, roots); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestVolumePathState(t *testing.T) {
	d := t.TempDir()
	if st, _ := volumePathState(filepath.Join(d, "absent"), "ns/c"); st != pathAbsent {
		t.Error("absent")
	}
	empty := filepath.Join(d, "empty")
	_ = os.Mkdir(empty, 0o755)
	if st, _ := volumePathState(empty, "ns/c"); st != pathEmpty {
		t.Error("empty")
	}
	full := filepath.Join(d, "full")
	_ = os.Mkdir(full, 0o755)
	_ = os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	if st, why := volumePathState(full, "ns/c"); st != pathOccupied || why == "" {
		t.Errorf("occupied: %v %q", st, why)
	}
	file := filepath.Join(d, "file")
	_ = os.WriteFile(file, nil, 0o644)
	if st, _ := volumePathState(file, "ns/c"); st != pathOccupied {
		t.Error("file")
	}
	if got := firstMissing(filepath.Join(d, "a/b/c")); got != filepath.Join(d, "a") {
		t.Errorf("firstMissing = %s", got)
	}
}
