#!/usr/bin/env bash
# Throughput of etcd on the local lab at concurrency 10: the harness against curl, both
# sending one put per request through the same JSON gateway over kept-alive HTTP/1.1,
# interleaved in rounds while holding the lab lock (this shared machine's load moves
# both between minutes). Each round: `splitbrain test --system etcd --workload register
# --op-mix write=1` (no faults, --rate 0, leader observation running as always), then
# `curl --parallel --parallel-max 10` with BENCH_PUTS puts spread over the five members.
# Prints one line per measurement; stops our etcd daemons at the end.
#
#   bash scripts/bench-etcd.sh [SPLITBRAIN_BINARY] [RESULTS_DIR]
#
# Env: BENCH_SECONDS (harness run length, default 15), BENCH_ROUNDS (2), BENCH_PUTS
# (curl puts per round, default 5000). Needs root (the lab), curl and python3. Measure a
# release build. Every loop is bounded: a harness run lasts --time-limit, curl sends
# BENCH_PUTS requests with a 300 s cap.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/splitbrain}
OUT=${2:-results/bench-etcd}
SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-2}
PUTS=${BENCH_PUTS:-5000}
[ -x "$BIN" ] || { echo "bench-etcd: $BIN not found: build it (cargo build --release -p harness)" >&2; exit 3; }
command -v curl >/dev/null || { echo "bench-etcd: curl missing: apt-get install -y curl" >&2; exit 3; }
mkdir -p "$OUT" /run/lock
# curl's config: one transfer per put (`next` between them, else curl sends every
# `data` as one body with each URL), keys bench/curl/<i> in base64, over n1..n5.
python3 - "$PUTS" > "$OUT/curl.cfg" <<"PY"
import base64, sys
for i in range(int(sys.argv[1])):
    key = base64.b64encode(f"bench/curl/{i}".encode()).decode()
    if i:
        print("next")
    print(f'url = "http://10.77.77.{11 + i % 5}:2379/v3/kv/put"')
    print('data = "{\\"key\\":\\"%s\\",\\"value\\":\\"eA==\\"}"' % key)
    print('output = "/dev/null"\nsilent\nshow-error\nfail')
PY
export BIN OUT SECS ROUNDS PUTS SPLITBRAIN_LAB_LOCK_HELD=1
exec flock -w 900 /run/lock/splitbrain-lab-use.lock bash -c '
set -euo pipefail
"$BIN" lab up >/dev/null
stop_daemons() {
  for p in /var/lib/splitbrain/lab/work/n*/etcd/etcd.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
}
trap stop_daemons EXIT
for r in $(seq "$ROUNDS"); do
  dir="$OUT/round-$r"; rm -rf "$dir"; mkdir -p "$dir"
  "$BIN" test --system etcd --workload register --op-mix write=1 --nemesis none \
    --concurrency 10 --rate 0 --time-limit "${SECS}s" --recovery-time 1s --seed "$r" \
    --leave-db-running --results-dir "$dir" > "$dir/test.out" 2>&1 || true
  python3 - "$dir/latest/history.jsonl" <<"PY"
import re, sys
pat = re.compile(rb"\"time\":(\d+),\"process\":(\d+),\"type\":\"ok\"")
ok, first, last = 0, None, None
for line in open(sys.argv[1], "rb"):
    m = pat.search(line)
    if m and int(m[2]) < 1_000_000:
        ok += 1
        t = int(m[1])
        first = t if first is None else first
        last = t
secs = (last - first) / 1e9
print(f"splitbrain register writes-only c=10: {ok / secs:6.0f} puts/s ({ok} in {secs:.1f} s)")
PY
  start=$(date +%s%N)
  curl --silent --show-error --parallel --parallel-max 10 --max-time 300 --config "$OUT/curl.cfg"
  end=$(date +%s%N)
  python3 -c "import sys; n, ns = int(sys.argv[1]), int(sys.argv[2]); print(f\"curl --parallel-max 10:             {n / (ns / 1e9):6.0f} puts/s ({n} in {ns / 1e9:.1f} s)\")" "$PUTS" $((end - start))
done
'
