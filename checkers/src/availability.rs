//! Availability per fault. A fault is the span from a nemesis `start-<fault>`
//! completion to the next `stop-<fault>` (or `heal-all`, or the end of the history).
//! For each: time from fault start to the first successful write invoked after it,
//! and to steady throughput (a one-second window reaching 80% of the fault-free
//! write rate); the share of client ops invoked during the fault that failed or were
//! indeterminate. With a latency budget this is a verdict: every fault's first write
//! after it must come within the budget (detection + recovery + normal response).
//! Also the latency percentiles of successful client ops over the whole run.
//! One pass ([`AvailabilityChecker`]) keeps a few words per completed client op.

use crate::compact::FastMap;
use crate::dual_master::WRITE_FNS;
use crate::history::{Op, OpType, Process};
use crate::scan::OpView;
use crate::verdict::Validity;
use serde::Serialize;
use std::collections::HashMap;

/// Window over which throughput is measured.
pub const WINDOW_NS: u64 = 1_000_000_000;
/// Share of the fault-free write rate that counts as steady.
pub const STEADY_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// The fault's name (`partition`, `kill`, ...).
    pub fault: String,
    /// Nanoseconds since the test began.
    pub start: u64,
    pub end: u64,
    /// From `start` to the completion of the first `ok` write invoked at or after it;
    /// `None` when no write succeeded afterwards.
    pub first_write_ns: Option<u64>,
    /// From `start` to the beginning of the first window at steady throughput.
    pub steady_ns: Option<u64>,
    pub ops: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Whether `first_write_ns` fits the latency budget (when one was given).
    pub within_budget: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: Validity,
    pub faults: Vec<Fault>,
    /// `ok` writes per second outside every fault.
    pub baseline_writes_per_s: f64,
    pub latency_budget_ns: Option<u64>,
    /// Latency of `ok` client ops (leader observation excluded): p50, p99, max.
    pub latency_p50_ns: Option<u64>,
    pub latency_p99_ns: Option<u64>,
    pub latency_max_ns: Option<u64>,
    /// The longest `first_write_ns` over all faults.
    pub worst_recovery_ns: Option<u64>,
}

struct Done {
    invoke: u64,
    end: u64,
    kind: OpType,
    write: bool,
}

/// A nemesis entry: its `f`, whether it is an invocation, its time.
struct NemesisOp {
    f: String,
    invoke: bool,
    time: u64,
}

fn fault_spans(nemesis: &[NemesisOp], end_of_run: u64) -> Vec<(String, u64, u64)> {
    let mut open: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for op in nemesis {
        if let Some(name) = op.f.strip_prefix("start-") {
            if !op.invoke {
                open.entry(name.to_string()).or_insert(op.time);
            }
        } else if let Some(name) = op.f.strip_prefix("stop-") {
            if !op.invoke {
                if let Some(s) = open.remove(name) {
                    out.push((name.to_string(), s, op.time));
                }
            }
        } else if op.f == "heal-all" {
            for (name, s) in open.drain() {
                out.push((name, s, op.time));
            }
        }
    }
    out.extend(open.into_iter().map(|(n, s)| (n, s, end_of_run)));
    out.sort_by_key(|(n, s, _)| (*s, n.clone()));
    out
}

fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// The availability checker as a single pass: feed it every entry of the history in
/// order with [`AvailabilityChecker::observe`], then [`AvailabilityChecker::finish`].
/// It keeps three words per completed client op and the nemesis entries.
#[derive(Default)]
pub struct AvailabilityChecker {
    end_of_run: u64,
    invoked: FastMap<Process, u64>,
    done: Vec<Done>,
    nemesis: Vec<NemesisOp>,
}

impl AvailabilityChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next entry of the history into account.
    pub fn observe(&mut self, op: &OpView<'_>) {
        self.end_of_run = self.end_of_run.max(op.time);
        match op.process {
            Process::Nemesis => self.nemesis.push(NemesisOp {
                f: op.f.to_string(),
                invoke: op.kind == OpType::Invoke,
                time: op.time,
            }),
            Process::Client(_) if op.f != "role" && !op.is_final => {
                if op.kind == OpType::Invoke {
                    self.invoked.insert(op.process, op.time);
                } else if let Some(t) = self.invoked.remove(&op.process) {
                    self.done.push(Done {
                        invoke: t,
                        end: op.time,
                        kind: op.kind,
                        write: WRITE_FNS.contains(&op.f),
                    });
                }
            }
            Process::Client(_) => {}
        }
    }

    /// The report over everything observed; `latency_budget_ns` turns it into a
    /// verdict.
    pub fn finish(self, latency_budget_ns: Option<u64>) -> Report {
        report(self, latency_budget_ns)
    }
}

/// Judges `history`; `latency_budget_ns` turns the report into a verdict.
pub fn check(history: &[Op], latency_budget_ns: Option<u64>) -> Report {
    let mut c = AvailabilityChecker::new();
    for op in history {
        c.observe(&OpView::of(op));
    }
    c.finish(latency_budget_ns)
}

fn report(c: AvailabilityChecker, latency_budget_ns: Option<u64>) -> Report {
    let AvailabilityChecker {
        end_of_run,
        done,
        nemesis,
        ..
    } = c;
    let spans = fault_spans(&nemesis, end_of_run);
    let in_fault = |t: u64| spans.iter().any(|(_, s, e)| t >= *s && t <= *e);
    let ok_writes: Vec<u64> = {
        let mut v: Vec<u64> = done
            .iter()
            .filter(|d| d.write && d.kind == OpType::Ok)
            .map(|d| d.end)
            .collect();
        v.sort_unstable();
        v
    };
    let first = done.iter().map(|d| d.invoke).min().unwrap_or(0);
    let last = done.iter().map(|d| d.end).max().unwrap_or(0);
    let faulted: u64 = spans
        .iter()
        .map(|(_, s, e)| e.min(&last).saturating_sub(*s.max(&first)))
        .sum();
    let free_ns = last.saturating_sub(first).saturating_sub(faulted);
    let free_writes = ok_writes.iter().filter(|t| !in_fault(**t)).count();
    let baseline = if free_ns > 0 {
        free_writes as f64 / (free_ns as f64 / 1e9)
    } else {
        0.0
    };
    let need = ((baseline * STEADY_SHARE * WINDOW_NS as f64 / 1e9).ceil() as usize).max(1);
    let mut faults = Vec::new();
    for (fault, start, end) in spans {
        let first_write_ns = done
            .iter()
            .filter(|d| d.write && d.kind == OpType::Ok && d.invoke >= start)
            .map(|d| d.end - start)
            .min();
        // The first ok write at or after `start` that opens a steady window.
        let from = ok_writes.partition_point(|t| *t < start);
        let steady_ns = (from..ok_writes.len())
            .find(|&i| {
                let until = ok_writes[i] + WINDOW_NS;
                ok_writes[i..].partition_point(|t| *t < until) >= need
            })
            .map(|i| ok_writes[i] - start);
        let during: Vec<&Done> = done
            .iter()
            .filter(|d| d.invoke >= start && d.invoke <= end)
            .collect();
        let count = |k: OpType| during.iter().filter(|d| d.kind == k).count() as u64;
        faults.push(Fault {
            fault,
            start,
            end,
            first_write_ns,
            steady_ns,
            ops: during.len() as u64,
            failed: count(OpType::Fail),
            indeterminate: count(OpType::Info),
            within_budget: latency_budget_ns.map(|b| first_write_ns.is_some_and(|w| w <= b)),
        });
    }
    let mut lat: Vec<u64> = done
        .iter()
        .filter(|d| d.kind == OpType::Ok)
        .map(|d| d.end - d.invoke)
        .collect();
    lat.sort_unstable();
    let valid = if faults.iter().any(|f| f.within_budget == Some(false)) {
        Validity::Invalid
    } else {
        Validity::Valid
    };
    Report {
        valid,
        worst_recovery_ns: faults.iter().filter_map(|f| f.first_write_ns).max(),
        faults,
        baseline_writes_per_s: baseline,
        latency_budget_ns,
        latency_p50_ns: percentile(&lat, 0.5),
        latency_p99_ns: percentile(&lat, 0.99),
        latency_max_ns: lat.last().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const MS: u64 = 1_000_000;

    fn client(h: &mut Vec<Op>, p: u64, from_ms: u64, to_ms: u64, f: &str, kind: OpType) {
        h.push(Op::new(
            from_ms * MS,
            Process::Client(p),
            OpType::Invoke,
            f,
            json!(1),
        ));
        h.push(Op::new(to_ms * MS, Process::Client(p), kind, f, json!(1)));
    }

    fn nemesis(h: &mut Vec<Op>, ms: u64, f: &str) {
        h.push(Op::new(
            ms * MS,
            Process::Nemesis,
            OpType::Info,
            f,
            Value::Null,
        ));
    }

    /// Writes every 10 ms from 0 to 3 s, none succeeding from 1000 to 1500 ms
    /// (they fail), a partition from 1000 to 2000 ms.
    fn history() -> Vec<Op> {
        let mut h = Vec::new();
        for i in 0..300u64 {
            let t = i * 10;
            if (1000..1500).contains(&t) {
                let kind = if i % 2 == 0 {
                    OpType::Fail
                } else {
                    OpType::Info
                };
                client(&mut h, i, t, t + 5, "add", kind);
            } else {
                client(&mut h, i, t, t + 2, "add", OpType::Ok);
            }
            if t == 1000 {
                nemesis(&mut h, t, "start-partition");
            }
            if t == 2000 {
                nemesis(&mut h, t, "stop-partition");
            }
        }
        h.sort_by_key(|o| o.time);
        h
    }

    #[test]
    fn measures_recovery_and_failure_share() {
        let r = check(&history(), None);
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(r.faults.len(), 1);
        let f = &r.faults[0];
        assert_eq!(
            (f.fault.as_str(), f.start, f.end),
            ("partition", 1000 * MS, 2000 * MS)
        );
        assert_eq!(f.first_write_ns, Some(502 * MS));
        assert_eq!(f.steady_ns, Some(502 * MS));
        assert_eq!((f.ops, f.failed, f.indeterminate), (101, 25, 25));
        assert!(
            (r.baseline_writes_per_s - 100.0).abs() < 2.0,
            "{}",
            r.baseline_writes_per_s
        );
        assert_eq!(r.latency_p99_ns, Some(2 * MS));
        assert_eq!(r.worst_recovery_ns, Some(502 * MS));
    }

    #[test]
    fn budget_makes_a_verdict() {
        assert_eq!(check(&history(), Some(600 * MS)).valid, Validity::Valid);
        let r = check(&history(), Some(400 * MS));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.faults[0].within_budget, Some(false));
    }

    #[test]
    fn unhealed_fault_runs_to_heal_all_and_no_write_after_is_none() {
        let mut h = Vec::new();
        client(&mut h, 1, 0, 1, "write", OpType::Ok);
        nemesis(&mut h, 5, "start-kill");
        client(&mut h, 2, 6, 9, "write", OpType::Fail);
        client(&mut h, 3, 6, 9, "role", OpType::Ok);
        nemesis(&mut h, 20, "heal-all");
        let r = check(&h, Some(MS));
        assert_eq!(r.faults[0].end, 20 * MS);
        assert_eq!(r.faults[0].first_write_ns, None);
        assert_eq!(r.faults[0].ops, 1, "role observations are not client load");
        assert_eq!(r.valid, Validity::Invalid);
    }
}
