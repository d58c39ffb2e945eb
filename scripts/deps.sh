#!/usr/bin/env bash
# Installs everything ferry and its lab need on a Debian 12 (bookworm) root machine.
# Idempotent: a second run changes nothing and takes a few seconds.
#
# CRIU: bookworm's criu 3.17 fails `criu check` on recent kernels ("Unexpected rt vDSO area
# bounds"). We take criu 4.x from Debian 13 (trixie) with a *private* apt state (the system's
# sources are not touched), unpack it and the libraries it needs (including trixie's glibc)
# into $CRIU_PREFIX, and put a wrapper on PATH that runs it with that prefix's loader.
# runc, containerd and go-criu all exec `criu` by name, so the wrapper serves them all.
set -euo pipefail

CRIU_PREFIX=${CRIU_PREFIX:-/opt/ferry/criu}
CRIU_WRAPPER=${CRIU_WRAPPER:-/usr/local/sbin/criu}
APT_PACKAGES=(
  containerd runc rsync openssh-server openssh-client iptables nftables busybox-static zfs-fuse
  iproute2 util-linux procps acl attr psmisc kmod ca-certificates
  qemu-system-x86  # ferry-lab vm: pre-copy's end-to-end test on a kernel with soft-dirty tracking
)
# criu and the libraries it links against, as trixie names them.
TRIXIE_PACKAGES=(
  criu libcompel1 libc6 libgnutls30t64 libnftables1 libnettle8t64 libhogweed6t64 libunistring5
  libp11-kit0 libidn2-0 libgmp10 libtasn1-6 libnftnl11 libxtables12 libjansson4 libbsd0 libmd0
  libprotobuf-c1 libnl-3-200 libnet1 libuuid1 libmnl0 libffi8 libgcc-s1 libbrotli1 libzstd1 liblz4-1
)

log() { printf '[deps] %s\n' "$*"; }

# FERRY_BENCH=1 (make bench): also the baselines ferry is measured against.
if [ "${FERRY_BENCH:-0}" = 1 ]; then
  APT_PACKAGES+=(podman)
fi
[ "$(id -u)" = 0 ] || { echo "deps: must run as root (it installs packages)" >&2; exit 1; }
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || log "warning: tested on Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  # No init system starts services here, but sysv scripts may still try (sshd would start in the
  # root network namespace). Deny service starts during the install only.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  trap '[ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  # A third-party source this machine cannot reach must not stop us: the install below says
  # clearly if a package we need is really missing.
  apt-get update -qq || log "warning: apt-get update reported errors; trying the install anyway"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d; created_policy=0
fi

criu_ok() {
  command -v criu >/dev/null 2>&1 || return 1
  local v; v=$(criu --version 2>/dev/null | sed -n 's/^Version: *//p')
  [ "${v%%.*}" -ge 4 ] 2>/dev/null || return 1
  criu check >/dev/null 2>&1
}

if criu_ok; then
  log "criu $(criu --version | sed -n 's/^Version: *//p') passes 'criu check'"
else
  log "installing criu 4.x from Debian 13 (trixie) into $CRIU_PREFIX"
  work=$(mktemp -d /tmp/ferry-deps.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/state/lists/partial" "$work/cache/archives/partial" "$work/debs"
  cat > "$work/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-stable.gpg] http://deb.debian.org/debian trixie main
SRC
  aptopts=(-o Dir::State="$work/state" -o Dir::Cache="$work/cache" -o Dir::Etc::SourceList="$work/sources.list"
           -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
           -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${aptopts[@]}" update -qq
  (cd "$work/debs" && apt-get "${aptopts[@]}" download -qq "${TRIXIE_PACKAGES[@]}")
  rm -rf "$CRIU_PREFIX.new"; mkdir -p "$CRIU_PREFIX.new"
  for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$CRIU_PREFIX.new"; done
  rm -rf "$CRIU_PREFIX"; mv "$CRIU_PREFIX.new" "$CRIU_PREFIX"
  mkdir -p "$(dirname "$CRIU_WRAPPER")"
  cat > "$CRIU_WRAPPER" <<WRAP
#!/bin/sh
# criu from Debian trixie with its own glibc, installed by ferry's scripts/deps.sh.
P=$CRIU_PREFIX
exec "\$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$P/usr/lib/x86_64-linux-gnu" "\$P/usr/sbin/criu" "\$@"
WRAP
  chmod 755 "$CRIU_WRAPPER"
  hash -r
  if ! criu_ok; then
    echo "deps: criu from trixie does not pass 'criu check' on this kernel:" >&2
    criu check >&2 || true
    exit 1
  fi
  log "criu $(criu --version | sed -n 's/^Version: *//p') installed; 'criu check' passes"
fi

# A kernel with soft-dirty tracking for ferry-lab's VM (pre-copy's end-to-end test), unless
# this machine's own kernel has it.
if criu check --feature mem_dirty_track >/dev/null 2>&1; then
  log "this kernel tracks dirty memory: no VM kernel needed"
else
  bash "$(dirname "$0")/vm-kernel.sh"
fi
