#!/usr/bin/env python3
"""Throughput of each zoo mode on the lab at concurrency 10, unthrottled.

For each mode: `splitbrain test --system zoo:MODE --nemesis none --rate 0
--concurrency 10` on the default lab (5 nodes). Ops/s counts client operations that
completed `ok` within the time limit, from the run's history.jsonl. To show the
harness is not the bottleneck, the splitbrain process's CPU time (user + system,
from /proc) is sampled when the clients start and when they stop: its share of one
core during the load phase is printed beside the rate.

Usage: zoo/bench/throughput.py [--splitbrain PATH] [--results DIR]
       [--workload register|set] [--time-limit 10] [--modes m1,m2]
Needs root (the lab). Prints one markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

MODES = ["async-failover", "fixed-master", "semi-sync", "sync", "raft", "lww-ring", "vclock-ring",
         "metadata-master"]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of `pid` (and its reaped children) from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11..14] are utime, stime, cutime, cstime (stat fields 14..17).
    return sum(int(x) for x in fields[11:15]) / TICKS


def run(sb, mode, workload, limit, results):
    name = f"throughput-{mode}-{workload}"
    cmd = [sb, "test", "--system", f"zoo:{mode}", "--workload", workload, "--nemesis", "none",
           "--rate", "0", "--concurrency", "10", "--time-limit", f"{limit}s",
           "--recovery-time", "1s", "--seed", "1", "--results-dir", results, "--name", name]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = end = None
    for line in p.stderr:
        if "running 10 clients" in line:
            start = (time.monotonic(), cpu_seconds(p.pid))
        elif "healed; waiting" in line and start and not end:
            end = (time.monotonic(), cpu_seconds(p.pid))
    code = p.wait()
    if code not in (0, 1) or not (start and end):
        raise SystemExit(f"{mode}: splitbrain exited {code} before the load phase ended")
    latest = os.path.join(results, name, "latest", "history.jsonl")
    ok = 0
    limit_ns = limit * 1_000_000_000
    with open(latest) as f:
        for line in f:
            op = json.loads(line)
            p_ = op.get("process")
            if (isinstance(p_, int) and p_ < 1_000_000 and op.get("type") == "ok"
                    and op.get("time", 0) <= limit_ns):
                ok += 1
    wall = end[0] - start[0]
    cpu = end[1] - start[1]
    return ok / limit, cpu / wall


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--splitbrain", default="target/debug/splitbrain")
    a.add_argument("--results", default="results/throughput")
    a.add_argument("--workload", default="register", choices=["register", "set", "list-append"])
    a.add_argument("--time-limit", type=int, default=10)
    a.add_argument("--modes", default=",".join(MODES))
    o = a.parse_args()
    os.makedirs(o.results, exist_ok=True)
    print(f"| mode | workload | ok ops/s | splitbrain CPU during load (share of one core) |")
    print("|---|---|---|---|")
    for mode in o.modes.split(","):
        rate, cpu = run(o.splitbrain, mode, o.workload, o.time_limit, o.results)
        print(f"| {mode} | {o.workload} | {rate:.0f} | {cpu:.0%} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
