package receiver

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-project/ferry/internal/errdefs"
	"github.com/ferry-project/ferry/runtime"
)

// runcWrapper is the runc a task ferry restores runs through, for options containerd's shim
// cannot pass: for `runc restore` it adds the runc options listed in runc-restore-flags next to
// the image directory (lazy pages for post-copy, established TCP connections), and points CRIU
// at criu-restore.conf there (CRIU options runc has no flag for: network-lock skip); everything
// else goes to runc unchanged. The shim keeps calling it for the task's whole life, so it is a
// plain script that ferry never removes.
const runcWrapper = `#!/bin/bash
# Installed by ferry-receiver. Containers restored by ferry call runc through this script, for
# options containerd cannot pass: keep it while they run.
img= prev= restore=
for a in "$@"; do [ "$prev" = --image-path ] && img=$a; [ "$a" = restore ] && restore=1; prev=$a; done
extra=()
if [ -n "$img" ] && [ -f "$img/../runc-restore-flags" ]; then
  mapfile -t extra < "$img/../runc-restore-flags"
fi
# CRIU options runc has no flag for: CRIU reads this file after its defaults, before runc's.
if [ -n "$restore" ] && [ -n "$img" ] && [ -f "$img/../criu-restore.conf" ]; then
  export CRIU_CONFIG_FILE="$img/../criu-restore.conf"
fi
args=()
for a in "$@"; do
  args+=("$a")
  if [ "$a" = restore ] && [ ${#extra[@]} -gt 0 ]; then args+=("${extra[@]}"); extra=(); fi
done
exec runc "${args[@]}"
`

// allowedRuncFlags are the only options ferry asks runc restore for.
var allowedRuncFlags = map[string]bool{"--lazy-pages": true, "--tcp-established": true}

// installRuncWrapper writes the wrapper under stateDir (if it is not there already, identical)
// and returns its path.
func installRuncWrapper(stateDir string) (string, error) {
	p := filepath.Join(stateDir, "runc-restore")
	if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, []byte(runcWrapper)) {
		return p, nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(runcWrapper), 0o755); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// writeRestoreFlags asks the wrapper for runc restore options, for the images in imagesDir.
func writeRestoreFlags(imagesDir string, flags []string) error {
	for _, f := range flags {
		if !allowedRuncFlags[f] {
			return fmt.Errorf("runc restore option %q is not one ferry uses", f)
		}
	}
	var b []byte
	for _, f := range flags {
		b = append(b, f+"\n"...)
	}
	return os.WriteFile(filepath.Join(filepath.Dir(imagesDir), "runc-restore-flags"), b, 0o600)
}

// criuRestoreConf is the CRIU configuration of a restore through the wrapper. network-lock
// skip: a moved network is locked by ferry itself from prepare until the commit
// (network.Lock); any other container's namespace is recreated empty by runc, so there is
// nothing for CRIU's lock to hold, and its unlock (iptables-restore run up to five times) was
// 70 ms of downtime on the lab.
const criuRestoreConf = "network-lock skip\n"

// restoreFlags asks runc restore, through the wrapper, for what containerd cannot pass:
// --lazy-pages for post-copy, --tcp-established when the container's network moved with it
// (same addresses: its connections can live on), and criuRestoreConf. A container naming its own
// runc binary keeps it (and CRIU's network lock) when it needs no runc flag. Called with s.mu held.
func (s *server) restoreFlags(lazy bool, ro *runtime.RestoreOptions) error {
	var flags []string
	if lazy {
		flags = append(flags, "--lazy-pages")
	}
	if s.rec.Network != nil {
		flags = append(flags, "--tcp-established")
	}
	if runtime.CustomRunc(s.rec) {
		if len(flags) == 0 {
			return nil
		}
		return fmt.Errorf("the container names its own runc binary; restoring with %s needs ferry's runc wrapper: %w", strings.Join(flags, " "), errdefs.ErrUnsupported)
	}
	wrapper, err := installRuncWrapper(s.cfg.StateDir)
	if err != nil {
		return err
	}
	if err := writeRestoreFlags(s.imagesDir, flags); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(s.imagesDir), "criu-restore.conf"), []byte(criuRestoreConf), 0o600); err != nil {
		return err
	}
	ro.BinaryName = wrapper
	return nil
}
