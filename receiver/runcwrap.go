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

// runcWrapper is the runc a task restored with options containerd's shim cannot pass (lazy
// pages for post-copy, established TCP connections) runs through: for `runc restore` it adds the options listed in
// runc-restore-flags next to the image directory; everything else goes to runc unchanged. The
// shim keeps calling it for the task's whole life, so it is a plain script that ferry never
// removes.
const runcWrapper = `#!/bin/bash
# Installed by ferry-receiver. Containers restored by ferry with options containerd cannot pass
# (post-copy) call runc through this script: keep it while they run.
img= prev=
for a in "$@"; do [ "$prev" = --image-path ] && img=$a; prev=$a; done
extra=()
if [ -n "$img" ] && [ -f "$img/../runc-restore-flags" ]; then
  mapfile -t extra < "$img/../runc-restore-flags"
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
	return os.WriteFile(filepath.Join(filepath.Dir(imagesDir), "runc-restore-flags"), []byte(strings.Join(flags, "\n")+"\n"), 0o600)
}

// restoreFlags asks runc restore, through the wrapper, for what containerd cannot pass:
// --lazy-pages for post-copy, --tcp-established when the container's network moved with it
// (same addresses: its connections can live on). Called with s.mu held.
func (s *server) restoreFlags(lazy bool, ro *runtime.RestoreOptions) error {
	var flags []string
	if lazy {
		flags = append(flags, "--lazy-pages")
	}
	if s.rec.Network != nil {
		flags = append(flags, "--tcp-established")
	}
	if len(flags) == 0 {
		return nil
	}
	if runtime.CustomRunc(s.rec) {
		return fmt.Errorf("the container names its own runc binary; restoring with %s needs ferry's runc wrapper: %w", strings.Join(flags, " "), errdefs.ErrUnsupported)
	}
	wrapper, err := installRuncWrapper(s.cfg.StateDir)
	if err != nil {
		return err
	}
	if err := writeRestoreFlags(s.imagesDir, flags); err != nil {
		return err
	}
	ro.BinaryName = wrapper
	return nil
}
