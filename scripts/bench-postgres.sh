#!/usr/bin/env bash
# Throughput of PostgreSQL streaming replication on the lab at concurrency 10, the
# harness against pgbench, in one run: holding the lab's lock, it deploys the cluster
# with `splitbrain test` (set workload, no faults, --rate 0, --leave-db-running), then
# points pgbench at the same primary (n1, 10.77.77.11) with the same operation mix
# (90% INSERT of one element, 10% SELECT of the whole set) and with INSERT only; then
# the harness again with INSERT only (`--op-mix add=1`, a fresh cluster) and pgbench's
# INSERT once more, so the like-for-like pair is measured back to back; then takes
# the lab down. Usage: scripts/bench-postgres.sh [MODE] (async, sync-any-1,
# sync-all; default async). Env: SB (the splitbrain binary; measure a release build),
# SECS (default 20).
set -euo pipefail
MODE=${1:-async}
SB=${SB:-./target/release/splitbrain}
SECS=${SECS:-20}
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
PRIMARY=10.77.77.11
[ -x "$SB" ] || { echo "bench-postgres: $SB missing: cargo build --release -p harness --bin splitbrain (or set SB)" >&2; exit 3; }
[ -x "$PGBENCH" ] || { echo "bench-postgres: $PGBENCH missing: apt-get install postgresql-15" >&2; exit 3; }
case "$MODE" in async|sync-any-1|sync-all) ;; *) echo "bench-postgres: unknown mode $MODE" >&2; exit 3 ;; esac
RESULTS=$(mktemp -d /tmp/splitbrain-bench-postgres.XXXXXX)
SCRIPTS=$(mktemp -d /tmp/splitbrain-bench-postgres-sql.XXXXXX)
trap 'rm -rf "$SCRIPTS"' EXIT
cat > "$SCRIPTS/mix.sql" <<'EOF'
\set e random(1000000000, 2000000000)
\set r random(1, 10)
\if :r = 1
SELECT element FROM sb_set WHERE key = 'bench' ORDER BY element;
\else
INSERT INTO sb_set (key, element) VALUES ('bench', :e);
\endif
EOF
cat > "$SCRIPTS/insert.sql" <<'EOF'
\set e random(1000000000, 2000000000)
INSERT INTO sb_set (key, element) VALUES ('bench', :e);
EOF

# Everything below runs under the lab's exclusive-use lock; the CLI is told so.
export SB SECS MODE RESULTS SCRIPTS PGBENCH PRIMARY
harness() {
  local mix=$1 out="$RESULTS/$1"
  mkdir -p "$out"
  echo "== splitbrain test --system postgres:$MODE, set, --op-mix $mix, --rate 0, concurrency 10, ${SECS}s"
  SPLITBRAIN_LAB_LOCK_HELD=1 "$SB" test --system "postgres:$MODE" --workload set --op-mix "$mix" \
    --nemesis none --rate 0 --concurrency 10 --time-limit "${SECS}s" --recovery-time 1s --seed 1 \
    --leave-db-running --results-dir "$out" > "$out/test.out" 2>&1 || true
  python3 - "$out/latest/results.json" "$SECS" <<"PY"
import json, sys
r = json.load(open(sys.argv[1])); s = r["stats"]; secs = float(sys.argv[2])
ok = s["ok"]
print("harness: %d ok of %d ops in %.0f s = %.0f ok ops/s (%s; verdict %s)"
      % (ok, s["ops"], secs, ok / secs, r["environment"]["system_version"], r["valid"]))
PY
}
pgbench() {
  echo "== pgbench -c 10 -j 2 -T $SECS -f $1.sql against $PRIMARY"
  "$PGBENCH" -h "$PRIMARY" -U postgres -n -c 10 -j 2 -T "$SECS" -M extended -f "$SCRIPTS/$1.sql" postgres 2>&1 \
    | grep -E "^(number of transactions actually processed|latency average|tps)"
}
export -f harness pgbench
exec flock /run/lock/splitbrain-lab-use.lock bash -c '
set -euo pipefail
trap "SPLITBRAIN_LAB_LOCK_HELD=1 \"$SB\" lab down >/dev/null 2>&1 || true" EXIT
harness add=9,read=1
pgbench mix
pgbench insert
harness add=1
pgbench insert
'
