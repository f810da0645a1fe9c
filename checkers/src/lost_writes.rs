//! The lost-writes checker for the set workload (Jepsen's set-full idea, simplified):
//! every acknowledged `add` must be present in the final reads taken after the faults
//! are healed and the system has had time to recover.
//!
//! Conventions it reads from the history: `add` invokes carry the element (an integer)
//! as `value`; `read` completions carry the whole set as an array; the final reads have
//! `"final": true`; an `ok` add may carry `"acked_by"` (the node that accepted it as
//! master). Ops with a `key` are judged per key.
//!
//! Outcomes per acknowledged element: **lost** (in no final read), **divergent** (in
//! some final reads but missing from others: the replicas did not converge); per
//! indeterminate element: **recovered** (it showed up) or not. Elements read that
//! were never added, and adds that failed definitely yet showed up, are **unexpected**.
//! A non-final read missing an element acknowledged before that read began is **stale**
//! (reported, not a violation: this checker does not demand linearizable reads).
//!
//! The check is one streaming pass ([`SetChecker`], [`check_jsonl`]): per element a
//! few words (flags, acknowledgement, which reads held it), per final read the set
//! of elements it held (made by the scanning thread for a long one); never the
//! ops. [`check`] feeds it an in-memory history.

use crate::blocks::for_each_view_par;
use crate::compact::{FastMap, Interner, ProcessMap, NONE};
use crate::history::{HistoryError, Op, OpType, Process};
use crate::scan::{Members, OpView, Presence};
use crate::verdict::Validity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

mod pass;

use pass::{halves, Pass};

/// How many example elements each category keeps (lost and divergent keep all).
pub const EXAMPLES: usize = 20;

/// An acknowledged add that the final reads did not (all) contain. Read back by the
/// reports from results.json; fields missing there take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MissingWrite {
    pub key: Option<String>,
    pub element: i64,
    /// When the add was acknowledged, in ns since the test began.
    pub acked_at: u64,
    /// The node the client sent it to.
    pub node: Option<String>,
    /// The node that accepted it as master, when the system said.
    pub acked_by: Option<String>,
    /// The final-read nodes whose read lacked it.
    pub missing_on: Vec<String>,
}

/// What the set checker found. Read back by the reports from results.json; fields
/// missing there take their defaults (the verdict: `unknown`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetReport {
    pub valid: Validity,
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub lost_count: usize,
    pub lost: Vec<MissingWrite>,
    pub divergent_count: usize,
    pub divergent: Vec<MissingWrite>,
    pub recovered_count: usize,
    pub recovered: Vec<i64>,
    pub unexpected_count: usize,
    pub unexpected: Vec<i64>,
    pub failed_but_present_count: usize,
    pub failed_but_present: Vec<i64>,
    pub stale_count: usize,
    pub stale: Vec<i64>,
    /// Nodes whose final read succeeded, per key (`""` for unkeyed histories).
    pub final_reads: BTreeMap<String, Vec<String>>,
    /// Why the verdict is unknown, when it is.
    pub unknown_reasons: Vec<String>,
}

const ATTEMPTED: u8 = 1;
const ACKED: u8 = 2;
const FAILED: u8 = 4;

/// What the checker keeps about one element of one key, besides its flags
/// ([`KeyState::flags`]): 32 bytes (a million elements are 32 MB, every page of
/// them a page fault on first use).
struct Elem {
    value: i64,
    /// When its (last) acknowledgement completed.
    acked_at: u64,
    /// The latest start of a non-final read that lacked it (0: none).
    stale_before: u64,
    node: u32,
    acked_by: u32,
}

#[derive(Default)]
struct KeyState {
    /// Slot + 1 of each small non-negative element, by value (0: none yet): the set
    /// workload's elements are dense counters, so most never touch `index`.
    dense: Vec<u32>,
    /// Slots of every other element.
    index: FastMap<i64, u32>,
    elems: Vec<Elem>,
    /// [`ATTEMPTED`], [`ACKED`], [`FAILED`] per slot.
    flags: Vec<u8>,
    /// A bit per slot: held by the non-final read being added (kept, cleared,
    /// between reads).
    held: Vec<u64>,
    /// A bit per value that `dense` gives a slot (a filter: a value without its
    /// bit may still have a slot, in `index`).
    known: Vec<u64>,
    /// Per final read: the node named and the set of elements it held. Which
    /// elements were in all or some of them is worked out once, in the report.
    finals: Vec<(String, Members)>,
    /// The latest start of the non-final reads so far: an element first seen after
    /// them was in none of them.
    latest_read: u64,
}

impl KeyState {
    /// The slot of `value`, made on first sight.
    #[inline(always)]
    fn slot(&mut self, value: i64) -> usize {
        if let Some(&s) = usize::try_from(value).ok().and_then(|i| self.dense.get(i)) {
            if s != 0 {
                return s as usize - 1;
            }
        }
        self.new_slot(value)
    }

    fn new_slot(&mut self, value: i64) -> usize {
        let next = self.elems.len() as u32;
        // Dense while the values stay within a few times the element count.
        let dense_limit = (1 << 16) + 4 * self.elems.len();
        let slot = match usize::try_from(value) {
            Ok(i) if i < dense_limit => {
                if i >= self.dense.len() {
                    let len = (i + 1).max(2 * self.dense.len()).min(dense_limit);
                    self.dense.resize(len, 0);
                }
                match self.dense[i] {
                    0 => {
                        // It may have been given a slot before the limit grew to it.
                        let s = match self.index.is_empty() {
                            true => next,
                            false => self.index.remove(&value).unwrap_or(next),
                        };
                        self.dense[i] = s + 1;
                        if i / 64 >= self.known.len() {
                            self.known.resize(self.dense.len().div_ceil(64), 0);
                        }
                        self.known[i / 64] |= 1 << (i % 64);
                        s
                    }
                    s => s - 1,
                }
            }
            _ => *self.index.entry(value).or_insert(next),
        };
        if slot == next {
            self.elems.push(Elem {
                value,
                acked_at: 0,
                stale_before: self.latest_read,
                node: NONE,
                acked_by: NONE,
            });
            self.flags.push(0);
        }
        slot as usize
    }

    /// A final read of `node` that held the elements of `set`: the elements first
    /// seen in it get their slots now (found a word at a time), the set is kept.
    fn add_final(&mut self, node: String, set: Members) {
        for (w, &word) in set.bits().iter().enumerate() {
            let mut new = word & !self.known.get(w).copied().unwrap_or(0);
            while new != 0 {
                self.slot(w as i64 * 64 + i64::from(new.trailing_zeros()));
                new &= new - 1;
            }
        }
        for &v in set.others() {
            self.slot(v);
        }
        self.finals.push((node, set));
    }

    fn add_read(&mut self, started: u64, values: impl Iterator<Item = i64>) {
        let mut held = std::mem::take(&mut self.held);
        for v in values {
            let s = self.slot(v);
            if s / 64 >= held.len() {
                held.resize(s / 64 + 1, 0);
            }
            held[s / 64] |= 1 << (s % 64);
        }
        for (s, e) in self.elems.iter_mut().enumerate() {
            if held.get(s / 64).is_none_or(|w| w & (1 << (s % 64)) == 0) {
                e.stale_before = e.stale_before.max(started);
            }
        }
        held.clear();
        self.held = held;
        self.latest_read = self.latest_read.max(started);
    }
}

/// An invocation waiting for its completion.
struct Open {
    time: u64,
    value: Option<i64>,
    node: u32,
    is_final: bool,
}

/// The set checker as a single pass: feed it every entry of the history in order
/// with [`SetChecker::observe`], then [`SetChecker::finish`]. It keeps a few words
/// per element, never the ops themselves.
#[derive(Default)]
pub struct SetChecker {
    key_ids: Interner,
    keys: Vec<KeyState>,
    nodes: Interner,
    open: ProcessMap<Open>,
    reasons: Vec<String>,
    scratch: Vec<i64>,
}

impl SetChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next entry of the history into account.
    pub fn observe(&mut self, op: &OpView<'_>) {
        let Process::Client(p) = op.process else {
            return;
        };
        let add = match op.f {
            "add" => true,
            "read" => false,
            _ => return,
        };
        let k = self.key_ids.id(op.key.unwrap_or_default()) as usize;
        if k == self.keys.len() {
            self.keys.push(KeyState::default());
        }
        let st = &mut self.keys[k];
        if op.kind == OpType::Invoke {
            let value = op.value.as_i64();
            if add {
                match value {
                    Some(e) => {
                        let s = st.slot(e);
                        st.flags[s] |= ATTEMPTED;
                    }
                    None => self.reasons.push(format!(
                        "op {}: add of a non-integer {}",
                        op.index,
                        op.value.to_value()
                    )),
                }
            }
            let node = self.nodes.opt(op.node);
            self.open.insert_with(p, || Open {
                time: op.time,
                value,
                node,
                is_final: op.is_final,
            });
            return;
        }
        let Some(inv) = self.open.remove(p) else {
            self.reasons
                .push(format!("op {}: completion without an invocation", op.index));
            return;
        };
        match (add, op.kind) {
            (true, OpType::Ok) => {
                if let Some(v) = inv.value {
                    let node = match op.node {
                        Some(n) => self.nodes.id(n),
                        None => inv.node,
                    };
                    let by = self.nodes.opt(op.acked_by);
                    let s = st.slot(v);
                    st.flags[s] |= ACKED;
                    let e = &mut st.elems[s];
                    e.acked_at = op.time;
                    e.node = node;
                    e.acked_by = by;
                }
            }
            (true, OpType::Fail) => {
                if let Some(v) = inv.value {
                    let s = st.slot(v);
                    st.flags[s] |= FAILED;
                }
            }
            (false, OpType::Ok) => {
                let is_final = op.is_final || inv.is_final;
                // A long list comes as the set the scanning thread read it into.
                let set = match op.members {
                    Some(m) if is_final => m.clone(),
                    Some(m) => {
                        st.add_read(inv.time, m.iter());
                        return;
                    }
                    None => match op.value.ints(&mut self.scratch) {
                        None => {
                            self.reasons.push(format!(
                                "op {}: read result is not a list of integers",
                                op.index
                            ));
                            return;
                        }
                        Some(values) if is_final => Members::of(values),
                        Some(values) => {
                            st.add_read(inv.time, values.iter().copied());
                            return;
                        }
                    },
                };
                let node = match op.node.or_else(|| self.nodes.name(inv.node)) {
                    Some(n) => n.to_string(),
                    None => format!("process {p}"),
                };
                st.add_final(node, set);
            }
            _ => {}
        }
    }

    /// The report over everything observed.
    pub fn finish(self) -> SetReport {
        let SetChecker {
            key_ids,
            keys,
            nodes,
            reasons,
            ..
        } = self;
        let mut r = SetReport {
            valid: Validity::Valid,
            unknown_reasons: reasons,
            ..SetReport::default()
        };
        let mut order: Vec<(&str, KeyState)> = keys
            .into_iter()
            .enumerate()
            .map(|(i, st)| (key_ids.name(i as u32).unwrap_or_default(), st))
            .collect();
        order.sort_by(|a, b| a.0.cmp(b.0));
        let keyed = order.len() > 1 || order.iter().any(|(k, _)| !k.is_empty());
        let name = |id: u32| nodes.name(id).map(String::from);
        for (key, st) in order {
            let presence = Presence::of(st.finals.iter().map(|(_, m)| m));
            // One pass over the elements (in two halves at once when there are
            // many): the counts, the missing, and the examples of each category
            // (the least values, up to EXAMPLES in all).
            let ks = [
                EXAMPLES.saturating_sub(r.recovered.len()),
                EXAMPLES.saturating_sub(r.unexpected.len()),
                EXAMPLES.saturating_sub(r.failed_but_present.len()),
                EXAMPLES.saturating_sub(r.stale.len()),
            ];
            let [first, second] = halves(st.elems.len(), |range| {
                Pass::over(&st.elems, &st.flags, range, &st.finals, &presence, ks)
            });
            let Pass {
                counts,
                mut missing,
                tallies,
            } = first.merge(second);
            r.attempted += counts[0];
            r.acknowledged += counts[1];
            r.failed += counts[2];
            r.indeterminate += counts[3];
            r.final_reads.insert(
                key.to_string(),
                st.finals.iter().map(|(n, _)| n.clone()).collect(),
            );
            if st.finals.is_empty() {
                if counts[0] > 0 {
                    r.unknown_reasons
                        .push(format!("key {key:?}: no final read succeeded"));
                }
                continue;
            }
            missing.sort_unstable_by_key(|&(s, _)| st.elems[s as usize].value);
            // Each missing write names its nodes (a few strings each; 25,000 lost
            // writes are 200,000 of them): built in two halves at once.
            let built = halves(missing.len(), |range| {
                let mut out = Vec::with_capacity(range.len());
                for &(s, in_any) in &missing[range] {
                    let e = &st.elems[s as usize];
                    let w = MissingWrite {
                        key: keyed.then(|| key.to_string()),
                        element: e.value,
                        acked_at: e.acked_at,
                        node: name(e.node),
                        acked_by: name(e.acked_by),
                        missing_on: st
                            .finals
                            .iter()
                            .filter(|(_, held)| !held.contains(e.value))
                            .map(|(n, _)| n.clone())
                            .collect(),
                    };
                    out.push((w, in_any));
                }
                out
            });
            for (w, in_any) in built.into_iter().flatten() {
                if in_any {
                    r.divergent.push(w);
                } else {
                    r.lost.push(w);
                }
            }
            let [recovered, unexpected, failed_present, stale] = tallies;
            recovered.into(&mut r.recovered_count, &mut r.recovered);
            unexpected.into(&mut r.unexpected_count, &mut r.unexpected);
            failed_present.into(&mut r.failed_but_present_count, &mut r.failed_but_present);
            stale.into(&mut r.stale_count, &mut r.stale);
        }
        r.lost_count = r.lost.len();
        r.divergent_count = r.divergent.len();
        let bad =
            r.lost_count + r.divergent_count + r.unexpected_count + r.failed_but_present_count;
        r.valid = if bad > 0 {
            Validity::Invalid
        } else if !r.unknown_reasons.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        r
    }
}

/// Checks a set-workload history held in memory. Malformed ops (an add without an
/// integer, a read result that is not an array of integers) make the verdict
/// unknown with a reason, rather than being skipped silently.
pub fn check(history: &[Op]) -> SetReport {
    let mut c = SetChecker::new();
    for op in history {
        c.observe(&OpView::of(op));
    }
    c.finish()
}

/// Checks a `history.jsonl` in one pass without holding it; a bad line stops it with
/// the same error [`crate::history::read_jsonl`] gives.
pub fn check_jsonl<R: Read + Send>(input: R) -> Result<SetReport, HistoryError> {
    let mut c = SetChecker::new();
    for_each_view_par(input, |op| c.observe(op))?;
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    struct H(Vec<Op>, u64);
    impl H {
        fn op(&mut self, p: u64, kind: OpType, f: &str, v: Value, node: &str) -> &mut Op {
            self.1 += 10;
            let mut op = Op::new(self.1, Process::Client(p), kind, f, v);
            op.index = self.0.len() as u64;
            op.node = Some(node.into());
            self.0.push(op);
            self.0.last_mut().unwrap()
        }
        fn add(&mut self, p: u64, e: i64, done: OpType) {
            self.op(p, OpType::Invoke, "add", json!(e), "n1");
            self.op(p, done, "add", json!(e), "n1")
                .extra
                .insert("acked_by".into(), json!("n1"));
        }
        fn final_read(&mut self, p: u64, node: &str, s: &[i64]) {
            self.op(p, OpType::Invoke, "read", Value::Null, node)
                .extra
                .insert("final".into(), json!(true));
            self.op(p, OpType::Ok, "read", json!(s), node)
                .extra
                .insert("final".into(), json!(true));
        }
    }

    #[test]
    fn clean_history_is_valid() {
        let mut h = H(vec![], 0);
        h.add(1, 1, OpType::Ok);
        h.add(2, 2, OpType::Info);
        h.add(1, 3, OpType::Fail);
        h.final_read(1, "n1", &[1, 2]);
        h.final_read(2, "n2", &[1, 2]);
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(
            (r.attempted, r.acknowledged, r.failed, r.indeterminate),
            (3, 1, 1, 1)
        );
        assert_eq!((r.recovered_count, r.lost_count), (1, 0));
    }

    #[test]
    fn finds_lost_divergent_unexpected_and_failed_present() {
        let mut h = H(vec![], 0);
        for e in 1..=4 {
            h.add(1, e, OpType::Ok);
        }
        h.add(1, 5, OpType::Fail);
        // a mid-test read that misses 1, acknowledged before it began
        h.op(3, OpType::Invoke, "read", Value::Null, "n3");
        h.op(3, OpType::Ok, "read", json!([2]), "n3");
        h.final_read(1, "n1", &[1, 2, 5, 99]);
        h.final_read(2, "n2", &[1, 5, 99]);
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Invalid);
        let lost: Vec<i64> = r.lost.iter().map(|w| w.element).collect();
        assert_eq!(lost, vec![3, 4]);
        assert_eq!(r.lost[0].acked_by.as_deref(), Some("n1"));
        assert_eq!(
            r.lost[0].missing_on,
            vec!["n1".to_string(), "n2".to_string()]
        );
        assert_eq!(
            r.divergent.iter().map(|w| w.element).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(r.divergent[0].missing_on, vec!["n2".to_string()]);
        assert_eq!(r.unexpected, vec![99]);
        assert_eq!(r.failed_but_present, vec![5]);
        assert_eq!(r.stale, vec![1]);
    }

    #[test]
    fn no_final_read_or_malformed_ops_make_it_unknown() {
        let mut h = H(vec![], 0);
        h.add(1, 1, OpType::Ok);
        assert_eq!(check(&h.0).valid, Validity::Unknown);
        h.final_read(1, "n1", &[1]);
        assert_eq!(check(&h.0).valid, Validity::Valid);
        h.op(2, OpType::Invoke, "add", json!("x"), "n1");
        let r = check(&h.0);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(
            r.unknown_reasons[0].contains("non-integer"),
            "{:?}",
            r.unknown_reasons
        );
        // a lost write still wins over unknown
        h.add(1, 7, OpType::Ok);
        h.final_read(1, "n1", &[1]);
        assert_eq!(check(&h.0).valid, Validity::Invalid);
    }

    #[test]
    fn an_element_keeps_its_slot_when_the_dense_range_grows_past_it() {
        // 100000 is first beyond the dense range (hashed); 80000 more elements grow
        // the range past it, and later lookups must find the same element.
        let mut h = H(vec![], 0);
        h.add(1, 100_000, OpType::Ok);
        for e in 0..80_000 {
            h.op(1, OpType::Invoke, "add", json!(e), "n1");
        }
        h.add(2, 100_000, OpType::Fail);
        let r = check(&h.0);
        assert_eq!((r.attempted, r.acknowledged, r.failed), (80_001, 1, 1));
        h.final_read(3, "n1", &[100_000, -5]);
        let r = check(&h.0);
        assert_eq!((r.lost_count, r.failed_but_present_count), (0, 1));
        assert_eq!(r.unexpected, vec![-5]);
    }
}
