package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	d := t.TempDir()
	if c, err := Load(filepath.Join(d, "missing.toml")); err != nil || c.ZFSParent != "" {
		t.Fatalf("missing file: %+v %v", c, err)
	}
	p := filepath.Join(d, "ferry.toml")
	_ = os.WriteFile(p, []byte("# comment\nzfs_parent = \"tank/ferry\"\n"), 0o644)
	if c, err := Load(p); err != nil || c.ZFSParent != "tank/ferry" {
		t.Fatalf("%+v %v", c, err)
	}
	_ = os.WriteFile(p, []byte("zfs_parnet = \"tank/ferry\"\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "zfs_parnet") {
		t.Fatalf("typo accepted: %v", err)
	}
}
