//! Shared by the oracle property test and the benchmark: a generator of small random
//! concurrent register / cas-register histories (1–2 keys, with `info` and `fail`
//! completions and ops left open), and a brute-force oracle that tries every order
//! of every subset of the open ops, with its own reading of the semantics.

use checkers::history::{Op, OpType, Process};
use checkers::linear::{CheckOptions, Validity};
use checkers::models::{ModelConfig, ModelKind};
use checkers::operation::{pair, Operation, Outcome, PairOptions};
use serde_json::{json, Value};
use std::collections::HashMap;

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Pending {
    process: u64,
    f: &'static str,
    key: String,
    value: Value,
    result: Option<Value>,
}

/// A random history: a simulated register that ops take effect on at random moments
/// inside their intervals, with results sometimes corrupted, `fail` sometimes
/// reported for ops that took effect, and `info` / never-completed ops.
pub fn random_history(rng: &mut Rng, cas: bool) -> Vec<Op> {
    let processes = 1 + rng.below(3);
    let total = 2 + rng.below(6) as usize;
    let keys = 1 + rng.below(2);
    let mut reg: HashMap<String, Value> = HashMap::new();
    let mut busy: HashMap<u64, Pending> = HashMap::new();
    let mut next_process = processes;
    let mut idle: Vec<u64> = (0..processes).collect();
    let mut started = 0;
    let mut out = Vec::new();
    let val = |rng: &mut Rng| json!(rng.below(3));
    while started < total || !busy.is_empty() {
        let can_start = started < total && !idle.is_empty();
        if can_start && (busy.is_empty() || rng.chance(45)) {
            let process = idle.swap_remove(rng.below(idle.len() as u64) as usize);
            let key = format!("k{}", rng.below(keys));
            let (f, value) = match rng.below(if cas { 3 } else { 2 }) {
                0 => ("read", Value::Null),
                1 => ("write", val(rng)),
                _ => ("cas", json!([rng.below(3), rng.below(3)])),
            };
            let mut op = Op::new(
                0,
                Process::Client(process),
                OpType::Invoke,
                f,
                value.clone(),
            );
            op.key = Some(key.clone());
            out.push(op);
            busy.insert(
                process,
                Pending {
                    process,
                    f,
                    key,
                    value,
                    result: None,
                },
            );
            started += 1;
            continue;
        }
        let procs: Vec<u64> = busy.keys().copied().collect();
        let p = procs[rng.below(procs.len() as u64) as usize];
        let effect_now = busy[&p].result.is_none() && rng.chance(50);
        if effect_now || busy[&p].result.is_some() || rng.chance(30) {
            // Take effect now (if not yet) and maybe complete.
            let pend = busy.get_mut(&p).expect("busy");
            if pend.result.is_none() {
                let cur = reg.get(&pend.key).cloned().unwrap_or(Value::Null);
                pend.result = Some(match pend.f {
                    "read" => cur,
                    "write" => {
                        reg.insert(pend.key.clone(), pend.value.clone());
                        json!(true)
                    }
                    _ => {
                        let ok = cur == pend.value[0];
                        if ok {
                            reg.insert(pend.key.clone(), pend.value[1].clone());
                        }
                        json!(ok)
                    }
                });
                if rng.chance(50) {
                    continue;
                }
            }
        }
        let pend = busy.remove(&p).expect("busy");
        let took_effect = pend.result.clone();
        let (kind, value) = match (pend.f, took_effect) {
            (_, None) if rng.chance(50) => (OpType::Info, pend.value.clone()),
            (_, None) => (OpType::Fail, pend.value.clone()),
            ("read", Some(v)) => {
                if rng.chance(30) {
                    (OpType::Ok, val(rng))
                } else {
                    (OpType::Ok, v)
                }
            }
            ("cas", Some(Value::Bool(false))) => (OpType::Fail, pend.value.clone()),
            (_, Some(_)) if rng.chance(15) => (OpType::Fail, pend.value.clone()),
            (_, Some(_)) if rng.chance(10) => (OpType::Info, pend.value.clone()),
            (_, Some(_)) => (OpType::Ok, pend.value.clone()),
        };
        if rng.chance(10) && kind == OpType::Info {
            // Never completes at all: drop the completion, retire the process.
            next_process += 1;
            idle.push(next_process);
            continue;
        }
        let mut op = Op::new(0, Process::Client(pend.process), kind, pend.f, value);
        op.key = Some(pend.key.clone());
        out.push(op);
        if kind == OpType::Info {
            next_process += 1;
            idle.push(next_process);
        } else {
            idle.push(pend.process);
        }
    }
    for (i, op) in out.iter_mut().enumerate() {
        op.index = i as u64;
        op.time = i as u64;
    }
    out
}

/// Brute force: is there an order of all completed ops plus any subset of the open
/// ones, respecting real time, in which every op is legal? Fail ops never happened;
/// open reads say nothing.
pub fn oracle(ops: &[Operation], cas: bool) -> bool {
    let ops: Vec<&Operation> = ops
        .iter()
        .filter(|o| !matches!(o.outcome, Outcome::Fail(_)))
        .filter(|o| !(o.f == "read" && o.outcome == Outcome::Unknown))
        .collect();
    let mut placed = vec![false; ops.len()];
    let mut state: HashMap<String, Value> = HashMap::new();
    search(&ops, &mut placed, &mut state, cas)
}

fn search(
    ops: &[&Operation],
    placed: &mut [bool],
    state: &mut HashMap<String, Value>,
    cas: bool,
) -> bool {
    if ops
        .iter()
        .zip(placed.iter())
        .all(|(o, p)| *p || o.outcome == Outcome::Unknown)
    {
        return true;
    }
    for i in 0..ops.len() {
        if placed[i] {
            continue;
        }
        let o = ops[i];
        // Every completed op that returned before o was called must come first.
        let blocked = ops
            .iter()
            .enumerate()
            .any(|(j, p)| !placed[j] && j != i && p.ret.is_some_and(|r| r < o.call));
        if blocked {
            continue;
        }
        let key = o.key.clone().unwrap_or_default();
        let cur = state.get(&key).cloned().unwrap_or(Value::Null);
        let next = match o.f.as_str() {
            "read" => match &o.outcome {
                Outcome::Ok(v) if *v == cur => Some(cur.clone()),
                _ => None,
            },
            "write" => Some(o.value.clone()),
            "cas" if cas && cur == o.value[0] => Some(o.value[1].clone()),
            _ => None,
        };
        let Some(next) = next else { continue };
        placed[i] = true;
        state.insert(key.clone(), next);
        let ok = search(ops, placed, state, cas);
        state.insert(key, cur);
        placed[i] = false;
        if ok {
            return true;
        }
    }
    false
}

/// Counts of an oracle run.
pub struct OracleStats {
    pub cases: usize,
    pub valid: usize,
}

/// Checks `cases` random histories (half register, half cas-register) against the
/// oracle; panics with the history on the first disagreement.
pub fn oracle_run(cases: usize, seed: u64) -> OracleStats {
    let mut rng = Rng::new(seed);
    let mut valid = 0;
    let opts = CheckOptions {
        threads: 1,
        ..CheckOptions::default()
    };
    for case in 0..cases {
        let cas = case % 2 == 1;
        let history = random_history(&mut rng, cas);
        let ops = pair(&history, PairOptions::default()).expect("generated histories pair");
        let want = oracle(&ops, cas);
        let kind = if cas {
            ModelKind::CasRegister
        } else {
            ModelKind::Register
        };
        let got = kind
            .check(&ops, &ModelConfig::default(), &opts)
            .expect("compiles")
            .verdict;
        let want_v = if want {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        if got != want_v {
            let lines: Vec<String> = history
                .iter()
                .map(|o| serde_json::to_string(o).unwrap_or_default())
                .collect();
            panic!(
                "case {case}: checker says {got}, brute force says {want_v} for\n{}",
                lines.join("\n")
            );
        }
        valid += usize::from(want);
    }
    OracleStats { cases, valid }
}
