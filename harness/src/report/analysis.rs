//! What the reports compute from a history, beyond the checkers: client ops paired
//! from invoke to completion, latency quantiles, throughput over time, the fault
//! intervals the nemesis recorded, availability during each fault, and which node
//! acknowledged writes when. One pass over the history plus sorts; no I/O.

use checkers::{Op, OpType, Process};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// How a client op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
    /// No completion in the history (the controller stopped first).
    Open,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
            Outcome::Open => "open",
        }
    }
}

/// One client operation, invoke to completion.
#[derive(Debug, Clone)]
pub struct Paired {
    pub process: u64,
    pub f: String,
    pub node: Option<String>,
    pub invoke_index: u64,
    pub complete_index: Option<u64>,
    /// Seconds since the test began.
    pub start: f64,
    pub end: Option<f64>,
    pub outcome: Outcome,
    /// The invoke's value (the argument).
    pub argument: Value,
    pub acked_by: Option<String>,
    pub error: Option<String>,
    pub is_final: bool,
}

impl Paired {
    pub fn latency_ms(&self) -> Option<f64> {
        self.end.map(|e| (e - self.start) * 1e3)
    }
}

/// One fault interval, from the nemesis ops in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpan {
    /// `partition`, `clock`, ... (the `f` without `start-`).
    pub kind: String,
    pub label: String,
    pub start: f64,
    /// When the heal completed; `None` if the history ends first.
    pub end: Option<f64>,
}

/// Ops and outcomes during one fault, and how long writes took to work again.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    pub fault: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Seconds from the fault's start to the first write acknowledged after it.
    pub first_ok_write_after_start: Option<f64>,
    /// Seconds from the heal to the first write acknowledged after it.
    pub first_ok_write_after_heal: Option<f64>,
}

/// Latency quantiles of one op function, over its completed ops (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantiles {
    pub f: String,
    pub count: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Everything the reports draw from the history.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub ops: Vec<Paired>,
    pub faults: Vec<FaultSpan>,
    pub availability: Vec<Availability>,
    pub quantiles: Vec<Quantiles>,
    /// Seconds from the first to the last op of the history.
    pub duration: f64,
    /// Number of history entries.
    pub history_len: usize,
    /// Completions that had no invocation (reported, not fatal).
    pub orphans: usize,
    /// `role` observations (leader checks): judged by the dual-master checker, left
    /// out of the client ops here.
    pub observations: usize,
    /// Clock offsets per node as the nemesis read them (`clock-offsets` ops).
    pub clock: Vec<ClockReading>,
}

/// One node's clock offset at one moment, as the system's processes see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockReading {
    /// Seconds since the test began.
    pub time: f64,
    pub node: String,
    pub offset_s: f64,
}

/// The function of leader observations, kept out of the client ops.
pub const OBSERVATION: &str = "role";

const WRITE_FNS: &[&str] = &["add", "write", "cas", "append"];

pub fn is_write(f: &str) -> bool {
    WRITE_FNS.contains(&f)
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fault_label(op: &Op) -> String {
    let kind = op.f.trim_start_matches("start-");
    let what = op
        .value
        .get("topology")
        .or_else(|| op.value.get("description"));
    match what.and_then(Value::as_str) {
        Some(t) => format!("{kind}: {t}"),
        None => kind.to_string(),
    }
}

/// Pairs, measures and summarises `history`.
pub fn analyse(history: &[Op]) -> Analysis {
    let mut a = Analysis {
        history_len: history.len(),
        ..Analysis::default()
    };
    let mut open: HashMap<u64, usize> = HashMap::new();
    // start-X invoke waiting for its stop-X info, by kind.
    let mut pending: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for op in history {
        let t = secs(op.time);
        a.duration = a.duration.max(t);
        match op.process {
            Process::Nemesis => {
                if op.f == "clock-offsets" {
                    if let Some(m) = op.value.get("offsets").and_then(Value::as_object) {
                        for (node, r) in m {
                            if let Some(off) = r.get("offset_s").and_then(Value::as_f64) {
                                a.clock.push(ClockReading {
                                    time: t,
                                    node: node.clone(),
                                    offset_s: off,
                                });
                            }
                        }
                    }
                } else if let Some(kind) = op.f.strip_prefix("start-") {
                    if op.kind == OpType::Invoke || !pending.contains_key(kind) {
                        pending
                            .entry(kind.to_string())
                            .or_insert((t, fault_label(op)));
                    }
                } else if let Some(kind) = op.f.strip_prefix("stop-") {
                    if op.kind != OpType::Invoke {
                        if let Some((start, label)) = pending.remove(kind) {
                            a.faults.push(FaultSpan {
                                kind: kind.to_string(),
                                label,
                                start,
                                end: Some(t),
                            });
                        }
                    }
                }
            }
            Process::Client(_) if op.f == OBSERVATION => {
                a.observations += usize::from(op.kind == OpType::Invoke);
            }
            Process::Client(p) => {
                if op.kind == OpType::Invoke {
                    open.insert(p, a.ops.len());
                    a.ops.push(Paired {
                        process: p,
                        f: op.f.clone(),
                        node: op.node.clone(),
                        invoke_index: op.index,
                        complete_index: None,
                        start: t,
                        end: None,
                        outcome: Outcome::Open,
                        argument: op.value.clone(),
                        acked_by: None,
                        error: None,
                        is_final: op.extra.get("final").and_then(Value::as_bool) == Some(true),
                    });
                    continue;
                }
                let Some(i) = open.remove(&p) else {
                    a.orphans += 1;
                    continue;
                };
                let o = &mut a.ops[i];
                o.complete_index = Some(op.index);
                o.end = Some(t);
                o.outcome = match op.kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                o.acked_by = op
                    .extra
                    .get("acked_by")
                    .and_then(Value::as_str)
                    .map(String::from);
                o.error = op
                    .extra
                    .get("error")
                    .and_then(Value::as_str)
                    .map(String::from);
                if o.node.is_none() {
                    o.node = op.node.clone();
                }
            }
        }
    }
    for (kind, (start, label)) in pending {
        a.faults.push(FaultSpan {
            kind,
            label,
            start,
            end: None,
        });
    }
    a.faults.sort_by(|x, y| {
        x.start
            .partial_cmp(&y.start)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    a.quantiles = quantiles(&a.ops);
    a.availability = availability(&a.ops, &a.faults, a.duration);
    a
}

fn quantiles(ops: &[Paired]) -> Vec<Quantiles> {
    let mut by_f: BTreeMap<&str, Vec<&Paired>> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.is_final) {
        by_f.entry(o.f.as_str()).or_default().push(o);
    }
    by_f.into_iter()
        .map(|(f, os)| {
            let mut lat: Vec<f64> = os.iter().filter_map(|o| o.latency_ms()).collect();
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let n = |k: Outcome| os.iter().filter(|o| o.outcome == k).count();
            Quantiles {
                f: f.to_string(),
                count: os.len(),
                ok: n(Outcome::Ok),
                fail: n(Outcome::Fail),
                info: n(Outcome::Info),
                p50: quantile(&lat, 0.5),
                p90: quantile(&lat, 0.9),
                p99: quantile(&lat, 0.99),
                max: lat.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

fn availability(ops: &[Paired], faults: &[FaultSpan], duration: f64) -> Vec<Availability> {
    // Completion times of acknowledged writes, sorted, for the "first after" searches.
    let mut ok_writes: Vec<f64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && is_write(&o.f))
        .filter_map(|o| o.end)
        .collect();
    ok_writes.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let first_after = |t: f64| {
        let i = ok_writes.partition_point(|&w| w < t);
        ok_writes.get(i).map(|w| w - t)
    };
    faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let end = f.end.unwrap_or(duration);
            let during: Vec<&Paired> = ops
                .iter()
                .filter(|o| !o.is_final && o.end.is_some_and(|e| e >= f.start && e <= end))
                .collect();
            let n = |k: Outcome| during.iter().filter(|o| o.outcome == k).count();
            Availability {
                fault: i,
                ok: n(Outcome::Ok),
                fail: n(Outcome::Fail),
                info: n(Outcome::Info),
                first_ok_write_after_start: first_after(f.start),
                first_ok_write_after_heal: f.end.and_then(first_after),
            }
        })
        .collect()
}

/// Completions per time bucket, by outcome: `(bucket width s, [(ok, fail, info)])`.
pub fn throughput(ops: &[Paired], duration: f64, buckets: usize) -> (f64, Vec<[usize; 3]>) {
    let width = (duration / buckets.max(1) as f64).max(0.1);
    let n = ((duration / width).ceil() as usize).max(1);
    let mut out = vec![[0usize; 3]; n];
    for o in ops.iter().filter(|o| !o.is_final) {
        let (Some(e), k) = (o.end, o.outcome) else {
            continue;
        };
        let b = ((e / width) as usize).min(n - 1);
        match k {
            Outcome::Ok => out[b][0] += 1,
            Outcome::Fail => out[b][1] += 1,
            Outcome::Info => out[b][2] += 1,
            Outcome::Open => {}
        }
    }
    (width, out)
}

/// A span in which one node acknowledged writes as master (acks less than
/// [`ACK_GAP`] apart are one span), from the `acked_by` field of `ok` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct AckSpan {
    pub node: String,
    pub start: f64,
    pub end: f64,
    pub writes: usize,
}

/// A window `(start, end, nodes)` in which several nodes acknowledged writes.
pub type Overlap = (f64, f64, Vec<String>);

/// Acks further apart than this (seconds) start a new span.
pub const ACK_GAP: f64 = 1.0;

/// Per-node acknowledgement spans, and the windows in which two or more nodes
/// acknowledged writes at once (`(start, end, nodes)`): evidence of two masters.
pub fn ack_spans(ops: &[Paired]) -> (Vec<AckSpan>, Vec<Overlap>) {
    let mut by_node: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && is_write(&o.f))
    {
        if let (Some(by), Some(end)) = (&o.acked_by, o.end) {
            by_node.entry(by.as_str()).or_default().push(end);
        }
    }
    let mut spans = Vec::new();
    for (node, mut ts) in by_node {
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let mut cur: Option<AckSpan> = None;
        for t in ts {
            match &mut cur {
                Some(s) if t - s.end <= ACK_GAP => {
                    s.end = t;
                    s.writes += 1;
                }
                _ => {
                    spans.extend(cur.take());
                    cur = Some(AckSpan {
                        node: node.to_string(),
                        start: t,
                        end: t,
                        writes: 1,
                    });
                }
            }
        }
        spans.extend(cur);
    }
    let mut overlaps = Vec::new();
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            if x.node != y.node && x.start <= y.end && y.start <= x.end {
                overlaps.push((
                    x.start.max(y.start),
                    x.end.min(y.end),
                    vec![x.node.clone(), y.node.clone()],
                ));
            }
        }
    }
    overlaps.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    (spans, overlaps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(index: u64, ms: u64, process: Process, kind: OpType, f: &str, value: Value) -> Op {
        let mut o = Op::new(ms * 1_000_000, process, kind, f, value);
        o.index = index;
        o
    }

    #[test]
    fn pairs_faults_quantiles_and_availability() {
        use OpType::*;
        let c = Process::Client;
        let n = Process::Nemesis;
        let mut ack = op(1, 10, c(0), Ok, "add", json!(1));
        ack.extra.insert("acked_by".into(), json!("n1"));
        let h = vec![
            op(0, 0, c(0), Invoke, "add", json!(1)),
            ack,
            op(
                2,
                100,
                n,
                Invoke,
                "start-partition",
                json!({"topology": "isolate n1"}),
            ),
            op(3, 120, c(1), Invoke, "add", json!(2)),
            op(
                4,
                150,
                n,
                Info,
                "start-partition",
                json!({"topology": "isolate n1"}),
            ),
            op(5, 320, c(1), Info, "add", json!(2)),
            op(6, 400, c(0), Invoke, "add", json!(3)),
            op(7, 420, c(0), Fail, "add", json!(3)),
            op(8, 500, n, Invoke, "stop-partition", Value::Null),
            op(9, 600, n, Info, "stop-partition", Value::Null),
            op(10, 700, c(2), Invoke, "add", json!(4)),
            op(11, 740, c(2), Ok, "add", json!(4)),
            op(12, 800, c(3), Invoke, "read", Value::Null),
            op(14, 810, c(7), Invoke, "role", Value::Null),
            op(15, 811, c(7), Ok, "role", json!({"role": "master"})),
            op(13, 900, c(4), Ok, "read", Value::Null),
        ];
        let a = analyse(&h);
        assert_eq!(a.ops.len(), 5);
        assert_eq!(a.orphans, 1);
        assert_eq!(a.observations, 1);
        assert_eq!(a.ops[0].acked_by.as_deref(), Some("n1"));
        assert_eq!(a.ops[1].outcome, Outcome::Info);
        assert!((a.ops[1].latency_ms().unwrap() - 200.0).abs() < 1e-6);
        assert_eq!(a.ops[4].outcome, Outcome::Open);
        assert_eq!(
            a.faults,
            vec![FaultSpan {
                kind: "partition".into(),
                label: "partition: isolate n1".into(),
                start: 0.1,
                end: Some(0.6),
            }]
        );
        let av = &a.availability[0];
        assert_eq!((av.ok, av.fail, av.info), (0, 1, 1));
        assert!((av.first_ok_write_after_start.unwrap() - 0.64).abs() < 1e-9);
        assert!((av.first_ok_write_after_heal.unwrap() - 0.14).abs() < 1e-9);
        let add = &a.quantiles[0];
        assert_eq!(
            (add.f.as_str(), add.count, add.ok, add.fail, add.info),
            ("add", 4, 2, 1, 1)
        );
        assert!((add.max - 200.0).abs() < 1e-6);
        let (w, b) = throughput(&a.ops, a.duration, 9);
        assert!((w - 0.1).abs() < 1e-9);
        assert_eq!(b.iter().map(|x| x[0]).sum::<usize>(), 2);
        assert_eq!((b[3], b[4]), ([0, 0, 1], [0, 1, 0]));
    }

    #[test]
    fn an_unhealed_fault_runs_to_the_end() {
        let h = vec![
            op(
                0,
                5,
                Process::Nemesis,
                OpType::Invoke,
                "start-clock",
                json!({"description": "bump n2 +30s"}),
            ),
            op(1, 50, Process::Client(0), OpType::Invoke, "add", json!(1)),
            op(
                2,
                60,
                Process::Nemesis,
                OpType::Info,
                "clock-offsets",
                json!({"offsets": {"n1": {"offset_s": 0.0}, "n2": {"offset_s": 30.0, "uncertainty_s": 0.1}}, "errors": []}),
            ),
        ];
        let a = analyse(&h);
        assert_eq!(a.faults[0].end, None);
        assert_eq!(a.faults[0].label, "clock: bump n2 +30s");
        assert_eq!(a.clock.len(), 2);
        assert_eq!(
            (a.clock[1].node.as_str(), a.clock[1].offset_s),
            ("n2", 30.0)
        );
        assert!((a.clock[1].time - 0.06).abs() < 1e-9);
        assert_eq!(a.availability[0].first_ok_write_after_start, None);
    }

    #[test]
    fn overlapping_acknowledgers_are_found() {
        let mut h = Vec::new();
        let mut i = 0;
        // n1 acks 0..1 s and 2.5..3 s; n2 from 2 s to 4 s; n1 again at 9 s.
        for (by, ms) in [
            ("n1", 0),
            ("n1", 500),
            ("n1", 1000),
            ("n2", 2000),
            ("n1", 2500),
            ("n2", 2800),
            ("n1", 3000),
            ("n2", 3500),
            ("n2", 4000),
            ("n1", 9000),
        ] {
            h.push(op(
                i,
                ms,
                Process::Client(i),
                OpType::Invoke,
                "add",
                json!(i),
            ));
            let mut ok = op(
                i + 1,
                ms + 1,
                Process::Client(i),
                OpType::Ok,
                "add",
                json!(i),
            );
            ok.extra.insert("acked_by".into(), json!(by));
            h.push(ok);
            i += 2;
        }
        let a = analyse(&h);
        let (spans, overlaps) = ack_spans(&a.ops);
        let n1: Vec<_> = spans
            .iter()
            .filter(|s| s.node == "n1")
            .map(|s| s.writes)
            .collect();
        assert_eq!(n1, vec![3, 2, 1]);
        assert_eq!(overlaps.len(), 1);
        assert!((overlaps[0].0 - 2.501).abs() < 1e-9 && (overlaps[0].1 - 3.001).abs() < 1e-9);
        assert_eq!(overlaps[0].2, vec!["n1".to_string(), "n2".to_string()]);
    }
}
