//! Benchmark of the set (lost-writes), dual-master and availability checkers on a
//! synthetic run of `--ops N` client operations (default 1,000,000): 10 clients
//! adding unique elements through a failover with a 5 s dual-master window, a role
//! observation per node every 20 ms, a partition, final reads on five nodes. Writes
//! the history as JSONL once, then runs each checker in its own child process and
//! reports, as a markdown table row, its time from opening the file to the report
//! (read + check), the check alone where it is separate, client ops/s over the
//! whole, and peak RSS. The set and dual-master checkers run streaming in
//! parallel (the library's `check_jsonl`: `blocks::for_each_view_par`, a reader,
//! two scanners and the checker on the 2 cores), streaming on
//! one (`scan::for_each_view`), and as the in-memory implementation they replaced
//! (`tests/reference`, `read_jsonl` then `check`), side by side in the same run,
//! and once more as the new `check(&[Op])` on the parsed history (check time alone,
//! comparable with the old one's).
//! `cargo bench -p checkers --bench history_checkers [-- --ops N] [--keep PATH]`.

#[path = "../tests/reference/dual_master.rs"]
mod ref_dual_master;
#[path = "../tests/reference/lost_writes.rs"]
mod ref_lost_writes;

use checkers::blocks::for_each_view_par;
use checkers::dual_master::DualMasterChecker;
use checkers::history::{read_jsonl, JsonlWriter};
use checkers::lost_writes::SetChecker;
use checkers::scan::{for_each_view, OpView};
use checkers::{availability, Op, OpType, Process};
use serde_json::{json, Value};
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const MS: u64 = 1_000_000;

fn write_history(path: &Path, ops: u64) -> std::io::Result<u64> {
    let f = std::fs::File::create(path)?;
    let mut w = JsonlWriter::new(BufWriter::new(f));
    let mut put = |mut op: Op| w.append(&mut op);
    // Time runs 100 µs per op; n1 is master until 60% of the run, n2 from 55%.
    let span = ops * 100_000;
    let (switch, notice) = (span * 55 / 100, span * 60 / 100);
    let mut acked = Vec::new();
    let mut lost = std::collections::HashSet::new();
    let mut t = 0;
    for i in 0..ops {
        t = i * 100_000;
        let p = Process::Client(i % 10);
        let mut inv = Op::new(t, p, OpType::Invoke, "add", json!(i));
        inv.key = Some("set".into());
        put(inv)?;
        let by = if t < switch || (i % 10 < 5 && t < notice) {
            "n1"
        } else {
            "n2"
        };
        let mut ok = Op::new(t + 50_000, p, OpType::Ok, "add", json!(i));
        ok.key = Some("set".into());
        ok.extra.insert("acked_by".into(), json!(by));
        ok.extra
            .insert("epoch".into(), json!(if by == "n1" { 1 } else { 2 }));
        put(ok)?;
        if by == "n1" && t >= switch {
            lost.insert(i);
        } else {
            acked.push(i);
        }
        if i % 200 == 0 {
            for (n, node) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
                let master = (*node == "n1" && t < notice) || (*node == "n2" && t >= switch);
                let epoch = if t >= switch { 2 } else { 1 };
                let rp = Process::Client(2_000_000 + n as u64);
                let mut a = Op::new(t, rp, OpType::Invoke, "role", Value::Null);
                a.node = Some(node.to_string());
                put(a)?;
                let role = if master { "master" } else { "replica" };
                let mut b = Op::new(
                    t + 1,
                    rp,
                    OpType::Ok,
                    "role",
                    json!({"role": role, "epoch": epoch}),
                );
                b.node = Some(node.to_string());
                put(b)?;
            }
        }
        if i == ops / 2 {
            put(Op::new(
                t,
                Process::Nemesis,
                OpType::Info,
                "start-partition",
                Value::Null,
            ))?;
        }
    }
    put(Op::new(
        t + MS,
        Process::Nemesis,
        OpType::Info,
        "stop-partition",
        Value::Null,
    ))?;
    for n in 0..5u64 {
        let p = Process::Client(1_000_000 + n);
        let mut r = Op::new(t + 2 * MS, p, OpType::Invoke, "read", Value::Null);
        r.key = Some("set".into());
        r.extra.insert("final".into(), json!(true));
        put(r)?;
        let mut ok = Op::new(t + 3 * MS, p, OpType::Ok, "read", json!(acked));
        ok.key = Some("set".into());
        ok.extra.insert("final".into(), json!(true));
        put(ok)?;
    }
    w.get_mut().get_mut().sync_all()?;
    Ok(lost.len() as u64)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn lost_summary(lost: usize) -> String {
    format!("{lost} lost")
}

fn dual_summary(r: &checkers::dual_master::Report) -> String {
    let lost: usize = r
        .intervals
        .iter()
        .flat_map(|i| &i.masters)
        .map(|s| s.writes_lost)
        .sum();
    format!("{} intervals, {lost} lost", r.intervals.len())
}

/// How a streaming row reads the history.
#[derive(Clone, Copy)]
enum Driver {
    /// `scan::for_each_view`.
    OneThread,
    /// `blocks::for_each_view_par` (what `check_jsonl` uses) on the file.
    Reader,
}

fn child(checker: &str, path: &str, ops: u64) {
    let open =
        || BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("history file"));
    let t0 = Instant::now();
    let streaming = [
        (" (streaming, 1 thread)", Driver::OneThread),
        (" (streaming, parallel)", Driver::Reader),
    ]
    .into_iter()
    .find_map(|(suffix, d)| checker.strip_suffix(suffix).map(|n| (n, d)));
    let (entries, check_s, what) = if let Some((name, driver)) = streaming {
        let mut entries = 0usize;
        // The drivers feed the same checker the same entries in the same order.
        let drive = |visit: &mut dyn FnMut(&OpView<'_>)| {
            let r = match driver {
                // The file itself, as `check_jsonl` and the runner's analysis get
                // it: the reading thread's 1 MiB reads need no `BufReader` (one would
                // copy every byte a second time).
                Driver::Reader => {
                    let f = std::fs::File::open(path).expect("history file");
                    for_each_view_par(f, |op| visit(op))
                }
                Driver::OneThread => for_each_view(open(), |op| visit(op)),
            };
            r.expect("history parses")
        };
        let what = match name {
            "lost-writes" => {
                let mut c = SetChecker::new();
                drive(&mut |op| {
                    entries += 1;
                    c.observe(op)
                });
                lost_summary(c.finish().lost_count)
            }
            "dual-master" => {
                let mut c = DualMasterChecker::new();
                drive(&mut |op| {
                    entries += 1;
                    c.observe(op)
                });
                dual_summary(&c.finish())
            }
            "all three, one pass" => {
                // What a set-workload run does (`WorkloadKind::analyse_jsonl`).
                let mut set = SetChecker::new();
                let mut dual = DualMasterChecker::new();
                let mut avail = availability::AvailabilityChecker::new();
                drive(&mut |op| {
                    entries += 1;
                    set.observe(op);
                    dual.observe(op);
                    avail.observe(op);
                });
                let faults = avail.finish(None).faults.len();
                format!(
                    "{}; {}; {faults} faults",
                    lost_summary(set.finish().lost_count),
                    dual_summary(&dual.finish())
                )
            }
            "reading + scanning only" => {
                drive(&mut |_| entries += 1);
                "-".to_string()
            }
            other => panic!("unknown checker {other}"),
        };
        (entries, None, what)
    } else {
        let history = read_jsonl(open()).expect("history parses");
        let t = Instant::now();
        let what = match checker {
            "lost-writes (in memory, before)" => {
                lost_summary(ref_lost_writes::check(&history).lost_count)
            }
            "dual-master (in memory, before)" => dual_summary(&ref_dual_master::check(&history)),
            "lost-writes (in memory, after)" => {
                lost_summary(checkers::lost_writes::check(&history).lost_count)
            }
            "dual-master (in memory, after)" => {
                dual_summary(&checkers::dual_master::check(&history))
            }
            "availability (in memory)" => {
                let r = availability::check(&history, None);
                format!("{} faults", r.faults.len())
            }
            other => panic!("unknown checker {other}"),
        };
        (history.len(), Some(t.elapsed().as_secs_f64()), what)
    };
    let total = t0.elapsed().as_secs_f64();
    let check = check_s.map_or("-".to_string(), |s| format!("{s:.3}"));
    println!(
        "| {checker} | {ops} | {entries} | {total:.3} | {check} | {:.2} M | {:.0} | {what} |",
        ops as f64 / total / 1e6,
        peak_rss_mb()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let ops: u64 = get("--ops")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if let (Some(c), Some(p)) = (get("--child"), get("--path")) {
        child(&c, &p, ops);
        return;
    }
    // `--keep PATH` writes the history there and leaves it (for profiling a child).
    let keep = get("--keep").map(std::path::PathBuf::from);
    let dir = std::env::temp_dir().join(format!("splitbrain-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = keep.clone().unwrap_or_else(|| dir.join("history.jsonl"));
    let lost = write_history(&path, ops).expect("writing the history");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "history: {ops} client ops, {:.0} MB JSONL, {lost} writes accepted by the deposed master\n",
        size as f64 / 1e6
    );
    println!("| checker | client ops | history entries | read + check s | check s | client ops/s | peak RSS MB | found |");
    println!("|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own path");
    for c in [
        "reading + scanning only (streaming, parallel)",
        "reading + scanning only (streaming, 1 thread)",
        "lost-writes (streaming, parallel)",
        "lost-writes (streaming, 1 thread)",
        "lost-writes (in memory, before)",
        "lost-writes (in memory, after)",
        "dual-master (streaming, parallel)",
        "dual-master (streaming, 1 thread)",
        "dual-master (in memory, before)",
        "dual-master (in memory, after)",
        "availability (in memory)",
        "all three, one pass (streaming, parallel)",
    ] {
        let st = Command::new(&exe)
            .args([
                "--child",
                c,
                "--path",
                path.to_str().unwrap_or(""),
                "--ops",
                &ops.to_string(),
            ])
            .status()
            .expect("running the child");
        assert!(st.success(), "{c} failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(p) = keep {
        println!("\nhistory kept at {}", p.display());
    }
}
