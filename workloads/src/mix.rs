//! Operation mixes: the relative weights of a workload's main-phase operations, as
//! given on the command line (`--op-mix read=1,write=3,cas=1`) and checked against
//! the operations that workload has. Operations not named get weight 0.

use crate::WorkloadKind;
use serde::{Serialize, Serializer};
use std::fmt;

/// The largest weight accepted for one operation.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Weights of one workload's operations, in the workload's own order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpMix {
    entries: Vec<(&'static str, u32)>,
}

impl OpMix {
    /// The weight of `op` (0 when the workload has no such operation).
    pub fn weight(&self, op: &str) -> u32 {
        self.entries
            .iter()
            .find(|(name, _)| *name == op)
            .map_or(0, |(_, w)| *w)
    }

    /// The share of `op` among all operations, 0.0 ..= 1.0.
    pub fn share(&self, op: &str) -> f64 {
        let total: u64 = self.entries.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return 0.0;
        }
        f64::from(self.weight(op)) / total as f64
    }
}

impl fmt::Display for OpMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(name, w)| format!("{name}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Stored in test.json as its command-line form, e.g. `"read=2,write=1,cas=1"`.
impl Serialize for OpMix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl WorkloadKind {
    /// The main-phase operations whose mix can be set, by their names in `f`.
    pub fn ops(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Set => &["add", "read"],
            WorkloadKind::Register => &["read", "write", "cas"],
            WorkloadKind::ListAppend => &["append", "read"],
        }
    }

    /// The mix a run uses when none is given.
    pub fn default_mix(self) -> OpMix {
        let weights: &[u32] = match self {
            // 10% reads of the whole set, 20% reads of a list.
            WorkloadKind::Set => &[9, 1],
            WorkloadKind::Register => &[2, 1, 1],
            WorkloadKind::ListAppend => &[4, 1],
        };
        OpMix {
            entries: self
                .ops()
                .iter()
                .copied()
                .zip(weights.iter().copied())
                .collect(),
        }
    }

    /// Parses `op=weight,...` for this workload. Errors name the bad entry (the
    /// caller adds where the spec came from).
    pub fn parse_op_mix(self, spec: &str) -> Result<OpMix, String> {
        let ops = self.ops();
        let mut entries: Vec<(&'static str, u32)> = ops.iter().map(|op| (*op, 0)).collect();
        let mut named = vec![false; ops.len()];
        for entry in spec.split(',') {
            let entry = entry.trim();
            let Some((name, weight)) = entry.split_once('=') else {
                return Err(format!(
                    "entry {entry:?} is not op=weight (e.g. {})",
                    self.default_mix()
                ));
            };
            let name = name.trim();
            let Some(i) = ops.iter().position(|op| *op == name) else {
                return Err(format!(
                    "the {self} workload has no operation {name:?} (its operations: {})",
                    ops.join(", ")
                ));
            };
            let weight = weight
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| {
                    format!(
                        "weight {:?} of {name} is not a whole number from 0 to {MAX_WEIGHT}",
                        weight.trim()
                    )
                })?;
            if std::mem::replace(&mut named[i], true) {
                return Err(format!("{name} is given twice"));
            }
            entries[i].1 = weight;
        }
        if entries.iter().all(|(_, w)| *w == 0) {
            return Err("every weight is zero, so clients would have nothing to do".into());
        }
        Ok(OpMix { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_per_workload_and_names_the_bad_entry() {
        let r = WorkloadKind::Register;
        let m = r.parse_op_mix("read=1, write=3,cas=1").unwrap();
        assert_eq!(m.to_string(), "read=1,write=3,cas=1");
        assert_eq!((m.weight("write"), m.share("write")), (3, 0.6));
        let m = r.parse_op_mix("write=1").unwrap();
        assert_eq!(m.to_string(), "read=0,write=1,cas=0");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!("read=0,write=1,cas=0")
        );
        for (w, spec, needle) in [
            (
                r,
                "read=1,add=2",
                "no operation \"add\" (its operations: read, write, cas)",
            ),
            (
                WorkloadKind::Set,
                "cas=1",
                "the set workload has no operation \"cas\"",
            ),
            (r, "read", "entry \"read\" is not op=weight"),
            (r, "read=x", "weight \"x\" of read"),
            (r, "read=-1", "weight \"-1\" of read"),
            (r, "read=2000000", "from 0 to 1000000"),
            (r, "read=1,read=2", "read is given twice"),
            (r, "read=0,write=0", "every weight is zero"),
            (r, "", "entry \"\" is not op=weight"),
        ] {
            let e = w.parse_op_mix(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn defaults_are_the_workloads_usual_shares() {
        assert_eq!(WorkloadKind::Set.default_mix().share("read"), 0.1);
        assert_eq!(WorkloadKind::ListAppend.default_mix().share("read"), 0.2);
        assert_eq!(
            WorkloadKind::Register.default_mix().to_string(),
            "read=2,write=1,cas=1"
        );
        for w in WorkloadKind::ALL {
            let d = w.default_mix();
            assert_eq!(w.parse_op_mix(&d.to_string()).unwrap(), d);
        }
    }

    #[test]
    fn generators_follow_the_mix() {
        let count = |w: WorkloadKind, spec: &str| {
            let mix = w.parse_op_mix(spec).unwrap();
            let mut g = w.generator_with(5, 4, &mix, 2);
            let mut n = std::collections::BTreeMap::new();
            for i in 0..4000 {
                *n.entry(g.next(i % 4).f.as_str()).or_insert(0) += 1;
            }
            n
        };
        let r = count(WorkloadKind::Register, "write=1");
        assert_eq!(r.into_iter().collect::<Vec<_>>(), vec![("write", 4000)]);
        let r = count(WorkloadKind::Register, "read=1,cas=3");
        assert!((800..1200).contains(&r["read"]), "{r:?}");
        assert!(!r.contains_key("write"), "{r:?}");
        let s = count(WorkloadKind::Set, "add=1,read=1");
        assert!((1800..2200).contains(&s["read"]), "{s:?}");
        let l = count(WorkloadKind::ListAppend, "append=1,read=0");
        assert_eq!(l.into_iter().collect::<Vec<_>>(), vec![("append", 4000)]);
    }
}
