//! Stale acknowledgements: a write one node acknowledged as master of an older epoch
//! while another node was master of a newer one throughout. The evidence is the
//! writes alone: node Y acknowledged writes to the same key in epoch E' both before
//! the write was invoked and after it completed, so Y was master of E' the whole
//! time, and node X acknowledged the write in epoch E < E' meanwhile. Role
//! observations can miss such a moment (a master woken from a pause may act for a
//! few milliseconds before it hears of its successor, between two polls); the
//! acknowledgements cannot.
//!
//! What it assumes of the system (as the same-epoch check does): an acknowledgement
//! names the master that accepted the write and that master's epoch, epochs only
//! grow, and a node is master of one epoch in one unbroken stretch (as with terms).
//! Only the older epoch's write is flagged: the newer master's writes in the same
//! moments are what a sound failover gives, and an older master that was frozen
//! in between spans them with its own stretch. Keys keep sharded systems apart:
//! two groups' masters accepting writes at once to different keys is no finding.

use super::{DualMasterChecker, Finals, StaleAck, Write, KEEP_WRITES};
use crate::compact::{FastHash, FastMap};
use std::collections::HashSet;

/// One node's acknowledgements of one key in one epoch: the first completion and
/// the last invocation. The node was master of that epoch between the two, and no
/// write of the group lies inside another group's window unless the windows overlap.
#[derive(Clone, Copy)]
struct Span {
    first_end: u64,
    last_start: u64,
}

impl Span {
    fn of(w: &Write) -> Span {
        Span {
            first_end: w.end,
            last_start: w.start,
        }
    }

    fn absorb(&mut self, o: Span) {
        self.first_end = self.first_end.min(o.first_end);
        self.last_start = self.last_start.max(o.last_start);
    }
}

/// A group: (key id, node id, epoch).
type Group = (u32, u32, u64);

/// A window that spans some time.
struct Window {
    node: u32,
    epoch: u64,
    first_end: u64,
    last_start: u64,
}

/// The windows of one key in order of `first_end` (then node name, then epoch),
/// and the running maximum of `last_start`, which bounds the backward scan.
struct KeyWindows {
    windows: Vec<Window>,
    max_last_start: Vec<u64>,
}

impl DualMasterChecker {
    /// How many writes were acknowledged stale, and the first [`KEEP_WRITES`] of them
    /// in history order.
    pub(super) fn stale_acks(&self, finals: &[Option<&Finals>]) -> (usize, Vec<StaleAck>) {
        let spans = self.spans();
        let suspects = suspects(&spans);
        if suspects.is_empty() {
            return (0, Vec::new());
        }
        let by_key = self.windows(&spans);
        let name = |id: u32| self.nodes.name(id).unwrap_or_default();
        let (mut count, mut examples) = (0, Vec::new());
        let mut last: Option<(Group, bool)> = None;
        for w in &self.writes {
            let Some(epoch) = w.epoch() else { continue };
            let group = (w.key, w.node, epoch);
            let suspect = match last {
                Some((g, s)) if g == group => s,
                _ => {
                    let s = suspects.contains(&group);
                    last = Some((group, s));
                    s
                }
            };
            if !suspect {
                continue;
            }
            let Some(Some(kw)) = by_key.get(w.key as usize) else {
                continue;
            };
            // Candidates began (first completion) before the write was invoked.
            let mut i = kw.windows.partition_point(|g| g.first_end < w.start);
            let mut best: Option<&Window> = None;
            while i > 0 && kw.max_last_start[i - 1] > w.end {
                i -= 1;
                let g = &kw.windows[i];
                if g.last_start > w.end && g.node != w.node && g.epoch > epoch {
                    // The earliest such window (the order sorts ties by name, epoch).
                    best = Some(g);
                }
            }
            let Some(g) = best else { continue };
            count += 1;
            if examples.len() < KEEP_WRITES {
                examples.push(StaleAck {
                    node: name(w.node).to_string(),
                    write: self.write_ref(w),
                    lost: self.lost(w, finals),
                    master: name(g.node).to_string(),
                    master_epoch: g.epoch,
                });
            }
        }
        (count, examples)
    }

    /// Every group's span, in one pass that looks a group up only when it differs
    /// from the previous write's (consecutive writes mostly share theirs).
    fn spans(&self) -> FastMap<Group, Span> {
        let mut spans: FastMap<Group, Span> = FastMap::default();
        let mut cur: Option<(Group, Span)> = None;
        for w in &self.writes {
            let Some(epoch) = w.epoch() else { continue };
            let group = (w.key, w.node, epoch);
            match &mut cur {
                Some((g, s)) if *g == group => s.absorb(Span::of(w)),
                _ => {
                    if let Some((g, s)) = cur.take() {
                        merge(&mut spans, g, s);
                    }
                    cur = Some((group, Span::of(w)));
                }
            }
        }
        if let Some((g, s)) = cur {
            merge(&mut spans, g, s);
        }
        spans
    }

    /// Per key id, its windows that span some time (`None` for a key with none).
    fn windows(&self, spans: &FastMap<Group, Span>) -> Vec<Option<KeyWindows>> {
        let mut by_key: Vec<Vec<Window>> = Vec::new();
        by_key.resize_with(self.keys.len(), Vec::new);
        for (&(key, node, epoch), s) in spans {
            if s.first_end < s.last_start {
                if let Some(v) = by_key.get_mut(key as usize) {
                    v.push(Window {
                        node,
                        epoch,
                        first_end: s.first_end,
                        last_start: s.last_start,
                    });
                }
            }
        }
        let name = |id: u32| self.nodes.name(id).unwrap_or_default();
        by_key
            .into_iter()
            .map(|mut windows| {
                if windows.is_empty() {
                    return None;
                }
                windows.sort_by(|a, b| {
                    (a.first_end, name(a.node), a.epoch).cmp(&(b.first_end, name(b.node), b.epoch))
                });
                let mut max = 0;
                let max_last_start = windows
                    .iter()
                    .map(|g| {
                        max = max.max(g.last_start);
                        max
                    })
                    .collect();
                Some(KeyWindows {
                    windows,
                    max_last_start,
                })
            })
            .collect()
    }
}

fn merge(spans: &mut FastMap<Group, Span>, g: Group, s: Span) {
    spans.entry(g).and_modify(|t| t.absorb(s)).or_insert(s);
}

/// The groups one of whose writes may lie inside another node's window of a newer
/// epoch on the same key: a write `w` of group `h` inside window `g` needs
/// `g.first_end < w.start <= h.last_start` and `h.first_end <= w.end < g.last_start`.
/// Only their writes are looked at one by one.
fn suspects(spans: &FastMap<Group, Span>) -> HashSet<Group, FastHash> {
    let mut by_key: FastMap<u32, Vec<(Group, Span)>> = FastMap::default();
    for (&g, &s) in spans {
        by_key.entry(g.0).or_default().push((g, s));
    }
    let mut out = HashSet::default();
    for groups in by_key.values() {
        for &(h, hs) in groups {
            let inside = groups.iter().any(|&(g, gs)| {
                g.1 != h.1
                    && g.2 > h.2
                    && gs.first_end < gs.last_start
                    && gs.first_end < hs.last_start
                    && hs.first_end < gs.last_start
            });
            if inside {
                out.insert(h);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::dual_master::check;
    use crate::history::{Op, OpType, Process};
    use crate::verdict::Validity;
    use serde_json::json;

    /// An acknowledged add of `v` to `set`, invoked at `start`, by `node` in `epoch`.
    fn add(h: &mut Vec<Op>, p: u64, v: i64, start: u64, end: u64, node: &str, epoch: u64) {
        let mut inv = Op::new(start, Process::Client(p), OpType::Invoke, "add", json!(v));
        inv.key = Some("set".into());
        let mut ok = Op::new(end, Process::Client(p), OpType::Ok, "add", json!(v));
        ok.key = Some("set".into());
        ok.extra.insert("acked_by".into(), json!(node));
        ok.extra.insert("epoch".into(), json!(epoch));
        h.extend([inv, ok]);
    }

    fn history(stale: (u64, u64)) -> Vec<Op> {
        let mut h = Vec::new();
        // n1 masters epoch 1 until 100, n2 epoch 2 from 110; every node is observed
        // as it believes, and no poll lands while n1 acts stale.
        for (i, t) in (0..100).step_by(10).enumerate() {
            add(&mut h, 1, i as i64, t, t + 2, "n1", 1);
        }
        for (i, t) in (110..300).step_by(10).enumerate() {
            add(&mut h, 2, 100 + i as i64, t, t + 2, "n2", 2);
        }
        add(&mut h, 3, 999, stale.0, stale.1, "n1", 1);
        for t in [50, 150, 250] {
            let mut r = Op::new(
                t,
                Process::Client(9),
                OpType::Ok,
                "role",
                json!({"role": "master", "epoch": if t < 100 { 1 } else { 2 }}),
            );
            r.node = Some(if t < 100 { "n1" } else { "n2" }.into());
            h.push(r);
        }
        h.sort_by_key(|o| o.time);
        for (i, o) in h.iter_mut().enumerate() {
            o.index = i as u64;
        }
        h
    }

    #[test]
    fn a_woken_master_acknowledging_inside_its_successors_stretch_is_caught() {
        let r = check(&history((200, 205)));
        assert_eq!(
            (r.valid, r.stale_acks, r.intervals.len()),
            (Validity::Invalid, 1, 0)
        );
        let s = &r.stale_ack_examples[0];
        assert_eq!(
            (s.node.as_str(), s.master.as_str(), s.master_epoch),
            ("n1", "n2", 2)
        );
        assert_eq!(
            (s.write.value.clone(), s.write.epoch),
            (json!(999), Some(1))
        );
        // No final read: nothing is known lost.
        assert!(!s.lost);
    }

    #[test]
    fn a_handover_is_no_stale_acknowledgement() {
        // Invoked before n2's first acknowledgement completed, or acknowledged after
        // n2's last invocation: n2 was not master throughout.
        for window in [(105, 115), (111, 140), (290, 320)] {
            let r = check(&history(window));
            assert_eq!((r.stale_acks, r.valid), (0, Validity::Valid), "{window:?}");
        }
    }
}
