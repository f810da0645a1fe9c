//! What a person reads about one partition: its ops as text, the linearization (full
//! when valid, the longest linearizable prefix otherwise) with the state after each
//! step, and for a failure the point where the search got stuck — the op whose
//! return could not be passed, the ops that were candidates there and whether each
//! was even legal in the state reached.

use super::search::{event_order, Search, Status};
use super::Validity;
use crate::linear::cache::Bits;
use crate::models::{Model, PartOp};
use std::time::Duration;

/// Longest state description kept per step.
const STATE_CHARS: usize = 240;

/// One op of a partition as text.
#[derive(Debug, Clone, PartialEq)]
pub struct OpView {
    /// Index into the paired operation list.
    pub source: usize,
    pub call: u64,
    pub ret: Option<u64>,
    pub description: String,
}

/// Where the search got stuck.
#[derive(Debug, Clone, PartialEq)]
pub struct Counterexample {
    /// Local index of the op whose return no linearization could pass.
    pub blocking: usize,
    /// Local indices of the ops that could have been linearized next, each with
    /// whether it was legal in `state`.
    pub candidates: Vec<(usize, bool)>,
    /// The state after the longest linearizable prefix.
    pub state: String,
}

/// The result of one partition.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub key: Option<String>,
    pub verdict: Validity,
    /// Why the verdict is `unknown`.
    pub reason: Option<String>,
    pub ops: Vec<OpView>,
    /// Local op indices in linearization order: complete when valid, else the
    /// longest linearizable prefix found.
    pub linearization: Vec<usize>,
    /// The state after each step of `linearization` (abbreviated).
    pub states: Vec<String>,
    pub counterexample: Option<Counterexample>,
    pub elapsed: Duration,
    pub cache_entries: usize,
    pub steps: u64,
}

pub(crate) fn abbreviate(mut s: String) -> String {
    if s.chars().count() > STATE_CHARS {
        s = s.chars().take(STATE_CHARS).collect::<String>() + "…";
    }
    s
}

pub(super) fn build<M: Model, B: Bits>(
    key: Option<String>,
    views: &[OpView],
    search: &Search<M, B>,
    status: Status,
    reason: Option<String>,
    elapsed: Duration,
) -> PartitionReport {
    let model = search.model();
    let ops = search.ops();
    let mut state = model.init();
    let mut linearization = Vec::with_capacity(search.best.len());
    let mut states = Vec::with_capacity(search.best.len());
    for &i in &search.best {
        match model.step(&state, &ops[i as usize]) {
            Some(next) => state = next,
            None => break,
        }
        linearization.push(i as usize);
        states.push(abbreviate(model.describe_state(&state)));
    }
    let verdict = match status {
        Status::Linearizable => Validity::Valid,
        Status::NotLinearizable => Validity::Invalid,
        Status::Paused => Validity::Unknown,
    };
    let counterexample = (verdict != Validity::Valid).then(|| {
        let mut done = vec![false; views.len()];
        linearization.iter().for_each(|&i| done[i] = true);
        let shaped: Vec<PartOp<()>> = views
            .iter()
            .map(|v| PartOp {
                source: v.source,
                call: v.call,
                ret: v.ret,
                op: (),
            })
            .collect();
        let mut candidates = Vec::new();
        let mut blocking = 0;
        for (op, is_call) in event_order(&shaped) {
            let op = op as usize;
            if done[op] {
                continue;
            }
            if is_call {
                candidates.push((op, model.step(&state, &ops[op]).is_some()));
            } else {
                blocking = op;
                break;
            }
        }
        Counterexample {
            blocking,
            candidates,
            state: abbreviate(model.describe_state(&state)),
        }
    });
    let mut reason = reason;
    if search.cache_full() {
        let note = "the cache reached its memory limit and stopped growing";
        reason = Some(match reason {
            Some(r) => format!("{r}; {note}"),
            None => note.to_string(),
        });
    }
    PartitionReport {
        key,
        verdict,
        reason,
        ops: views.to_vec(),
        linearization,
        states,
        counterexample,
        elapsed,
        cache_entries: search.cache_len(),
        steps: search.steps,
    }
}
