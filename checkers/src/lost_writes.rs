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

use crate::history::{Op, OpType, Process};
use crate::verdict::Validity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

#[derive(Default)]
struct KeyState {
    attempted: BTreeSet<i64>,
    acked: BTreeMap<i64, (u64, Option<String>, Option<String>)>,
    failed: BTreeSet<i64>,
    finals: Vec<(String, BTreeSet<i64>)>,
    reads: Vec<(u64, BTreeSet<i64>)>,
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn set_of(v: &Value) -> Option<BTreeSet<i64>> {
    v.as_array()?.iter().map(int_of).collect()
}

fn is_final(op: &Op) -> bool {
    op.extra
        .get("final")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Checks a set-workload history. Malformed ops (an add without an integer, a read
/// result that is not an array of integers) make the verdict unknown with a reason,
/// rather than being skipped silently.
pub fn check(history: &[Op]) -> SetReport {
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    let mut open: HashMap<u64, &Op> = HashMap::new();
    let mut reasons = Vec::new();
    for op in history {
        let Process::Client(p) = op.process else {
            continue;
        };
        if op.f != "add" && op.f != "read" {
            continue;
        }
        let key = op.key.clone().unwrap_or_default();
        let st = keys.entry(key).or_default();
        match op.kind {
            OpType::Invoke => {
                if op.f == "add" {
                    match int_of(&op.value) {
                        Some(e) => {
                            st.attempted.insert(e);
                        }
                        None => reasons.push(format!(
                            "op {}: add of a non-integer {}",
                            op.index, op.value
                        )),
                    }
                }
                open.insert(p, op);
            }
            kind => {
                let Some(inv) = open.remove(&p) else {
                    reasons.push(format!("op {}: completion without an invocation", op.index));
                    continue;
                };
                match (op.f.as_str(), kind) {
                    ("add", OpType::Ok) => {
                        if let Some(e) = int_of(&inv.value) {
                            let by = op
                                .extra
                                .get("acked_by")
                                .and_then(Value::as_str)
                                .map(String::from);
                            st.acked
                                .insert(e, (op.time, op.node.clone().or(inv.node.clone()), by));
                        }
                    }
                    ("add", OpType::Fail) => {
                        if let Some(e) = int_of(&inv.value) {
                            st.failed.insert(e);
                        }
                    }
                    ("read", OpType::Ok) => match set_of(&op.value) {
                        Some(s) if is_final(op) || is_final(inv) => {
                            let node = op
                                .node
                                .clone()
                                .or(inv.node.clone())
                                .unwrap_or_else(|| format!("process {p}"));
                            st.finals.push((node, s));
                        }
                        Some(s) => st.reads.push((inv.time, s)),
                        None => reasons.push(format!(
                            "op {}: read result is not a list of integers",
                            op.index
                        )),
                    },
                    _ => {}
                }
            }
        }
    }

    let mut r = SetReport {
        valid: Validity::Valid,
        attempted: 0,
        acknowledged: 0,
        failed: 0,
        indeterminate: 0,
        lost_count: 0,
        lost: vec![],
        divergent_count: 0,
        divergent: vec![],
        recovered_count: 0,
        recovered: vec![],
        unexpected_count: 0,
        unexpected: vec![],
        failed_but_present_count: 0,
        failed_but_present: vec![],
        stale_count: 0,
        stale: vec![],
        final_reads: BTreeMap::new(),
        unknown_reasons: reasons,
    };
    let keyed = keys.len() > 1 || keys.keys().any(|k| !k.is_empty());
    for (key, st) in &keys {
        r.attempted += st.attempted.len();
        r.acknowledged += st.acked.len();
        r.failed += st.failed.len();
        let indeterminate: Vec<i64> = st
            .attempted
            .iter()
            .filter(|e| !st.acked.contains_key(e) && !st.failed.contains(e))
            .copied()
            .collect();
        r.indeterminate += indeterminate.len();
        r.final_reads.insert(
            key.clone(),
            st.finals.iter().map(|(n, _)| n.clone()).collect(),
        );
        if st.finals.is_empty() {
            if !st.attempted.is_empty() {
                r.unknown_reasons
                    .push(format!("key {key:?}: no final read succeeded"));
            }
            continue;
        }
        let union: BTreeSet<i64> = st
            .finals
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let key_opt = keyed.then(|| key.clone());
        for (e, (at, node, by)) in &st.acked {
            let missing_on: Vec<String> = st
                .finals
                .iter()
                .filter(|(_, s)| !s.contains(e))
                .map(|(n, _)| n.clone())
                .collect();
            if missing_on.is_empty() {
                continue;
            }
            let w = MissingWrite {
                key: key_opt.clone(),
                element: *e,
                acked_at: *at,
                node: node.clone(),
                acked_by: by.clone(),
                missing_on,
            };
            if union.contains(e) {
                r.divergent.push(w);
            } else {
                r.lost.push(w);
            }
        }
        for e in &indeterminate {
            if union.contains(e) {
                r.recovered_count += 1;
                if r.recovered.len() < EXAMPLES {
                    r.recovered.push(*e);
                }
            }
        }
        for e in union.iter().filter(|e| !st.attempted.contains(e)) {
            r.unexpected_count += 1;
            if r.unexpected.len() < EXAMPLES {
                r.unexpected.push(*e);
            }
        }
        for e in st.failed.iter().filter(|e| union.contains(e)) {
            r.failed_but_present_count += 1;
            if r.failed_but_present.len() < EXAMPLES {
                r.failed_but_present.push(*e);
            }
        }
        let mut stale = BTreeSet::new();
        for (t, s) in &st.reads {
            for (e, (at, _, _)) in &st.acked {
                if *at < *t && !s.contains(e) && union.contains(e) {
                    stale.insert(*e);
                }
            }
        }
        r.stale_count += stale.len();
        r.stale.extend(
            stale
                .into_iter()
                .take(EXAMPLES.saturating_sub(r.stale.len())),
        );
    }
    r.lost_count = r.lost.len();
    r.divergent_count = r.divergent.len();
    let bad = r.lost_count + r.divergent_count + r.unexpected_count + r.failed_but_present_count;
    r.valid = if bad > 0 {
        Validity::Invalid
    } else if !r.unknown_reasons.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
