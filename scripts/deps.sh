#!/usr/bin/env bash
# Installs everything ferry and its lab need on a Debian 12 (bookworm) root machine.
# Idempotent: a second run changes nothing and takes a few seconds.
#
# CRIU: bookworm's criu 3.17 fails `criu check` on recent kernels ("Unexpected rt vDSO area
# bounds"). We take criu 4.2 from Debian forky (4.1 from trixie as a fallback) with a *private*
# apt state (the system's sources are not touched), unpack it and the libraries it needs (with its glibc)
# into $CRIU_PREFIX, and put a wrapper on PATH that runs it with that prefix's loader.
# runc, containerd and go-criu all exec `criu` by name, so the wrapper serves them all.
set -euo pipefail

CRIU_PREFIX=${CRIU_PREFIX:-/opt/ferry/criu}
CRIU_WRAPPER=${CRIU_WRAPPER:-/usr/local/sbin/criu}
APT_PACKAGES=(
  containerd runc rsync openssh-server openssh-client iptables nftables busybox-static zfs-fuse
  iproute2 util-linux procps acl attr psmisc kmod ca-certificates
  redis-server  # make demo-redis and its end-to-end test: Debian's redis-server in a lab container
  qemu-system-x86  # ferry-lab vm: pre-copy's end-to-end test on a kernel with soft-dirty tracking
)
# criu and the libraries it links against, as forky and trixie name them.
FORKY_PACKAGES=(
  criu libcompel1 libc6 libgnutls30t64 libnftables1 libnettle8t64 libhogweed6t64 libunistring5
  libp11-kit0 libidn2-0 libgmp10 libtasn1-6 libnftnl11 libxtables12 libjansson4 libbsd0 libmd0
  libprotobuf-c1 libnl-3-200 libnet9 libuuid1 libmnl0 libffi8 libgcc-s1 libbrotli1 libzstd1 liblz4-1
)
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

# criu_ok MAJOR MINOR: the criu on PATH is at least that version and passes `criu check`.
criu_ok() {
  command -v criu >/dev/null 2>&1 || return 1
  local v; v=$(criu --version 2>/dev/null | sed -n 's/^Version: *//p')
  local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  [ "$major" -gt "$1" ] 2>/dev/null || { [ "$major" -eq "$1" ] && [ "$minor" -ge "$2" ]; } 2>/dev/null || return 1
  criu check >/dev/null 2>&1
}

# install_criu SUITE KEYRING PACKAGE...: unpacks criu and its libraries from SUITE into
# $CRIU_PREFIX behind the wrapper, but only if that criu passes `criu check` here; the criu
# already installed stays otherwise.
install_criu() {
  local suite=$1 keyring=$2; shift 2
  local work; work=$(mktemp -d /tmp/ferry-deps.XXXXXX)
  mkdir -p "$work/state/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/$keyring] http://deb.debian.org/debian $suite main" > "$work/sources.list"
  local aptopts=(-o Dir::State="$work/state" -o Dir::Cache="$work/cache" -o Dir::Etc::SourceList="$work/sources.list"
           -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
           -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  if ! apt-get "${aptopts[@]}" update -qq || ! (cd "$work/debs" && apt-get "${aptopts[@]}" download -qq "$@"); then
    rm -rf "$work"; return 1
  fi
  rm -rf "$CRIU_PREFIX.new"; mkdir -p "$CRIU_PREFIX.new"
  local d; for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$CRIU_PREFIX.new"; done
  rm -rf "$work"
  local P=$CRIU_PREFIX.new/usr/lib/x86_64-linux-gnu
  if ! "$P/ld-linux-x86-64.so.2" --library-path "$P" "$CRIU_PREFIX.new/usr/sbin/criu" check >/dev/null 2>&1; then
    log "criu from $suite does not pass 'criu check' on this kernel:"
    "$P/ld-linux-x86-64.so.2" --library-path "$P" "$CRIU_PREFIX.new/usr/sbin/criu" check 2>&1 | tail -5 >&2 || true
    rm -rf "$CRIU_PREFIX.new"; return 1
  fi
  rm -rf "$CRIU_PREFIX"; mv "$CRIU_PREFIX.new" "$CRIU_PREFIX"
  mkdir -p "$(dirname "$CRIU_WRAPPER")"
  cat > "$CRIU_WRAPPER" <<WRAP
#!/bin/sh
# criu from Debian $suite with its own glibc, installed by ferry's scripts/deps.sh.
P=$CRIU_PREFIX
exec "\$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$P/usr/lib/x86_64-linux-gnu" "\$P/usr/sbin/criu" "\$@"
WRAP
  chmod 755 "$CRIU_WRAPPER"
  hash -r
}

# CRIU 4.2 or later: on Linux 6.16+ earlier versions cannot checkpoint any TCP or UDP socket
# (criu#2705). Debian 13 (trixie) has 4.1; 4.2 comes from forky (testing). If forky cannot be
# used, trixie's 4.1 still moves containers without inet sockets, and ferry's preflight refuses
# the others with that reason.
if criu_ok 4 2; then
  log "criu $(criu --version | sed -n 's/^Version: *//p') passes 'criu check'"
elif log "installing criu 4.2 from Debian forky (testing) into $CRIU_PREFIX" &&
     install_criu forky debian-archive-trixie-automatic.gpg "${FORKY_PACKAGES[@]}" && criu_ok 4 2; then
  log "criu $(criu --version | sed -n 's/^Version: *//p') installed; 'criu check' passes"
elif criu_ok 4 0; then
  log "warning: criu 4.2 not installable; keeping criu $(criu --version | sed -n 's/^Version: *//p') (no TCP/UDP sockets on Linux 6.16+)"
elif log "falling back to criu 4.1 from Debian 13 (trixie)" &&
     install_criu trixie debian-archive-trixie-stable.gpg "${TRIXIE_PACKAGES[@]}" && criu_ok 4 0; then
  log "warning: criu $(criu --version | sed -n 's/^Version: *//p') installed (no TCP/UDP sockets on Linux 6.16+)"
else
  echo "deps: no criu that passes 'criu check' on this kernel could be installed" >&2
  exit 1
fi

# A kernel with soft-dirty tracking for ferry-lab's VM (pre-copy's end-to-end test), unless
# this machine's own kernel has it.
if criu check --feature mem_dirty_track >/dev/null 2>&1; then
  log "this kernel tracks dirty memory: no VM kernel needed"
else
  bash "$(dirname "$0")/vm-kernel.sh"
fi
