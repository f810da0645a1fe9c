//! Synthetic run folders for the report and serve tests: a set-workload history with a
//! known answer (a partition isolates the master n1 from 5 s to 15 s; n2 takes over at
//! 7 s; every write n1 acknowledged after 5 s is missing from the final reads), its
//! test.json, and optionally the results.json a finished run would have.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

pub const SEED: u64 = 4242;

/// What the synthetic history holds, for assertions.
pub struct Synthetic {
    pub client_ops: usize,
    pub acknowledged: usize,
    pub lost: Vec<i64>,
}

pub fn test_json(name: &str) -> Value {
    let nodes: Vec<Value> = (1..=5)
        .map(|i| {
            json!({"name": format!("n{i}"), "host": format!("10.77.77.{}", 10 + i), "port": 22,
            "user": "root", "workdir": format!("/var/lib/splitbrain/lab/work/n{i}")})
        })
        .collect();
    json!({"name": name, "nodes": nodes, "username": "root", "system": "zoo",
        "zoo_mode": "async-failover", "workload": "set", "nemesis": "partition-master",
        "time_limit": 20.0, "nemesis_interval": 10.0, "recovery_time": 5.0, "op_timeout": 2.0,
        "concurrency": 10, "rate": 0.0, "max_ops": 1000000, "seed": SEED,
        "leave_db_running": false, "lab": true, "harness_version": "0.1.0"})
}

/// Writes `dir/test.json` and `dir/history.jsonl` with `ops` client ops (10% reads)
/// over 20 s, a partition from 5 s to 15 s, and final reads at 25 s.
pub fn write_run(dir: &Path, name: &str, ops: usize) -> Synthetic {
    write_run_with(dir, name, ops, true)
}

/// As [`write_run`]; without `reads`, every client op is an add (the lost-writes
/// checker's stale-read pass costs reads x acknowledged adds).
pub fn write_run_with(dir: &Path, name: &str, ops: usize, reads: bool) -> Synthetic {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("test.json"),
        serde_json::to_string_pretty(&test_json(name)).unwrap(),
    )
    .unwrap();
    let f = std::fs::File::create(dir.join("history.jsonl")).unwrap();
    let mut out = std::io::BufWriter::new(f);
    let mut index = 0u64;
    let mut line = |v: Value| {
        let mut v = v;
        v["index"] = json!(index);
        index += 1;
        writeln!(out, "{v}").unwrap();
    };
    let step = 20_000_000_000u64 / ops as u64;
    let (part_start, part_end, takeover) = (5_000_000_000u64, 15_000_000_000u64, 7_000_000_000u64);
    let mut present = Vec::new();
    let mut syn = Synthetic {
        client_ops: 0,
        acknowledged: 0,
        lost: Vec::new(),
    };
    let mut nemesis_done = (false, false);
    for i in 0..ops {
        let t = i as u64 * step + 1_000;
        if !nemesis_done.0 && t >= part_start {
            line(
                json!({"time": part_start, "process": "nemesis", "type": "invoke", "f": "start-partition",
                "value": {"topology": "isolate n1", "grudge": {"n1": ["n2","n3","n4","n5"]}}}),
            );
            nemesis_done.0 = true;
        }
        if !nemesis_done.1 && t >= part_end {
            line(
                json!({"time": part_end, "process": "nemesis", "type": "info", "f": "stop-partition", "value": {"errors": []}}),
            );
            nemesis_done.1 = true;
        }
        let p = (i % 10) as u64;
        let node = format!("n{}", p % 5 + 1);
        let done = t + step / 2;
        syn.client_ops += 1;
        if reads && i % 10 == 9 {
            line(
                json!({"time": t, "process": p, "type": "invoke", "f": "read", "key": "set", "value": null, "node": node}),
            );
            line(
                json!({"time": done, "process": p, "type": "ok", "f": "read", "key": "set", "value": [], "node": node}),
            );
            continue;
        }
        let e = i as i64;
        line(
            json!({"time": t, "process": p, "type": "invoke", "f": "add", "key": "set", "value": e, "node": node}),
        );
        if i % 97 == 5 {
            line(
                json!({"time": done, "process": p, "type": "fail", "f": "add", "key": "set", "value": e, "node": node, "error": "master unreachable"}),
            );
            continue;
        }
        if i % 101 == 7 {
            line(
                json!({"time": done, "process": p, "type": "info", "f": "add", "key": "set", "value": e, "node": node, "error": "timed out"}),
            );
            continue;
        }
        // n1 stays master for clients sent to it; the others follow n2 after the takeover.
        let by = if node == "n1" || t < takeover {
            "n1"
        } else {
            "n2"
        };
        line(
            json!({"time": done, "process": p, "type": "ok", "f": "add", "key": "set", "value": e, "node": node, "acked_by": by}),
        );
        syn.acknowledged += 1;
        if by == "n1" && t >= part_start {
            syn.lost.push(e);
        } else {
            present.push(e);
        }
    }
    line(
        json!({"time": 20_800_000_000u64, "process": "nemesis", "type": "info", "f": "heal-all", "value": null}),
    );
    for n in 1..=5u64 {
        let p = 1_000_000 + n - 1;
        let node = format!("n{n}");
        line(
            json!({"time": 25_000_000_000u64 + n, "process": p, "type": "invoke", "f": "read", "key": "set", "value": null, "node": node, "final": true}),
        );
        line(
            json!({"time": 25_100_000_000u64 + n, "process": p, "type": "ok", "f": "read", "key": "set", "value": present, "node": node, "final": true}),
        );
    }
    out.flush().unwrap();
    syn
}

/// The splitbrain binary of this build.
pub fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_splitbrain"))
}
