#!/usr/bin/env bash
# The main job: a two-host lab, a 64 MiB workload that keeps dirtying memory, moved a → b → a
# with ferry, proven intact after each move. Exits non-zero if anything was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=bin/ferry-lab
REPORTS=$(mktemp -d /tmp/ferry-demo.XXXXXX)

cleanup() { $LAB down >/dev/null 2>&1 || true; rm -rf "$REPORTS"; }
trap cleanup EXIT

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

$LAB down >/dev/null 2>&1 || true
step "ferry-lab up: hosts a and b (own network, mount, cgroup namespaces; sshd; containerd)"
$LAB up
step "a workload on a: 64 MiB of checksummed memory, 1 MiB/s rewritten, a counter, a ticks file"
$LAB run a web --mem 64 --dirty 1
$LAB check a web

step "ferry migrate web b   (run on a)"
$LAB exec a -- ferry migrate web b --report /tmp/ferry-demo-ab.json
cp /var/lib/ferry-lab/hosts/a/root/tmp/ferry-demo-ab.json "$REPORTS/ab.json"
step "ferry-lab check b web"
$LAB check b web

step "ferry migrate web a   (run on b)"
$LAB exec b -- ferry migrate web a --report /tmp/ferry-demo-ba.json
cp /var/lib/ferry-lab/hosts/b/root/tmp/ferry-demo-ba.json "$REPORTS/ba.json"
step "ferry-lab check a web"
$LAB check a web
$LAB status

field() { sed -n "s/^  \"$2\": \(.*\),$/\1/p" "$1" | head -1; }
stream() { tr -d ' \n' < "$1" | grep -o "\"name\":\"$2\",\"bytes\":[0-9]*" | grep -o '[0-9]*$'; }
step "summary"
printf '%-8s %12s %16s %16s %16s\n' move downtime_ms checkpoint_B rootfs_pre_B rootfs_final_B
for m in ab ba; do
  f="$REPORTS/$m.json"
  printf '%-8s %12s %16s %16s %16s\n' "${m:0:1}→${m:1:1}" "$(field "$f" downtime_ms)" \
    "$(stream "$f" checkpoint)" "$(stream "$f" rootfs-presync)" "$(stream "$f" rootfs-final)"
done
step "ferry-lab down"
$LAB down
trap - EXIT
rm -rf "$REPORTS"
echo "demo OK: the workload moved twice and lost nothing"
