//! Dual-master detection. From `role` observations (each node asked for its role every
//! few milliseconds: `value` = `{"role": "master"|"replica", "epoch": n, "master": ..}`,
//! `node` = the node asked) and from write attribution (`acked_by`, `epoch` on every
//! acknowledged write), finds every interval in which two or more nodes acted as
//! master at once, with the epochs each claimed, the writes each accepted in it and
//! which of those are missing from the final reads. Three kinds, worst first:
//! the same epoch claimed by two masters (a safety bug even in consensus systems),
//! two masters that both accepted writes, two nodes that merely claimed master.

use crate::history::{Op, OpType, Process};
use crate::verdict::Validity;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Writes kept per master and interval in the report (all are counted).
const KEEP_WRITES: usize = 50;

/// The functions that change data.
pub const WRITE_FNS: &[&str] = &["add", "write", "cas", "append"];

/// How bad one dual-master interval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Two nodes claimed master; at most one accepted writes meanwhile.
    Claimed,
    /// Two masters both accepted writes during the interval.
    BothAcceptedWrites,
    /// Two masters in the same epoch (term).
    SameTerm,
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteRef {
    /// History index of the `ok` completion.
    pub index: u64,
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub epoch: Option<u64>,
}

/// One master during an interval.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub node: String,
    /// Epochs it claimed during the interval.
    pub epochs: Vec<u64>,
    pub writes_accepted: usize,
    /// How many of the accepted writes are lost (`lost` keeps the first few).
    pub writes_lost: usize,
    pub writes: Vec<WriteRef>,
    /// Accepted writes absent from every final read of their key (`add` and `append`
    /// only: a register's overwritten value is not a loss).
    pub lost: Vec<WriteRef>,
}

/// An interval with two or more masters, times in ns since the test began.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub start: u64,
    pub end: u64,
    pub kind: Kind,
    pub masters: Vec<Side>,
}

/// Two nodes acknowledged writes in the same epoch, observed or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SameEpochAcks {
    pub epoch: u64,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Invalid when two masters both accepted writes or shared an epoch; merely
    /// claiming (an old master that has not noticed yet, accepting nothing) is
    /// reported but valid. Unknown when there were no role observations.
    pub valid: Validity,
    pub observations: usize,
    pub attributed_writes: usize,
    pub intervals: Vec<Interval>,
    pub claimed: usize,
    pub both_accepted_writes: usize,
    pub same_term: usize,
    pub same_epoch_acks: Vec<SameEpochAcks>,
    /// Total time (ns) with two or more masters.
    pub dual_ns: u64,
}

struct Obs {
    time: u64,
    master: bool,
    epoch: Option<u64>,
}

struct Write {
    start: u64,
    end: u64,
    node: String,
    w: WriteRef,
    lost: bool,
}

/// A run of consecutive master observations of one node.
struct Run {
    node: String,
    start: u64,
    end: u64,
    /// (time, epoch) of each observation in the run.
    obs: Vec<(u64, Option<u64>)>,
}

fn role_obs(op: &Op) -> Option<(String, Obs)> {
    if op.f != "role" || op.kind != OpType::Ok {
        return None;
    }
    let node = op.node.clone()?;
    let role = op.value.get("role")?.as_str()?;
    Some((
        node,
        Obs {
            time: op.time,
            master: role == "master",
            epoch: op.value.get("epoch").and_then(Value::as_u64),
        },
    ))
}

/// A value as a hashable key: integers as themselves, anything else as its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Int(i64),
    Json(String),
}

impl ValueKey {
    fn of(v: &Value) -> ValueKey {
        v.as_i64()
            .map_or_else(|| ValueKey::Json(v.to_string()), ValueKey::Int)
    }
}

fn final_values(history: &[Op]) -> HashMap<String, HashSet<ValueKey>> {
    let mut out: HashMap<String, HashSet<ValueKey>> = HashMap::new();
    for op in history {
        if op.f == "read"
            && op.kind == OpType::Ok
            && op.extra.get("final") == Some(&Value::Bool(true))
        {
            if let (Some(k), Some(vs)) = (&op.key, op.value.as_array()) {
                let set = out.entry(k.clone()).or_default();
                set.extend(vs.iter().map(ValueKey::of));
            }
        }
    }
    out
}

fn writes(history: &[Op]) -> Vec<Write> {
    let finals = final_values(history);
    let mut invoked: HashMap<Process, u64> = HashMap::new();
    let mut out = Vec::new();
    for op in history.iter().filter(|o| o.is_client()) {
        if !WRITE_FNS.contains(&op.f.as_str()) {
            continue;
        }
        let proc_key = op.process;
        match op.kind {
            OpType::Invoke => {
                invoked.insert(proc_key, op.time);
            }
            OpType::Ok => {
                let start = invoked.remove(&proc_key).unwrap_or(op.time);
                let Some(node) = op.extra.get("acked_by").and_then(Value::as_str) else {
                    continue;
                };
                let lost = matches!(op.f.as_str(), "add" | "append")
                    && op
                        .key
                        .as_ref()
                        .and_then(|k| finals.get(k))
                        .is_some_and(|s| !s.contains(&ValueKey::of(&op.value)));
                out.push(Write {
                    start,
                    end: op.time,
                    node: node.to_string(),
                    lost,
                    w: WriteRef {
                        index: op.index,
                        f: op.f.clone(),
                        key: op.key.clone(),
                        value: op.value.clone(),
                        epoch: op.extra.get("epoch").and_then(Value::as_u64),
                    },
                });
            }
            _ => {
                invoked.remove(&proc_key);
            }
        }
    }
    out
}

fn runs(history: &[Op]) -> (Vec<Run>, usize) {
    let mut per_node: BTreeMap<String, Vec<Obs>> = BTreeMap::new();
    let mut count = 0;
    for (node, o) in history.iter().filter_map(role_obs) {
        count += 1;
        per_node.entry(node).or_default().push(o);
    }
    let mut out = Vec::new();
    for (node, mut obs) in per_node {
        obs.sort_by_key(|o| o.time);
        let mut cur: Option<Run> = None;
        for o in obs {
            match (&mut cur, o.master) {
                (Some(r), true) => {
                    r.end = o.time;
                    r.obs.push((o.time, o.epoch));
                }
                (None, true) => {
                    cur = Some(Run {
                        node: node.clone(),
                        start: o.time,
                        end: o.time,
                        obs: vec![(o.time, o.epoch)],
                    })
                }
                (_, false) => out.extend(cur.take()),
            }
        }
        out.extend(cur);
    }
    (out, count)
}

/// Finds every dual-master interval in `history`.
pub fn check(history: &[Op]) -> Report {
    let (runs, observations) = runs(history);
    let writes = writes(history);
    // Sweep over run boundaries; closed intervals, so starts sort before ends.
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        events.push((r.start, 0, i));
        events.push((r.end, 1, i));
    }
    events.sort();
    let mut active: BTreeSet<usize> = BTreeSet::new();
    let mut segments: Vec<(u64, u64, BTreeSet<usize>)> = Vec::new();
    let mut open: Option<(u64, BTreeSet<usize>)> = None;
    for (t, kind, i) in events {
        if kind == 0 {
            active.insert(i);
        }
        let nodes: BTreeSet<&str> = active.iter().map(|&j| runs[j].node.as_str()).collect();
        if nodes.len() >= 2 {
            let seg = open.get_or_insert_with(|| (t, BTreeSet::new()));
            seg.1.extend(active.iter().copied());
        }
        if kind == 1 {
            active.remove(&i);
            let nodes: BTreeSet<&str> = active.iter().map(|&j| runs[j].node.as_str()).collect();
            if nodes.len() < 2 {
                if let Some((s, members)) = open.take() {
                    segments.push((s, t, members));
                }
            }
        }
    }
    let mut intervals = Vec::new();
    for (start, end, members) in segments {
        let mut sides: BTreeMap<&str, Side> = BTreeMap::new();
        for &j in &members {
            let r = &runs[j];
            let side = sides.entry(&r.node).or_insert_with(|| Side {
                node: r.node.clone(),
                epochs: Vec::new(),
                writes_accepted: 0,
                writes_lost: 0,
                writes: Vec::new(),
                lost: Vec::new(),
            });
            // The epoch in force at the interval's start, and every one seen inside.
            let before = r.obs.iter().rev().find(|(t, _)| *t <= start);
            for (_, e) in before
                .into_iter()
                .chain(r.obs.iter().filter(|(t, _)| *t > start && *t <= end))
            {
                if let Some(e) = e {
                    if !side.epochs.contains(e) {
                        side.epochs.push(*e);
                    }
                }
            }
        }
        for w in &writes {
            if w.end < start || w.start > end {
                continue;
            }
            if let Some(side) = sides.get_mut(w.node.as_str()) {
                side.writes_accepted += 1;
                if side.writes.len() < KEEP_WRITES {
                    side.writes.push(w.w.clone());
                }
                if w.lost {
                    side.writes_lost += 1;
                    if side.lost.len() < KEEP_WRITES {
                        side.lost.push(w.w.clone());
                    }
                }
            }
        }
        let masters: Vec<Side> = sides.into_values().collect();
        let mut seen_epochs = HashSet::new();
        let same_term = masters
            .iter()
            .flat_map(|s| s.epochs.iter().map(move |e| (*e, s.node.as_str())))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .any(|(e, _)| !seen_epochs.insert(e));
        let writers = masters.iter().filter(|s| s.writes_accepted > 0).count();
        let kind = if same_term {
            Kind::SameTerm
        } else if writers >= 2 {
            Kind::BothAcceptedWrites
        } else {
            Kind::Claimed
        };
        intervals.push(Interval {
            start,
            end,
            kind,
            masters,
        });
    }
    let mut by_epoch: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for w in &writes {
        if let Some(e) = w.w.epoch {
            by_epoch.entry(e).or_default().insert(&w.node);
        }
    }
    let same_epoch_acks: Vec<SameEpochAcks> = by_epoch
        .into_iter()
        .filter(|(_, n)| n.len() > 1)
        .map(|(epoch, n)| SameEpochAcks {
            epoch,
            nodes: n.into_iter().map(String::from).collect(),
        })
        .collect();
    let count = |k: Kind| intervals.iter().filter(|i| i.kind == k).count();
    let (claimed, both, same) = (
        count(Kind::Claimed),
        count(Kind::BothAcceptedWrites),
        count(Kind::SameTerm),
    );
    let valid = if both + same > 0 || !same_epoch_acks.is_empty() {
        Validity::Invalid
    } else if observations == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Report {
        valid,
        observations,
        attributed_writes: writes.len(),
        dual_ns: intervals.iter().map(|i| i.end - i.start).sum(),
        intervals,
        claimed,
        both_accepted_writes: both,
        same_term: same,
        same_epoch_acks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A history builder with explicit times (ms).
    #[derive(Default)]
    struct H(Vec<Op>);

    impl H {
        fn push(&mut self, ms: u64, p: Process, kind: OpType, f: &str, v: Value) -> &mut Op {
            let mut op = Op::new(ms * 1_000_000, p, kind, f, v);
            op.index = self.0.len() as u64;
            self.0.push(op);
            self.0.last_mut().unwrap()
        }
        fn role(&mut self, ms: u64, node: &str, master: bool, epoch: u64) {
            let p = Process::Client(1000 + node.as_bytes()[1] as u64);
            self.push(ms, p, OpType::Invoke, "role", Value::Null).node = Some(node.into());
            let role = if master { "master" } else { "replica" };
            let v = json!({"role": role, "epoch": epoch});
            self.push(ms, p, OpType::Ok, "role", v).node = Some(node.into());
        }
        fn add(&mut self, ms: u64, p: u64, v: i64, by: &str, epoch: u64) {
            let p = Process::Client(p);
            self.push(ms, p, OpType::Invoke, "add", json!(v)).key = Some("s".into());
            let op = self.push(ms + 1, p, OpType::Ok, "add", json!(v));
            op.key = Some("s".into());
            op.extra.insert("acked_by".into(), json!(by));
            op.extra.insert("epoch".into(), json!(epoch));
        }
        fn final_read(&mut self, ms: u64, vs: Value) {
            let p = Process::Client(1_000_000);
            self.push(ms, p, OpType::Invoke, "read", Value::Null);
            let op = self.push(ms, p, OpType::Ok, "read", vs);
            op.key = Some("s".into());
            op.extra.insert("final".into(), json!(true));
        }
    }

    /// n1 master in epoch 1 until 100 ms; n2 takes over in epoch 2 at 60 ms; n1
    /// notices at 120 ms.
    fn failover(h: &mut H) {
        for t in (0..=100).step_by(20) {
            h.role(t, "n1", true, 1);
        }
        h.role(120, "n1", false, 2);
        for t in (0..=40).step_by(20) {
            h.role(t, "n2", false, 1);
        }
        for t in (60..=140).step_by(20) {
            h.role(t, "n2", true, 2);
        }
    }

    #[test]
    fn clean_handover_reports_nothing() {
        let mut h = H::default();
        for t in (0..=100).step_by(20) {
            h.role(t, "n1", true, 1);
            h.role(t, "n2", false, 1);
        }
        h.role(120, "n1", false, 2);
        h.role(120, "n2", true, 2);
        h.add(10, 1, 1, "n1", 1);
        h.add(130, 1, 2, "n2", 2);
        h.final_read(200, json!([1, 2]));
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert!(r.intervals.is_empty());
        assert_eq!((r.observations, r.attributed_writes), (14, 2));
    }

    #[test]
    fn claimed_only_is_reported_but_valid() {
        let mut h = H::default();
        failover(&mut h);
        h.add(10, 1, 1, "n1", 1);
        h.add(70, 2, 2, "n2", 2);
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(r.intervals.len(), 1);
        let i = &r.intervals[0];
        assert_eq!(
            (i.start, i.end, i.kind),
            (60_000_000, 100_000_000, Kind::Claimed)
        );
        assert_eq!(i.masters[0].epochs, vec![1]);
        assert_eq!(i.masters[1].epochs, vec![2]);
        assert_eq!(r.claimed, 1);
    }

    #[test]
    fn both_accepting_writes_is_invalid_and_names_lost_writes() {
        let mut h = H::default();
        failover(&mut h);
        h.add(65, 1, 7, "n1", 1);
        h.add(70, 2, 8, "n2", 2);
        h.add(130, 2, 9, "n2", 2);
        h.final_read(300, json!([8, 9]));
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.both_accepted_writes, 1);
        let i = &r.intervals[0];
        assert_eq!(i.kind, Kind::BothAcceptedWrites);
        assert_eq!(i.masters[0].node, "n1");
        assert_eq!(i.masters[0].writes_accepted, 1);
        assert_eq!(i.masters[0].lost.len(), 1);
        assert_eq!(i.masters[0].writes_lost, 1);
        assert_eq!(i.masters[0].lost[0].value, json!(7));
        assert!(i.masters[1].lost.is_empty());
        assert_eq!(
            i.masters[1].writes_accepted, 1,
            "the write at 130 ms is after"
        );
    }

    #[test]
    fn same_term_is_worst_and_same_epoch_acks_are_found_without_observations() {
        let mut h = H::default();
        for t in (0..=60).step_by(20) {
            h.role(t, "n1", true, 3);
            h.role(t + 5, "n2", true, 3);
        }
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.intervals.len(), 1);
        assert_eq!(r.intervals[0].kind, Kind::SameTerm);
        assert_eq!(r.same_term, 1);

        let mut w = H::default();
        w.add(0, 1, 1, "n1", 4);
        w.add(5, 2, 2, "n3", 4);
        w.add(9, 2, 3, "n3", 5);
        let r = check(&w.0);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(
            r.same_epoch_acks,
            vec![SameEpochAcks {
                epoch: 4,
                nodes: vec!["n1".into(), "n3".into()]
            }]
        );
    }

    #[test]
    fn no_observations_is_unknown() {
        let mut h = H::default();
        h.add(0, 1, 1, "n1", 1);
        assert_eq!(check(&h.0).valid, Validity::Unknown);
    }
}
