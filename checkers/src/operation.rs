//! Pairing of a history's invocations with their completions into [`Operation`]s:
//! the unit every linearizability model works on. `ok` gives the result, `fail`
//! says the op definitely did not happen (most models drop it), `info` or a
//! missing completion leave the op open-ended (it may take effect any time after
//! its call). Nemesis and other non-client entries are skipped.

use crate::history::{Op, OpType, Process};
use serde_json::Value;
use std::collections::HashMap;

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Completed with this result value.
    Ok(Value),
    /// Definitely did not happen (for Porcupine's etcd logs: a cas whose compare failed).
    Fail(Value),
    /// `info` or never completed: may or may not have taken effect.
    Unknown,
}

/// One invocation paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// The invocation's value (the argument).
    pub value: Value,
    pub outcome: Outcome,
    /// Ordering coordinate of the call.
    pub call: u64,
    /// Ordering coordinate of the return; `None` when open-ended (`info` or missing).
    pub ret: Option<u64>,
    /// Position of the invocation in the op list that was paired.
    pub invoke_pos: usize,
    /// Position of the completion, if any (also set for `info`).
    pub complete_pos: Option<usize>,
}

impl Operation {
    /// The value a model should read as the result: the completion's value when it
    /// completed `ok`, else the invocation's.
    pub fn result_value(&self) -> &Value {
        match &self.outcome {
            Outcome::Ok(v) => v,
            _ => &self.value,
        }
    }
}

/// What orders calls and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The position in the history (Knossos and Porcupine semantics).
    Position,
    /// The `time` field; ties keep history order and a call sorts before a return.
    TimeField,
}

/// How strictly to pair.
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    pub time: TimeSource,
    /// When a process invokes again while its previous op is still open, leave the
    /// previous op open-ended instead of reporting an error (Porcupine's log parsers
    /// behave this way after an ignored `:info` line).
    pub reinvoke_leaves_open: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            time: TimeSource::Position,
            reinvoke_leaves_open: false,
        }
    }
}

/// A history that cannot be paired, with the position of the offending entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PairError {
    /// Position (0-based) of the offending op in the list handed to [`pair`].
    pub pos: usize,
    pub message: String,
}

/// Pairs invocations with completions. Operations come out in invocation order.
pub fn pair(ops: &[Op], opts: PairOptions) -> Result<Vec<Operation>, PairError> {
    let mut out: Vec<Operation> = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    for (pos, op) in ops.iter().enumerate() {
        let Process::Client(process) = op.process else {
            continue;
        };
        let at = match opts.time {
            TimeSource::Position => pos as u64,
            TimeSource::TimeField => op.time,
        };
        match op.kind {
            OpType::Invoke => {
                if let Some(prev) = open.insert(process, out.len()) {
                    if !opts.reinvoke_leaves_open {
                        return Err(PairError {
                            pos,
                            message: format!(
                                "process {process} invokes {} while its {} invoked at entry {} has not completed",
                                op.f,
                                out[prev].f,
                                out[prev].invoke_pos + 1
                            ),
                        });
                    }
                }
                out.push(Operation {
                    process,
                    f: op.f.clone(),
                    key: op.key.clone(),
                    value: op.value.clone(),
                    outcome: Outcome::Unknown,
                    call: at,
                    ret: None,
                    invoke_pos: pos,
                    complete_pos: None,
                });
            }
            OpType::Ok | OpType::Fail | OpType::Info => {
                let Some(idx) = open.remove(&process) else {
                    return Err(PairError {
                        pos,
                        message: format!(
                            "{} completion of {} by process {process} without a preceding invocation",
                            kind_name(op.kind),
                            op.f
                        ),
                    });
                };
                let target = &mut out[idx];
                if target.f != op.f {
                    return Err(PairError {
                        pos,
                        message: format!(
                            "completion f {:?} of process {process} does not match its invocation f {:?}",
                            op.f, target.f
                        ),
                    });
                }
                if op.key.is_some() && target.key.is_some() && op.key != target.key {
                    return Err(PairError {
                        pos,
                        message: format!(
                            "completion key {:?} of process {process} does not match its invocation key {:?}",
                            op.key.as_deref().unwrap_or_default(),
                            target.key.as_deref().unwrap_or_default()
                        ),
                    });
                }
                target.complete_pos = Some(pos);
                match op.kind {
                    OpType::Ok => {
                        target.outcome = Outcome::Ok(op.value.clone());
                        target.ret = Some(at.max(target.call));
                    }
                    OpType::Fail => {
                        target.outcome = Outcome::Fail(op.value.clone());
                        target.ret = Some(at.max(target.call));
                    }
                    _ => target.outcome = Outcome::Unknown,
                }
            }
        }
    }
    Ok(out)
}

fn kind_name(kind: OpType) -> &'static str {
    match kind {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: Process, kind: OpType, f: &str, value: Value) -> Op {
        Op::new(0, process, kind, f, value)
    }

    #[test]
    fn pairs_ok_fail_info_and_open() {
        let c = Process::Client;
        let ops = vec![
            op(c(1), OpType::Invoke, "write", json!(1)),
            op(c(2), OpType::Invoke, "read", Value::Null),
            op(Process::Nemesis, OpType::Info, "start", Value::Null),
            op(c(1), OpType::Ok, "write", json!(1)),
            op(c(2), OpType::Info, "read", Value::Null),
            op(c(3), OpType::Invoke, "cas", json!([1, 2])),
            op(c(3), OpType::Fail, "cas", json!([1, 2])),
            op(c(4), OpType::Invoke, "read", Value::Null),
        ];
        let paired = pair(&ops, PairOptions::default()).unwrap();
        assert_eq!(paired.len(), 4);
        assert_eq!(paired[0].outcome, Outcome::Ok(json!(1)));
        assert_eq!((paired[0].call, paired[0].ret), (0, Some(3)));
        assert_eq!(paired[1].outcome, Outcome::Unknown);
        assert_eq!(paired[1].ret, None);
        assert_eq!(paired[1].complete_pos, Some(4));
        assert_eq!(paired[2].outcome, Outcome::Fail(json!([1, 2])));
        assert_eq!(paired[3].outcome, Outcome::Unknown);
        assert_eq!(paired[3].complete_pos, None);
    }

    #[test]
    fn completion_without_invoke_is_an_error_at_its_position() {
        let ops = vec![
            op(Process::Client(1), OpType::Invoke, "read", Value::Null),
            op(Process::Client(2), OpType::Ok, "read", json!(3)),
        ];
        let err = pair(&ops, PairOptions::default()).unwrap_err();
        assert_eq!(err.pos, 1);
        assert!(
            err.message.contains("without a preceding invocation"),
            "{err}"
        );
    }

    #[test]
    fn double_invoke_is_an_error_unless_asked_to_leave_open() {
        let ops = vec![
            op(Process::Client(1), OpType::Invoke, "write", json!(1)),
            op(Process::Client(1), OpType::Invoke, "write", json!(2)),
            op(Process::Client(1), OpType::Ok, "write", json!(2)),
        ];
        let err = pair(&ops, PairOptions::default()).unwrap_err();
        assert_eq!(err.pos, 1);
        let opts = PairOptions {
            reinvoke_leaves_open: true,
            ..PairOptions::default()
        };
        let paired = pair(&ops, opts).unwrap();
        assert_eq!(paired[0].ret, None);
        assert_eq!(paired[1].ret, Some(2));
    }

    #[test]
    fn time_field_orders_and_never_returns_before_call() {
        let mut a = op(Process::Client(1), OpType::Invoke, "write", json!(1));
        a.time = 50;
        let mut b = op(Process::Client(1), OpType::Ok, "write", json!(1));
        b.time = 40;
        let opts = PairOptions {
            time: TimeSource::TimeField,
            ..PairOptions::default()
        };
        let paired = pair(&[a, b], opts).unwrap();
        assert_eq!((paired[0].call, paired[0].ret), (50, Some(50)));
    }
}
