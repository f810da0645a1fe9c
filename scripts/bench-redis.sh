#!/usr/bin/env bash
# Throughput of Redis + Sentinel on the local lab at concurrency 10: the harness and
# redis-benchmark against the same master (n1), interleaved in rounds while holding
# the lab lock, because this shared machine's load moves both by a factor of two
# between minutes. Each round: `splitbrain test --system redis-sentinel --workload
# register --op-mix read=1,write=1` (no faults, --rate 0, leader observation running as
# always), then `redis-benchmark -t set,get` with 10 connections. Then one run each of
# the full register mix and the set workload. Prints one line per measurement (with
# the CPU the harness and n1's redis-server used during the run's middle) and medians;
# stops our daemons at the end.
#
#   bash scripts/bench-redis.sh [SPLITBRAIN_BINARY] [RESULTS_DIR]
#
# Env: BENCH_SECONDS (harness run length, default 10), BENCH_ROUNDS (3),
# BENCH_REQUESTS (redis-benchmark requests per test, default 300000), BENCH_KEEP=1 to
# keep the histories (a round writes ~2 million lines, ~250 MB). Needs root (the lab),
# redis-tools and python3. Measure a release build: a debug build's client loop is
# several times slower and was what the first table measured. Every loop is bounded:
# a harness run lasts --time-limit, redis-benchmark runs -n requests per test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/splitbrain}
OUT=${2:-results/bench-redis}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
REQUESTS=${BENCH_REQUESTS:-300000}
[ -x "$BIN" ] || { echo "bench-redis: $BIN not found: build it (cargo build --release -p harness)" >&2; exit 3; }
command -v redis-benchmark >/dev/null || { echo "bench-redis: redis-benchmark missing: apt-get install -y redis-tools" >&2; exit 3; }
mkdir -p "$OUT" /run/lock
export BIN OUT SECS ROUNDS REQUESTS SPLITBRAIN_LAB_LOCK_HELD=1 BENCH_KEEP=${BENCH_KEEP:-}
exec flock -w 900 /run/lock/splitbrain-lab-use.lock bash -c '
set -euo pipefail
"$BIN" lab up >/dev/null
stop_daemons() {
  for n in /var/lib/splitbrain/lab/work/n*/redis; do
    for p in "$n/sentinel.pid" "$n/redis.pid"; do
      [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
  done
}
trap stop_daemons EXIT
ticks() { awk "{print \$14+\$15}" "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
# One harness run: name, then workload flags. Prints ok ops/s, latency and CPU shares.
harness() {
  local name=$1; shift
  local dir="$OUT/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  "$BIN" test --system redis-sentinel "$@" --nemesis none --concurrency 10 --rate 0 \
    --time-limit "${SECS}s" --recovery-time 1s --max-ops 100000000 --seed 1 \
    --leave-db-running --name "$name" --results-dir "$dir" > "$dir/test.out" 2>&1 &
  local pid=$! h="" i
  # The middle of the run: from the first 2 MB of history, for half the time limit.
  for i in $(seq 600); do
    h=$(ls "$dir"/*/history.jsonl 2>/dev/null | head -1 || true)
    [ -n "$h" ] && [ "$(stat -c %s "$h")" -gt 2000000 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  local rp; rp=$(cat /var/lib/splitbrain/lab/work/n1/redis/redis.pid 2>/dev/null || echo 0)
  local a1 b1 t1 a2 b2 t2
  a1=$(ticks $pid); b1=$(ticks "$rp"); t1=$(date +%s%N)
  sleep $((SECS / 2))
  a2=$(ticks $pid); b2=$(ticks "$rp"); t2=$(date +%s%N)
  wait $pid || true
  h=$(ls "$dir"/*/history.jsonl 2>/dev/null | head -1 || true)
  [ -n "$h" ] || { echo "bench-redis: $name left no history; see $dir/test.out" >&2; return 1; }
  python3 - "$h" "$name" $((a2 - a1)) $((b2 - b1)) $((t2 - t1)) "$HZ" <<"PY"
import re, sys
path, name = sys.argv[1], sys.argv[2]
cpu_sb, cpu_redis, window_ns, hz = (int(x) for x in sys.argv[3:7])
pat = re.compile(rb"\"time\":(\d+),\"process\":(\d+),\"type\":\"(\w+)\"")
started, lat, ok, first, last = {}, [], 0, None, None
with open(path, "rb") as f:
    for line in f:
        m = pat.search(line)
        if not m:
            continue
        t, p, kind = int(m[1]), int(m[2]), m[3]
        if p >= 1_000_000:
            continue
        if kind == b"invoke":
            started[p] = t
            continue
        lat.append(t - started.pop(p, t))
        if kind == b"ok":
            ok += 1
            first = t if first is None else first
            last = t
secs = (last - first) / 1e9 if ok > 1 else float("nan")
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))] / 1e6 if lat else float("nan")
w = window_ns / 1e9
rate = ok / secs
print(f"splitbrain {name:14s} c=10: {rate:7.0f} ok ops/s ({ok} in {secs:.1f} s), "
      f"latency p50 {q(0.5):.3f} ms p99 {q(0.99):.3f} ms; CPU over {w:.1f} s: harness "
      f"{100 * cpu_sb / hz / w:.0f}% of a core ({1e6 * cpu_sb / hz / (rate * w):.1f} us per op), "
      f"n1 redis-server {100 * cpu_redis / hz / w:.0f}%")
PY
  [ -n "$BENCH_KEEP" ] || rm -f "$h"
}
bench() {
  /usr/bin/time -f "%U %S" -o "$OUT/rb.cpu" \
    redis-benchmark -h 10.77.77.11 -p 6379 -c 10 -n "$REQUESTS" -r 100000 -t set,get -q \
    | tr "\r" "\n" | grep "requests per second" > "$OUT/rb.txt"
  python3 - "$OUT/rb.txt" "$OUT/rb.cpu" "$REQUESTS" <<"PY"
import re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+): ([\d.]+) requests per second, p50=([\d.]+)", line)
    if m:
        r[m[1]] = (float(m[2]), float(m[3]))
s, g = r["SET"], r["GET"]
mix = 2 / (1 / s[0] + 1 / g[0])
cpu = sum(float(x) for x in open(sys.argv[2]).read().split()[-2:])
print(f"redis-benchmark       c=10: SET {s[0]:7.0f}/s (p50 {s[1]:.3f} ms), GET {g[0]:7.0f}/s "
      f"(p50 {g[1]:.3f} ms); a 1:1 GET/SET mix at these rates: {mix:7.0f}/s; "
      f"{1e6 * cpu / (2 * int(sys.argv[3])):.1f} us CPU per request")
PY
}
for r in $(seq "$ROUNDS"); do
  echo "-- round $r of $ROUNDS"
  harness "register-rw-$r" --workload register --op-mix read=1,write=1
  bench
done
echo "-- the full mixes"
harness register --workload register
harness set --workload set
'
