//! The dual-master checker as it was before it streamed: the whole history as
//! `&[Op]`, every write cloned. Kept verbatim as the oracle the streaming checker is
//! compared with (tests) and measured against (benchmark).

use checkers::dual_master::{
    Interval, Kind, Report, SameEpochAcks, Side, StaleAck, WriteRef, WRITE_FNS,
};
use checkers::{Op, OpType, Process, Validity};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

const KEEP_WRITES: usize = 50;

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
    let (stale_acks, stale_ack_examples) = stale_acks(&writes);
    let valid = if both + same > 0 || !same_epoch_acks.is_empty() || stale_acks > 0 {
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
        stale_acks,
        stale_ack_examples,
    }
}

/// Stale acknowledgements by brute force (added with the streaming checker's
/// `stale` module, as its oracle): for each write with a key and an epoch, every
/// (node, epoch) of another node and a newer epoch that acknowledged a write to the same key
/// completing before this one's invocation and another invoked after its completion;
/// the first of them by (first completion, node, epoch) is named.
fn stale_acks(writes: &[Write]) -> (usize, Vec<StaleAck>) {
    let (mut count, mut examples) = (0, Vec::new());
    for w in writes {
        let (Some(epoch), Some(key)) = (w.w.epoch, w.w.key.as_ref()) else {
            continue;
        };
        let mut best: Option<(u64, &str, u64)> = None;
        for a in writes {
            let Some(e) = a.w.epoch else { continue };
            if a.w.key.as_ref() != Some(key) || a.node == w.node || e <= epoch {
                continue;
            }
            let group = || {
                writes
                    .iter()
                    .filter(|b| b.node == a.node && b.w.epoch == Some(e) && b.w.key == a.w.key)
            };
            let first_end = group().map(|b| b.end).min().unwrap_or(u64::MAX);
            let last_start = group().map(|b| b.start).max().unwrap_or(0);
            if first_end < w.start && last_start > w.end {
                let cand = (first_end, a.node.as_str(), e);
                if best.is_none_or(|b| cand < b) {
                    best = Some(cand);
                }
            }
        }
        if let Some((_, master, master_epoch)) = best {
            count += 1;
            if examples.len() < KEEP_WRITES {
                examples.push(StaleAck {
                    node: w.node.clone(),
                    write: w.w.clone(),
                    lost: w.lost,
                    master: master.to_string(),
                    master_epoch,
                });
            }
        }
    }
    (count, examples)
}
