#!/usr/bin/env bash
# Redis with a live client: Debian's redis-server in a networked lab container, keys loaded, one
# client connection issuing commands from outside the hosts while ferry moves the container
# a → b (stop-copy) → a (post-copy). Shows every key present, the same connection still
# answering, and the longest gap the client saw. Exits non-zero if anything was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=bin/ferry-lab
KEYS=${KEYS:-100000}
OUT=$(mktemp -d /tmp/ferry-demo-redis.XXXXXX)
WATCH=

cleanup() {
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null || true
  $LAB down >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

$LAB down >/dev/null 2>&1 || true
step "ferry-lab up: hosts a and b, a container bridge on each, a switch routing container addresses"
$LAB up
step "redis-server in a container on a, with its own address"
$LAB run a cache --net --redis
ip=$(cat /var/lib/ferry-lab/net/cache)
echo "cache is at $ip:6379 (the switch routes it to a)"
step "load $KEYS keys from a client on the switch"
$LAB redis load cache --keys "$KEYS"

step "a client keeps ONE connection and sends INCR/GET every 5 ms from now on"
$LAB redis watch cache --keys "$KEYS" --output json > "$OUT/watch.json" &
WATCH=$!
sleep 1

step "ferry migrate cache b --strategy stop-copy   (run on a)"
$LAB exec a -- ferry migrate cache b --strategy stop-copy --report /tmp/ferry-demo-redis-ab.json
cp /var/lib/ferry-lab/hosts/a/root/tmp/ferry-demo-redis-ab.json "$OUT/ab.json"
$LAB redis verify cache --keys "$KEYS"
sleep 1
step "ferry migrate cache a --strategy post-copy   (run on b)"
$LAB exec b -- ferry migrate cache a --strategy post-copy --report /tmp/ferry-demo-redis-ba.json
cp /var/lib/ferry-lab/hosts/b/root/tmp/ferry-demo-redis-ba.json "$OUT/ba.json"
$LAB redis verify cache --keys "$KEYS"
sleep 1

step "stop the client: was it one connection all along?"
kill -INT "$WATCH"
status=0; wait "$WATCH" || status=$?
WATCH=
[ "$status" = 0 ] || { echo "demo FAILED: the client's connection did not survive ($(cat "$OUT/watch.json"))" >&2; exit 1; }

field() { tr -d ' \n' < "$1" | grep -o "\"$2\":[^,}]*" | head -1 | cut -d: -f2-; }
step "summary"
printf '%-22s %s\n' "keys present" "$KEYS of $KEYS (every value compared, after each move)" \
  "requests answered" "$(field "$OUT/watch.json" requests)" \
  "same connection" "$(field "$OUT/watch.json" same_connection) (CLIENT ID $(field "$OUT/watch.json" client_id_before) → $(field "$OUT/watch.json" client_id_after))" \
  "INCR counter" "$(field "$OUT/watch.json" counter), each answer the previous + 1" \
  "client's longest gap" "$(field "$OUT/watch.json" longest_gap_ms) ms (client-observed downtime, both moves)" \
  "ferry downtime a to b" "$(field "$OUT/ab.json" downtime_ms) ms (stop-copy)" \
  "ferry downtime b to a" "$(field "$OUT/ba.json" downtime_ms) ms (post-copy)"
step "ferry-lab down"
$LAB down
trap - EXIT
rm -rf "$OUT"
echo "demo-redis OK: Redis moved twice, every key and the client's connection survived"
