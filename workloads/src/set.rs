//! The set workload: clients add unique integers (through whichever node they are
//! bound to) and now and then read the set; after heal and recovery every node is read
//! once more. Judged by the lost-writes checker.

use crate::{CheckerResult, Generator, Invocation, OpFn};
use checkers::lost_writes;
use checkers::Op;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// The set's key in the history and on the wire.
pub const KEY: &str = "set";

pub struct SetGenerator {
    next_element: i64,
    read_share: f64,
    rng: ChaCha8Rng,
}

impl SetGenerator {
    pub fn new(seed: u64) -> Self {
        Self::with_mix(seed, &crate::WorkloadKind::Set.default_mix())
    }

    /// Reads and adds in the proportions of `mix` (`add`, `read`).
    pub fn with_mix(seed: u64, mix: &crate::OpMix) -> Self {
        SetGenerator {
            next_element: 0,
            read_share: mix.share("read"),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Generator for SetGenerator {
    fn next(&mut self, _process: u64) -> Invocation {
        if self.rng.gen_bool(self.read_share) {
            return Invocation {
                f: OpFn::Read,
                key: Some(KEY.into()),
                value: Value::Null,
                is_final: false,
            };
        }
        let e = self.next_element;
        self.next_element += 1;
        Invocation {
            f: OpFn::Add,
            key: Some(KEY.into()),
            value: json!(e),
            is_final: false,
        }
    }

    fn final_reads(&self) -> Vec<Invocation> {
        vec![Invocation {
            f: OpFn::Read,
            key: Some(KEY.into()),
            value: Value::Null,
            is_final: true,
        }]
    }
}

/// Runs the lost-writes checker and summarises it.
pub fn analyse(history: &[Op]) -> CheckerResult {
    result(lost_writes::check(history))
}

/// The lost-writes checker's report as a [`CheckerResult`].
pub fn result(r: lost_writes::SetReport) -> CheckerResult {
    let mut summary = format!(
        "{} acknowledged, {} lost, {} divergent, {} recovered of {} indeterminate",
        r.acknowledged, r.lost_count, r.divergent_count, r.recovered_count, r.indeterminate
    );
    if r.unexpected_count + r.failed_but_present_count > 0 {
        summary.push_str(&format!(
            ", {} never added but read, {} failed but present",
            r.unexpected_count, r.failed_but_present_count
        ));
    }
    if !r.unknown_reasons.is_empty() {
        summary.push_str(&format!("; unknown: {}", r.unknown_reasons.join("; ")));
    }
    CheckerResult {
        checker: "lost-writes",
        valid: r.valid,
        summary,
        details: serde_json::to_value(&r).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_unique_and_the_mix_is_seeded() {
        let run = |seed| {
            let mut g = SetGenerator::new(seed);
            (0..1000).map(|i| g.next(i % 7)).collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let adds: Vec<i64> = a
            .iter()
            .filter(|i| i.f == OpFn::Add)
            .map(|i| i.value.as_i64().unwrap())
            .collect();
        let mut sorted = adds.clone();
        sorted.dedup();
        assert_eq!(adds, sorted, "elements must be unique and increasing");
        let reads = a.len() - adds.len();
        assert!((50..=150).contains(&reads), "about 10% reads, got {reads}");
        assert!(SetGenerator::new(1).final_reads()[0].is_final);
    }
}
