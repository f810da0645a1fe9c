//! The register workload: read / write / cas on many independent keys, a bounded
//! number of processes per key, each key retired after a fixed number of ops and a
//! fresh one taken (Jepsen's independent generator). Judged per key by the
//! linearizability checker against the cas-register model.

use crate::{CheckerResult, Generator, Invocation, OpFn};
use checkers::linear::CheckOptions;
use checkers::models::{ModelConfig, ModelKind};
use checkers::operation::{pair, PairOptions};
use checkers::{Op, Validity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::time::Duration;

/// Processes sharing one key when the user does not say (`--processes-per-key`).
pub const DEFAULT_PROCESSES_PER_KEY: u64 = 2;

/// Shape of the register workload.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Processes sharing one key at a time; clamped to `1..=concurrency` (with the
    /// concurrency, every process works on the same key until it rotates).
    pub processes_per_key: u64,
    /// Ops issued on a key before its group moves on to a fresh key.
    pub ops_per_key: u64,
    /// Values written and compared are drawn from `0..values`.
    pub values: i64,
    /// Relative weights of read, write and cas.
    pub weights: [u32; 3],
    /// Bound on the linearizability search.
    pub check_time_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            processes_per_key: DEFAULT_PROCESSES_PER_KEY,
            ops_per_key: 60,
            values: 5,
            weights: [2, 1, 1],
            check_time_limit: Duration::from_secs(120),
        }
    }
}

struct Group {
    key: u64,
    issued: u64,
}

pub struct RegisterGenerator {
    opts: Options,
    concurrency: u64,
    groups: Vec<Group>,
    next_key: u64,
    rng: ChaCha8Rng,
}

impl RegisterGenerator {
    pub fn new(seed: u64, concurrency: u64, opts: Options) -> Self {
        let concurrency = concurrency.max(1);
        let per = opts.processes_per_key.clamp(1, concurrency);
        let n = concurrency.div_ceil(per);
        RegisterGenerator {
            opts: Options {
                processes_per_key: per,
                ops_per_key: opts.ops_per_key.max(1),
                values: opts.values.max(1),
                ..opts
            },
            concurrency,
            groups: (0..n).map(|k| Group { key: k, issued: 0 }).collect(),
            next_key: n,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The key a process works on now (`r<n>`).
    fn key_for(&mut self, process: u64) -> String {
        let g = ((process % self.concurrency) / self.opts.processes_per_key) as usize;
        let group = &mut self.groups[g];
        if group.issued >= self.opts.ops_per_key {
            group.key = self.next_key;
            group.issued = 0;
            self.next_key += 1;
        }
        group.issued += 1;
        format!("r{}", group.key)
    }
}

impl Generator for RegisterGenerator {
    fn next(&mut self, process: u64) -> Invocation {
        let key = Some(self.key_for(process));
        let [r, w, c] = self.opts.weights;
        let total = (r + w + c).max(1);
        let pick = self.rng.gen_range(0..total);
        let v = self.opts.values;
        let (f, value) = if pick < r {
            (OpFn::ReadRegister, Value::Null)
        } else if pick < r + w {
            (OpFn::Write, json!(self.rng.gen_range(0..v)))
        } else {
            let (a, b) = (self.rng.gen_range(0..v), self.rng.gen_range(0..v));
            (OpFn::Cas, json!([a, b]))
        };
        Invocation {
            f,
            key,
            value,
            is_final: false,
        }
    }

    /// None: a node's local copy read after recovery says nothing about
    /// linearizability, and only the master's answers are judged.
    fn final_reads(&self) -> Vec<Invocation> {
        Vec::new()
    }
}

/// Checks every key's history for linearizability (cas-register, registers start
/// empty: a read of nothing is `null`).
pub fn analyse(history: &[Op]) -> CheckerResult {
    analyse_with(history, Options::default().check_time_limit)
}

pub fn analyse_with(history: &[Op], time_limit: Duration) -> CheckerResult {
    let ops: Vec<Op> = history
        .iter()
        .filter(|o| o.is_client() && matches!(o.f.as_str(), "read" | "write" | "cas"))
        .filter(|o| o.extra.get("final") != Some(&Value::Bool(true)))
        .cloned()
        .collect();
    let fail = |summary: String| CheckerResult {
        checker: "linearizable",
        valid: Validity::Unknown,
        summary,
        details: Value::Null,
    };
    let operations = match pair(&ops, PairOptions::default()) {
        Ok(o) => o,
        Err(e) => return fail(format!("history cannot be paired: {}", e.message)),
    };
    let opts = CheckOptions {
        time_limit: Some(time_limit),
        threads: 2,
        cache_limit: 512 << 20,
        ..CheckOptions::default()
    };
    let result = match ModelKind::CasRegister.check(&operations, &ModelConfig::default(), &opts) {
        Ok(r) => r,
        Err(e) => return fail(format!("op {}: {}", e.op, e.message)),
    };
    let count = |v: Validity| result.partitions.iter().filter(|p| p.verdict == v).count();
    let (invalid, unknown) = (count(Validity::Invalid), count(Validity::Unknown));
    let keys = result.partitions.len();
    let mut summary = match result.verdict {
        Validity::Valid => format!("linearizable: {keys} keys, {} ops", operations.len()),
        Validity::Invalid => format!("NOT linearizable: {invalid} of {keys} keys"),
        Validity::Unknown => format!("unknown: {unknown} of {keys} keys undecided"),
    };
    let failing = result.failing().map(|p| {
        let linearized: Vec<String> = p
            .linearization
            .iter()
            .filter_map(|&i| p.ops.get(i).map(|o| o.description.clone()))
            .collect();
        json!({
            "key": p.key,
            "ops": p.ops.len(),
            "linearizable_prefix": linearized,
            "states": p.states,
            "blocked_at": p.counterexample.as_ref().map(|c| json!({
                "op": p.ops.get(c.blocking).map(|o| o.description.clone()),
                "state": c.state,
            })),
        })
    });
    if let Some(k) = result.failing().and_then(|p| p.key.clone()) {
        summary.push_str(&format!(" (first: {k})"));
    }
    let per_key: Vec<Value> = result
        .partitions
        .iter()
        .map(
            |p| json!({"key": p.key, "verdict": p.verdict, "ops": p.ops.len(), "reason": p.reason}),
        )
        .collect();
    CheckerResult {
        checker: "linearizable",
        valid: result.verdict,
        summary,
        details: json!({
            "model": "cas-register",
            "ops": operations.len(),
            "keys": keys,
            "invalid_keys": invalid,
            "unknown_keys": unknown,
            "elapsed_s": result.elapsed.as_secs_f64(),
            "failing": failing,
            "per_key": per_key,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkers::{OpType, Process};
    use std::collections::HashMap;

    #[test]
    fn keys_are_bounded_per_process_group_and_rotate() {
        let opts = Options {
            ops_per_key: 10,
            ..Options::default()
        };
        let mut g = RegisterGenerator::new(7, 6, opts);
        let mut users: HashMap<String, Vec<u64>> = HashMap::new();
        for round in 0..40u64 {
            for p in 0..6u64 {
                // Process ids retired and renewed keep their slot (p + k*concurrency).
                let inv = g.next(p + 6 * (round % 3));
                users.entry(inv.key.unwrap()).or_default().push(p);
            }
        }
        for (key, ps) in &users {
            let mut distinct = ps.clone();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() <= 2, "{key} used by {distinct:?}");
            assert!(ps.len() <= 10, "{key} got {} ops", ps.len());
        }
        // 240 ops, 10 per key.
        assert_eq!(users.len(), 24);
    }

    /// The keys of `rounds` rounds of every process (ids renewed as a crashed
    /// process's would be: `p + k * concurrency`), in issue order.
    fn keys_issued(g: &mut dyn Generator, concurrency: u64, rounds: u64) -> Vec<String> {
        let mut keys = Vec::new();
        for round in 0..rounds {
            for p in 0..concurrency {
                keys.push(g.next(p + concurrency * (round % 3)).key.unwrap());
            }
        }
        keys
    }

    #[test]
    fn every_process_on_one_key_when_processes_per_key_is_the_concurrency() {
        // Through the same entry point the runner uses, so the option is plumbed.
        let mix = crate::WorkloadKind::Register.default_mix();
        let mut g = crate::WorkloadKind::Register.generator_with(11, 5, &mix, 5);
        let keys = keys_issued(g.as_mut(), 5, 60);
        assert_eq!(keys.len(), 300);
        // One key at a time: 60 ops on r0 from all five processes, then 60 on r1, ...
        for (i, chunk) in keys.chunks(60).enumerate() {
            let want = format!("r{i}");
            assert!(chunk.iter().all(|k| *k == want), "chunk {i}: {chunk:?}");
        }
        // A larger value is clamped to the concurrency: the same schedule.
        let mut clamped = RegisterGenerator::new(
            11,
            5,
            Options {
                processes_per_key: 500,
                ..Options::default()
            },
        );
        assert_eq!(keys_issued(&mut clamped, 5, 60), keys);
        // The default keeps two processes per key: three keys live at once.
        let mut pairs = crate::WorkloadKind::Register.generator_with(11, 5, &mix, 2);
        let first: std::collections::BTreeSet<String> =
            keys_issued(pairs.as_mut(), 5, 1).into_iter().collect();
        assert_eq!(first.len(), 3, "{first:?}");
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = |seed| {
            let mut g = RegisterGenerator::new(seed, 4, Options::default());
            (0..500).map(|i| g.next(i % 4)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let ops = run(3);
        for f in [OpFn::ReadRegister, OpFn::Write, OpFn::Cas] {
            assert!(ops.iter().any(|i| i.f == f), "{f:?} missing");
        }
    }

    fn op(p: u64, kind: OpType, f: &str, key: &str, value: Value) -> Op {
        let mut o = Op::new(0, Process::Client(p), kind, f, value);
        o.key = Some(key.into());
        o
    }

    #[test]
    fn stale_read_is_not_linearizable_and_good_history_is() {
        let good = vec![
            op(1, OpType::Invoke, "write", "r0", json!(1)),
            op(1, OpType::Ok, "write", "r0", json!(1)),
            op(2, OpType::Invoke, "cas", "r0", json!([1, 2])),
            op(2, OpType::Ok, "cas", "r0", json!([1, 2])),
            op(1, OpType::Invoke, "read", "r0", Value::Null),
            op(1, OpType::Ok, "read", "r0", json!(2)),
            op(3, OpType::Invoke, "role", "x", Value::Null),
            op(3, OpType::Ok, "role", "x", json!({"role": "master"})),
        ];
        let r = analyse(&good);
        assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
        let mut bad = good.clone();
        bad[5] = op(1, OpType::Ok, "read", "r0", json!(1));
        let r = analyse(&bad);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.summary);
        assert!(r.summary.contains("r0"), "{}", r.summary);
        // A failed cas is dropped; an info write may or may not have happened.
        let mut open = good.clone();
        open[3] = op(2, OpType::Info, "cas", "r0", json!([1, 2]));
        assert_eq!(analyse(&open).valid, Validity::Valid);
    }
}
