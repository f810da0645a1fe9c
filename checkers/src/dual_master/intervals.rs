//! The report half of the dual-master checker: from the role observations and
//! attributed writes [`DualMasterChecker`] collected, the runs of master
//! observations per node, the sweep that finds every interval with two or more
//! masters, what each master accepted and lost in it, its kind, and the epochs
//! in which two nodes acknowledged writes.

use super::{
    DualMasterChecker, Finals, Interval, Kind, Obs, Report, SameEpochAcks, Side, Write, WriteRef,
    KEEP_WRITES, OTHER_VALUE, WRITE_FNS,
};
use crate::verdict::Validity;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A run of consecutive master observations of one node.
struct Run {
    node: u32,
    start: u64,
    end: u64,
    /// (time, epoch) of each observation in the run.
    obs: Vec<(u64, Option<u64>)>,
}

impl DualMasterChecker {
    fn runs(&self) -> Vec<Run> {
        let mut ids: Vec<u32> = (0..self.obs.len() as u32).collect();
        ids.sort_by_key(|&id| self.nodes.name(id));
        let mut out = Vec::new();
        for id in ids {
            let mut obs: Vec<&Obs> = self.obs[id as usize].iter().collect();
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
                            node: id,
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
        out
    }

    pub(super) fn write_ref(&self, w: &Write) -> WriteRef {
        WriteRef {
            index: w.index,
            f: WRITE_FNS[w.f as usize].to_string(),
            key: self.keys.name(w.key).map(String::from),
            value: self
                .value(w)
                .map_or_else(|| Value::from(w.value), Value::clone),
            epoch: w.epoch(),
        }
    }

    /// The written value when it is no integer (`None`: it is `w.value`).
    fn value(&self, w: &Write) -> Option<&Value> {
        if w.flags & OTHER_VALUE == 0 {
            return None;
        }
        usize::try_from(w.value)
            .ok()
            .and_then(|i| self.others.get(i))
    }

    /// Whether `w` is absent from every final read of its key; `finals` holds each
    /// key id's final reads.
    pub(super) fn lost(&self, w: &Write, finals: &[Option<&Finals>]) -> bool {
        matches!(WRITE_FNS.get(w.f as usize), Some(&("add" | "append")))
            && finals
                .get(w.key as usize)
                .copied()
                .flatten()
                .is_some_and(|s| match self.value(w) {
                    None => !s.contains_int(w.value),
                    Some(v) => !s.contains_other(v),
                })
    }

    /// The report over everything observed.
    pub fn finish(self) -> Report {
        let runs = self.runs();
        let name = |id: u32| self.nodes.name(id).unwrap_or_default();
        // Sweep over run boundaries; closed intervals, so starts sort before ends.
        let mut events: Vec<(u64, u8, usize)> = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            events.push((r.start, 0, i));
            events.push((r.end, 1, i));
        }
        events.sort();
        let distinct = |active: &BTreeSet<usize>| {
            active
                .iter()
                .map(|&j| runs[j].node)
                .collect::<BTreeSet<u32>>()
                .len()
        };
        let mut active: BTreeSet<usize> = BTreeSet::new();
        let mut segments: Vec<(u64, u64, BTreeSet<usize>)> = Vec::new();
        let mut open: Option<(u64, BTreeSet<usize>)> = None;
        for (t, kind, i) in events {
            if kind == 0 {
                active.insert(i);
            }
            if distinct(&active) >= 2 {
                let seg = open.get_or_insert_with(|| (t, BTreeSet::new()));
                seg.1.extend(active.iter().copied());
            }
            if kind == 1 {
                active.remove(&i);
                if distinct(&active) < 2 {
                    if let Some((s, members)) = open.take() {
                        segments.push((s, t, members));
                    }
                }
            }
        }
        // Each key id's final reads, looked up once rather than per write.
        let finals: Vec<Option<&Finals>> = (0..self.keys.len() as u32)
            .map(|k| self.finals.get(&k))
            .collect();
        let mut intervals = Vec::new();
        for (start, end, members) in segments {
            let mut sides: BTreeMap<&str, (u32, Side)> = BTreeMap::new();
            for &j in &members {
                let r = &runs[j];
                let (_, side) = sides.entry(name(r.node)).or_insert_with(|| {
                    let side = Side {
                        node: name(r.node).to_string(),
                        epochs: Vec::new(),
                        writes_accepted: 0,
                        writes_lost: 0,
                        writes: Vec::new(),
                        lost: Vec::new(),
                    };
                    (r.node, side)
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
            // Each node id's side, by position (node ids are dense).
            let mut by_node: Vec<Option<&mut Side>> = Vec::new();
            by_node.resize_with(self.nodes.len(), || None);
            for (id, side) in sides.values_mut() {
                if let Some(slot) = by_node.get_mut(*id as usize) {
                    *slot = Some(side);
                }
            }
            for w in &self.writes {
                if w.end < start || w.start > end {
                    continue;
                }
                if let Some(Some(side)) = by_node.get_mut(w.node as usize) {
                    side.writes_accepted += 1;
                    if side.writes.len() < KEEP_WRITES {
                        side.writes.push(self.write_ref(w));
                    }
                    if self.lost(w, &finals) {
                        side.writes_lost += 1;
                        if side.lost.len() < KEEP_WRITES {
                            side.lost.push(self.write_ref(w));
                        }
                    }
                }
            }
            let masters: Vec<Side> = sides.into_values().map(|(_, s)| s).collect();
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
        for &(e, node) in &self.epoch_nodes {
            by_epoch.entry(e).or_default().insert(name(node));
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
        let (stale_acks, stale_ack_examples) = self.stale_acks(&finals);
        let valid = if both + same > 0 || !same_epoch_acks.is_empty() || stale_acks > 0 {
            Validity::Invalid
        } else if self.observations == 0 {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        Report {
            valid,
            observations: self.observations,
            attributed_writes: self.writes.len(),
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
}
