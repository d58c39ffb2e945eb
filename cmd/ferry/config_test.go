package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The configuration file gives the flags' defaults; a flag on the command line wins.
func TestConfigDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ferry.toml")
	conf := `strategy = "post-copy"
bwlimit = "10M"
identity = ["/k/one", "/k/two"]
namespace = "prod"
concurrency = 4
zfs_parent = "tank/ferry"
`
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	cmd, _, err := root.Find([]string{"drain"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags([]string{"--config", p, "--strategy", "pre-copy", "--to", "b"}); err != nil {
		t.Fatal(err)
	}
	g := &globalFlags{config: p}
	if err := g.applyConfig(cmd); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	for name, want := range map[string]string{"strategy": "pre-copy", "bwlimit": "10M", "identity": "[/k/one,/k/two]", "namespace": "prod", "concurrency": "4", "compress": "none"} {
		if got := get(name); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}

	// A bad value names the file and the setting.
	if err := os.WriteFile(p, []byte("max_downtime = \"soon\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, _, _ = newRoot().Find([]string{"migrate"})
	_ = cmd.ParseFlags(nil)
	if err := g.applyConfig(cmd); err == nil {
		t.Error("max_downtime = \"soon\" accepted")
	}
}
