#!/usr/bin/env bash
# Throughput of Redis + Sentinel on the local lab at concurrency 10, two ways in one
# session while holding the lab lock: `splitbrain test` (no faults, --rate 0, the
# register and set workloads, leader observation running as always), then
# `redis-benchmark` with 10 connections against the same master (n1), left running by
# the last harness run. Prints one line per measurement; stops our daemons at the end.
#
#   bash scripts/bench-redis.sh [SPLITBRAIN_BINARY] [RESULTS_DIR]
#
# Needs root (the lab), redis-tools and python3. Every loop is bounded: each harness
# run lasts --time-limit, redis-benchmark runs -n requests per test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/splitbrain}
OUT=${2:-results/bench-redis}
SECS=${BENCH_SECONDS:-20}
REQUESTS=${BENCH_REQUESTS:-100000}
[ -x "$BIN" ] || { echo "bench-redis: $BIN not found: build it (cargo build --release -p harness)" >&2; exit 3; }
command -v redis-benchmark >/dev/null || { echo "bench-redis: redis-benchmark missing: apt-get install -y redis-tools" >&2; exit 3; }
mkdir -p "$OUT" /run/lock
export BIN OUT SECS REQUESTS SPLITBRAIN_LAB_LOCK_HELD=1
exec flock -w 900 /run/lock/splitbrain-lab-use.lock bash -c '
set -euo pipefail
"$BIN" lab up >/dev/null
# register-rw: reads and writes only. A cas that finds another value is a `fail`, and
# the runner backs off 50 ms after every fail, which caps the full register mix.
for w in set register register-rw; do
  mix=(); wl=$w
  if [ "$w" = register-rw ]; then wl=register; mix=(--op-mix read=1,write=1); fi
  "$BIN" test --system redis-sentinel --workload "$wl" "${mix[@]}" --nemesis none \
    --concurrency 10 --rate 0 --time-limit "${SECS}s" --recovery-time 1s --seed 1 \
    --leave-db-running --name "bench-redis-$w" --results-dir "$OUT" >/dev/null 2>&1 || true
  python3 - "$OUT/latest/history.jsonl" "$w" <<"PY"
import json, sys
ok, first, last = 0, None, None
for line in open(sys.argv[1]):
    o = json.loads(line)
    p = o.get("process")
    if not isinstance(p, int) or p >= 1_000_000 or o["type"] != "ok":
        continue
    ok += 1
    first = o["time"] if first is None else first
    last = o["time"]
secs = (last - first) / 1e9 if ok > 1 else float("nan")
print(f"splitbrain {sys.argv[2]:11s} c=10: {ok} ok ops in {secs:.1f}s = {ok / secs:.0f} ops/s")
PY
done
redis-benchmark -h 10.77.77.11 -p 6379 -c 10 -n "$REQUESTS" -t set,get,sadd -q \
  | tr "\r" "\n" | grep "requests per second" | sed "s/^/redis-benchmark c=10 /"
for n in /var/lib/splitbrain/lab/work/n*/redis; do
  for p in "$n/sentinel.pid" "$n/redis.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
done
'
