#!/usr/bin/env bash
# Fetches and unpacks Debian's stock kernel (linux-image-amd64) for ferry-lab's VMs: it has
# soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY), which pre-copy needs and this machine's
# kernel may lack. Nothing is installed: the package is unpacked under $VM_DIR and its module
# index built there. Idempotent.
set -euo pipefail
VM_DIR=${VM_DIR:-/var/cache/ferry/vm}
log() { printf '[vm-kernel] %s\n' "$*"; }

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
[ -n "$pkg" ] || { echo "vm-kernel: apt knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
ver=${pkg#linux-image-}
dest=$VM_DIR/linux-$ver
if [ -e "$dest/boot/vmlinuz-$ver" ] && [ -e "$dest/lib/modules/$ver/modules.dep" ]; then
  log "kernel $ver is ready in $dest"
  exit 0
fi
mkdir -p "$VM_DIR"
tmp=$(mktemp -d "$VM_DIR/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # apt's download sandbox user must be able to write there
log "fetching $pkg"
(cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null) || (cd "$tmp" && apt-get download -qq "$pkg")
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/unpacked"
# Only what a VM needs: the image and the modules (no firmware, no docs).
depmod -b "$tmp/unpacked" "$ver"
rm -rf "$dest"
mv "$tmp/unpacked" "$dest"
log "kernel $ver unpacked in $dest"
