//! The list-append workload: clients append unique integers to a few lists and read
//! whole lists; after heal and recovery every node reads every list. Judged here:
//! acknowledged appends missing from the final reads (lost), reads of one list that
//! are not prefixes of one another (order anomalies: two histories of the list were
//! observed), duplicates and values never appended.

use crate::{CheckerResult, Generator, Invocation, OpFn};
use checkers::{Op, OpType, Validity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Number of lists appended to.
pub const KEYS: u64 = 4;
/// Anomalies of each kind kept in the report (all are counted).
const KEEP: usize = 20;

pub struct ListGenerator {
    next_element: i64,
    read_share: f64,
    rng: ChaCha8Rng,
}

impl ListGenerator {
    pub fn new(seed: u64) -> Self {
        Self::with_mix(seed, &crate::WorkloadKind::ListAppend.default_mix())
    }

    /// Reads and appends in the proportions of `mix` (`append`, `read`).
    pub fn with_mix(seed: u64, mix: &crate::OpMix) -> Self {
        ListGenerator {
            next_element: 0,
            read_share: mix.share("read"),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

fn key(k: u64) -> Option<String> {
    Some(format!("l{k}"))
}

impl Generator for ListGenerator {
    fn next(&mut self, _process: u64) -> Invocation {
        let k = key(self.rng.gen_range(0..KEYS));
        if self.rng.gen_bool(self.read_share) {
            return Invocation {
                f: OpFn::ReadList,
                key: k,
                value: Value::Null,
                is_final: false,
            };
        }
        let e = self.next_element;
        self.next_element += 1;
        Invocation {
            f: OpFn::Append,
            key: k,
            value: json!(e),
            is_final: false,
        }
    }

    fn final_reads(&self) -> Vec<Invocation> {
        (0..KEYS)
            .map(|k| Invocation {
                f: OpFn::ReadList,
                key: key(k),
                value: Value::Null,
                is_final: true,
            })
            .collect()
    }
}

/// Two reads of one list where neither is a prefix of the other.
#[derive(Debug, Clone, Serialize)]
pub struct OrderAnomaly {
    pub key: String,
    /// History indices of the two reads.
    pub reads: [u64; 2],
    /// First position where they differ, and what each read there.
    pub at: usize,
    pub left: Option<i64>,
    pub right: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub valid: Validity,
    pub acknowledged: usize,
    pub lost: Vec<(String, i64)>,
    pub lost_count: usize,
    /// Acknowledged appends some final reads have and others miss.
    pub divergent_count: usize,
    pub order_anomalies: Vec<OrderAnomaly>,
    pub order_anomaly_count: usize,
    /// Reads holding a value twice: (history index, key, value).
    pub duplicates: Vec<(u64, String, i64)>,
    /// Values read that no client ever tried to append: (history index, key, value).
    pub unexpected: Vec<(u64, String, i64)>,
    /// Keys with acknowledged appends but no successful final read.
    pub unread_keys: Vec<String>,
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(Value::as_i64).collect()
}

fn is_final(op: &Op) -> bool {
    op.extra.get("final") == Some(&Value::Bool(true))
}

/// Runs the checks on a history.
pub fn check(history: &[Op]) -> ListReport {
    let mut acked: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut attempted: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut reads: BTreeMap<String, Vec<(u64, Vec<i64>)>> = BTreeMap::new();
    let mut finals: BTreeMap<String, Vec<HashSet<i64>>> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut unexpected = Vec::new();
    for op in history.iter().filter(|o| o.is_client()) {
        let Some(k) = op.key.clone() else { continue };
        match (op.f.as_str(), op.kind) {
            ("append", OpType::Invoke) => {
                if let Some(v) = op.value.as_i64() {
                    attempted.entry(k).or_default().insert(v);
                }
            }
            ("append", OpType::Ok) => {
                if let Some(v) = op.value.as_i64() {
                    acked.entry(k).or_default().push(v);
                }
            }
            ("read", OpType::Ok) => {
                let Some(list) = ints(&op.value) else {
                    continue;
                };
                let mut seen = HashSet::new();
                for &v in &list {
                    if !seen.insert(v) {
                        duplicates.push((op.index, k.clone(), v));
                    }
                }
                if is_final(op) {
                    finals.entry(k.clone()).or_default().push(seen);
                }
                reads.entry(k).or_default().push((op.index, list));
            }
            _ => {}
        }
    }
    for (k, rs) in &reads {
        let tried = attempted.get(k);
        for (i, list) in rs {
            for v in list {
                if tried.is_none_or(|t| !t.contains(v)) {
                    unexpected.push((*i, k.clone(), *v));
                }
            }
        }
    }
    let mut order_anomalies = Vec::new();
    let mut order_anomaly_count = 0;
    for (k, rs) in reads.iter_mut() {
        // Reads of one history of the list form a chain under "is a prefix of".
        rs.sort_by_key(|(i, l)| (l.len(), *i));
        for w in rs.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if let Some(at) = a.1.iter().zip(&b.1).position(|(x, y)| x != y) {
                order_anomaly_count += 1;
                if order_anomalies.len() < KEEP {
                    order_anomalies.push(OrderAnomaly {
                        key: k.clone(),
                        reads: [a.0, b.0],
                        at,
                        left: a.1.get(at).copied(),
                        right: b.1.get(at).copied(),
                    });
                }
            }
        }
    }
    let (mut lost, mut divergent_count, mut unread_keys) = (Vec::new(), 0, Vec::new());
    let acknowledged = acked.values().map(Vec::len).sum();
    for (k, vs) in &acked {
        let Some(fs) = finals.get(k) else {
            unread_keys.push(k.clone());
            continue;
        };
        for v in vs {
            let present = fs.iter().filter(|s| s.contains(v)).count();
            if present == 0 {
                lost.push((k.clone(), *v));
            } else if present < fs.len() {
                divergent_count += 1;
            }
        }
    }
    let lost_count = lost.len();
    lost.truncate(KEEP * 5);
    duplicates.truncate(KEEP);
    unexpected.truncate(KEEP);
    let broken = lost_count + order_anomaly_count + duplicates.len() + unexpected.len() > 0;
    let valid = if broken {
        Validity::Invalid
    } else if !unread_keys.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    ListReport {
        valid,
        acknowledged,
        lost,
        lost_count,
        divergent_count,
        order_anomalies,
        order_anomaly_count,
        duplicates,
        unexpected,
        unread_keys,
    }
}

/// Runs [`check`] and summarises it.
pub fn analyse(history: &[Op]) -> CheckerResult {
    let r = check(history);
    let mut summary = format!(
        "{} acknowledged appends, {} lost, {} divergent, {} order anomalies",
        r.acknowledged, r.lost_count, r.divergent_count, r.order_anomaly_count
    );
    if !r.duplicates.is_empty() || !r.unexpected.is_empty() {
        summary.push_str(&format!(
            ", {} duplicated, {} never appended",
            r.duplicates.len(),
            r.unexpected.len()
        ));
    }
    if !r.unread_keys.is_empty() {
        summary.push_str(&format!("; no final read of {}", r.unread_keys.join(", ")));
    }
    CheckerResult {
        checker: "list-append",
        valid: r.valid,
        summary,
        details: serde_json::to_value(&r).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkers::Process;

    fn op(i: u64, p: u64, kind: OpType, f: &str, key: &str, value: Value, fin: bool) -> Op {
        let mut o = Op::new(0, Process::Client(p), kind, f, value);
        o.index = i;
        o.key = Some(key.into());
        if fin {
            o.extra.insert("final".into(), json!(true));
        }
        o
    }

    fn appends(vals: &[i64]) -> Vec<Op> {
        let mut out = Vec::new();
        for &v in vals {
            out.push(op(0, 1, OpType::Invoke, "append", "l0", json!(v), false));
            out.push(op(0, 1, OpType::Ok, "append", "l0", json!(v), false));
        }
        out
    }

    #[test]
    fn clean_history_is_valid() {
        let mut h = appends(&[1, 2, 3]);
        h.push(op(10, 2, OpType::Ok, "read", "l0", json!([1, 2]), false));
        h.push(op(11, 3, OpType::Ok, "read", "l0", json!([1, 2, 3]), true));
        h.push(op(12, 4, OpType::Ok, "read", "l0", json!([1, 2, 3]), true));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.acknowledged, 3);
    }

    #[test]
    fn finds_lost_divergent_and_order_anomalies() {
        let mut h = appends(&[1, 2, 3, 4]);
        h.push(op(10, 2, OpType::Ok, "read", "l0", json!([1, 2]), false));
        h.push(op(11, 2, OpType::Ok, "read", "l0", json!([1, 3]), false));
        h.push(op(12, 3, OpType::Ok, "read", "l0", json!([1, 3, 4]), true));
        h.push(op(13, 4, OpType::Ok, "read", "l0", json!([1, 3]), true));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.lost, vec![("l0".to_string(), 2)]);
        assert_eq!(r.divergent_count, 1, "4 is only on one node");
        assert!(r.order_anomaly_count >= 1);
        let a = &r.order_anomalies[0];
        assert_eq!((a.at, a.left, a.right), (1, Some(2), Some(3)));
    }

    #[test]
    fn duplicates_unexpected_and_unread() {
        let mut h = appends(&[1]);
        h.push(op(10, 2, OpType::Ok, "read", "l0", json!([1, 1, 9]), false));
        let r = check(&h);
        assert_eq!(r.duplicates, vec![(10, "l0".to_string(), 1)]);
        assert_eq!(r.unexpected, vec![(10, "l0".to_string(), 9)]);
        assert_eq!(r.unread_keys, vec!["l0".to_string()]);
        assert_eq!(r.valid, Validity::Invalid);
        let only_unread = check(&appends(&[5]));
        assert_eq!(only_unread.valid, Validity::Unknown);
    }

    #[test]
    fn generator_is_seeded_and_final_reads_cover_every_key() {
        let run = |s| {
            let mut g = ListGenerator::new(s);
            (0..300).map(|i| g.next(i)).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
        let f = ListGenerator::new(0).final_reads();
        assert_eq!(f.len() as u64, KEYS);
        assert!(f.iter().all(|i| i.is_final && i.f == OpFn::ReadList));
    }
}
