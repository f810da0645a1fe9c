//! Dual-master detection. From `role` observations (each node asked for its role every
//! few milliseconds: `value` = `{"role": "master"|"replica", "epoch": n, "master": ..}`,
//! `node` = the node asked) and from write attribution (`acked_by`, `epoch` on every
//! acknowledged write), finds every interval in which two or more nodes acted as
//! master at once, with the epochs each claimed, the writes each accepted in it and
//! which of those are missing from the final reads. Three kinds, worst first:
//! the same epoch claimed by two masters (a safety bug even in consensus systems),
//! two masters that both accepted writes, two nodes that merely claimed master.
//!
//! One streaming pass ([`DualMasterChecker`], [`check_jsonl`]) keeps the role
//! observations and a compact record per attributed write (node and key ids, the
//! value inline when it is an integer), never the ops; [`check`] feeds it an
//! in-memory history. The report (the sweep over runs of master observations,
//! intervals, what each master accepted and lost) is [`intervals`]'s.

use crate::blocks::for_each_view_par;
use crate::compact::{FastHash, FastMap, Interner, ProcessMap};
use crate::history::{HistoryError, Op, OpType, Process};
use crate::scan::{Members, OpView, ValueRef};
use crate::verdict::Validity;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Read;

mod intervals;
mod stale;

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
    /// Writes one node acknowledged in an older epoch while another was master of a
    /// newer one throughout (see [`StaleAck`]); invalid when any.
    pub stale_acks: usize,
    /// The first few of them, in history order.
    pub stale_ack_examples: Vec<StaleAck>,
    /// Total time (ns) with two or more masters.
    pub dual_ns: u64,
}

/// A write `node` acknowledged as master of the write's epoch while `master`, which
/// acknowledged writes to the same key in the newer `master_epoch` both before this
/// write was invoked and after it completed, was master throughout: two masters
/// accepting writes at once, shown by the writes alone (role observations may miss
/// it, as when a master woken from a pause acts for milliseconds between two polls).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleAck {
    pub node: String,
    pub write: WriteRef,
    /// Absent from every final read of its key (`add` and `append` only).
    pub lost: bool,
    pub master: String,
    pub master_epoch: u64,
}

struct Obs {
    time: u64,
    master: bool,
    epoch: Option<u64>,
}

/// A value read back: integers apart (as serde's `as_i64` sees them), anything
/// else parsed.
enum Val {
    Int(i64),
    Other(Value),
}

impl Val {
    fn of(v: &ValueRef<'_>) -> Val {
        v.as_i64()
            .map_or_else(|| Val::Other(v.to_value()), Val::Int)
    }
}

/// [`Write::flags`]: the write carried an epoch.
const HAS_EPOCH: u8 = 1;
/// [`Write::flags`]: the value is no integer; `value` indexes the checker's `others`.
const OTHER_VALUE: u8 = 2;

/// One acknowledged, attributed write, compactly.
struct Write {
    start: u64,
    end: u64,
    index: u64,
    /// Meaningful with [`HAS_EPOCH`].
    epoch: u64,
    /// The integer, or with [`OTHER_VALUE`] the index of the value in `others`.
    value: i64,
    node: u32,
    key: u32,
    /// Index into [`WRITE_FNS`].
    f: u8,
    flags: u8,
}

impl Write {
    fn epoch(&self) -> Option<u64> {
        (self.flags & HAS_EPOCH != 0).then_some(self.epoch)
    }
}

/// The values every final read of a key returned (integers apart, as serde's
/// `as_i64` sees them; anything else by its JSON text).
#[derive(Default)]
struct Finals {
    /// One bit per small non-negative integer (the workloads' values are counters).
    bits: Vec<u64>,
    /// Every other integer.
    ints: HashSet<i64, FastHash>,
    other: HashSet<String, FastHash>,
    /// Integers inserted, repeats included: bounds the bits to 8 bytes per insert.
    inserted: usize,
}

impl Finals {
    fn insert_int(&mut self, v: i64) {
        self.inserted += 1;
        match usize::try_from(v) {
            Ok(i) if i < (1 << 16) + 64 * self.inserted => {
                if i / 64 >= self.bits.len() {
                    let len = (i / 64 + 1).max(2 * self.bits.len());
                    self.bits.resize(len, 0);
                }
                self.bits[i / 64] |= 1 << (i % 64);
            }
            _ => {
                self.ints.insert(v);
            }
        }
    }

    /// Inserts every element of `m` (the same set as inserting its list one by
    /// one: only which integers are in it is ever asked).
    fn insert_members(&mut self, m: &Members) {
        let words = m.bits();
        if words.len() > self.bits.len() {
            self.bits.resize(words.len(), 0);
        }
        for (mine, &w) in self.bits.iter_mut().zip(words) {
            *mine |= w;
        }
        self.inserted += m.list_len() - m.others().len();
        for &v in m.others() {
            self.insert_int(v);
        }
    }

    fn contains_int(&self, i: i64) -> bool {
        let bit = usize::try_from(i)
            .ok()
            .and_then(|i| Some(self.bits.get(i / 64)? & (1 << (i % 64)) != 0));
        bit == Some(true) || (!self.ints.is_empty() && self.ints.contains(&i))
    }

    fn contains_other(&self, v: &Value) -> bool {
        self.other.contains(&v.to_string())
    }
}

/// The dual-master checker as a single pass: feed it every entry of the history in
/// order with [`DualMasterChecker::observe`], then [`DualMasterChecker::finish`].
/// It keeps role observations and a compact record per attributed write.
#[derive(Default)]
pub struct DualMasterChecker {
    nodes: Interner,
    keys: Interner,
    /// Role observations per node id.
    obs: Vec<Vec<Obs>>,
    observations: usize,
    invoked: ProcessMap<u64>,
    writes: Vec<Write>,
    /// The written values that are no integers, by [`Write::value`].
    others: Vec<Value>,
    finals: FastMap<u32, Finals>,
    /// Every distinct (epoch, node id) of an attributed write, and the last one
    /// added (consecutive writes mostly share both).
    epoch_nodes: HashSet<(u64, u32), FastHash>,
    last_epoch_node: Option<(u64, u32)>,
    scratch: Vec<i64>,
}

impl DualMasterChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next entry of the history into account.
    pub fn observe(&mut self, op: &OpView<'_>) {
        match op.f {
            "role" => self.role(op),
            "read" => self.final_read(op),
            _ => {}
        }
        let Some(f) = WRITE_FNS.iter().position(|w| *w == op.f) else {
            return;
        };
        let Process::Client(p) = op.process else {
            return;
        };
        match op.kind {
            OpType::Invoke => {
                self.invoked.insert(p, op.time);
            }
            OpType::Ok => {
                let start = self.invoked.remove(p).unwrap_or(op.time);
                let Some(node) = op.acked_by else {
                    return;
                };
                let mut flags = if op.epoch.is_some() { HAS_EPOCH } else { 0 };
                let value = match Val::of(&op.value) {
                    Val::Int(i) => i,
                    Val::Other(v) => {
                        flags |= OTHER_VALUE;
                        self.others.push(v);
                        self.others.len() as i64 - 1
                    }
                };
                let write = Write {
                    start,
                    end: op.time,
                    index: op.index,
                    epoch: op.epoch.unwrap_or(0),
                    value,
                    node: self.nodes.id(node),
                    key: self.keys.opt(op.key),
                    f: f as u8,
                    flags,
                };
                let pair = write.epoch().map(|e| (e, write.node));
                if pair.is_some() && pair != self.last_epoch_node {
                    self.epoch_nodes.extend(pair);
                    self.last_epoch_node = pair;
                }
                self.writes.push(write);
            }
            _ => {
                self.invoked.remove(p);
            }
        }
    }

    fn role(&mut self, op: &OpView<'_>) {
        if op.kind != OpType::Ok {
            return;
        }
        let Some(node) = op.node else {
            return;
        };
        let Some(role) = op.value.get("role").and_then(|r| r.as_str()) else {
            return;
        };
        let id = self.nodes.id(node) as usize;
        if id >= self.obs.len() {
            self.obs.resize_with(id + 1, Vec::new);
        }
        self.obs[id].push(Obs {
            time: op.time,
            master: role == "master",
            epoch: op.value.get("epoch").and_then(|e| e.as_u64()),
        });
        self.observations += 1;
    }

    fn final_read(&mut self, op: &OpView<'_>) {
        if op.kind != OpType::Ok || !op.is_final {
            return;
        }
        let Some(key) = op.key else {
            return;
        };
        if !op.value.is_array() {
            return;
        }
        let set = self.finals.entry(self.keys.id(key)).or_default();
        if let Some(m) = op.members {
            // The scanning thread made the read's set: merged a word at a time.
            set.insert_members(m);
        } else if let Some(values) = op.value.ints(&mut self.scratch) {
            for &i in values {
                set.insert_int(i);
            }
        } else {
            for v in op.value.elements().unwrap_or_default() {
                match Val::of(&v) {
                    Val::Int(i) => set.insert_int(i),
                    Val::Other(v) => {
                        set.other.insert(v.to_string());
                    }
                }
            }
        }
    }
}

/// Finds every dual-master interval in an in-memory history.
pub fn check(history: &[Op]) -> Report {
    let mut c = DualMasterChecker::new();
    for op in history {
        c.observe(&OpView::of(op));
    }
    c.finish()
}

/// Finds every dual-master interval in a `history.jsonl` in one pass without
/// holding it; a bad line stops it with the same error
/// [`crate::history::read_jsonl`] gives.
pub fn check_jsonl<R: Read + Send>(input: R) -> Result<Report, HistoryError> {
    let mut c = DualMasterChecker::new();
    for_each_view_par(input, |op| c.observe(op))?;
    Ok(c.finish())
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
