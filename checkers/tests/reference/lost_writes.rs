//! The set (lost-writes) checker as it was before it streamed: the whole history as
//! `&[Op]`, `BTreeSet`s per key. Kept verbatim as the oracle the streaming checker is
//! compared with (tests) and measured against (benchmark).

use checkers::lost_writes::{MissingWrite, SetReport, EXAMPLES};
use checkers::{Op, OpType, Process, Validity};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
