package receiver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuncWrapper runs the wrapper script with a runc on PATH that prints what it was given.
func TestRuncWrapper(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash:", err)
	}
	d := t.TempDir()
	bin := filepath.Join(d, "bin")
	_ = os.Mkdir(bin, 0o755)
	fake := "#!/bin/sh\necho \"args=$*\"\necho \"conf=${CRIU_CONFIG_FILE:-}\"\n"
	if err := os.WriteFile(filepath.Join(bin, "runc"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper, err := installRuncWrapper(filepath.Join(d, "state"))
	if err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(d, "m", "images")
	_ = os.MkdirAll(images, 0o700)
	if err := writeRestoreFlags(images, []string{"--lazy-pages", "--tcp-established"}); err != nil {
		t.Fatal(err)
	}
	if err := writeRestoreFlags(images, []string{"--privileged"}); err == nil {
		t.Error("writeRestoreFlags accepted an option ferry never uses")
	}
	conf := images + "/../criu-restore.conf"
	_ = os.WriteFile(conf, []byte(criuRestoreConf), 0o600)
	run := func(args ...string) (string, string) {
		cmd := exec.Command(wrapper, args...)
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("wrapper %v: %v: %s", args, err, out)
		}
		var a, c string
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "args="); ok {
				a = v
			}
			if v, ok := strings.CutPrefix(l, "conf="); ok {
				c = v
			}
		}
		return a, c
	}
	a, c := run("--root", "/run/x", "restore", "--image-path", images, "--bundle", "/b", "ctr")
	if want := "--root /run/x restore --lazy-pages --tcp-established --image-path " + images + " --bundle /b ctr"; a != want {
		t.Errorf("restore args:\n got %s\nwant %s", a, want)
	}
	if c != conf { // the path as the wrapper builds it
		t.Errorf("restore: CRIU_CONFIG_FILE %q, want %q", c, conf)
	}
	// Anything else goes to runc unchanged and without ferry's CRIU configuration.
	a, c = run("--root", "/run/x", "checkpoint", "--image-path", images, "ctr")
	if a != "--root /run/x checkpoint --image-path "+images+" ctr" || c != "" {
		t.Errorf("checkpoint: args %q, CRIU_CONFIG_FILE %q", a, c)
	}
	a, c = run("state", "ctr")
	if a != "state ctr" || c != "" {
		t.Errorf("state: args %q, CRIU_CONFIG_FILE %q", a, c)
	}
	// A restore without ferry's files (another tool's images) is runc's own.
	other := filepath.Join(d, "other", "images")
	_ = os.MkdirAll(other, 0o700)
	a, c = run("restore", "--image-path", other, "ctr")
	if a != "restore --image-path "+other+" ctr" || c != "" {
		t.Errorf("foreign restore: args %q, CRIU_CONFIG_FILE %q", a, c)
	}
	if b, _ := os.ReadFile(conf); string(b) != "network-lock skip\n" {
		t.Errorf("criu-restore.conf: %q", b)
	}
}
