//! The etcd register Porcupine checks its Jepsen etcd logs with: one register that
//! starts absent (nil); a read returns the value or nil; a `cas` that completed
//! `fail` is a definite compare failure (it happened, the compare was false); a
//! read that timed out tells nothing; an open write or cas may or may not happen.

use super::{part_op, ConvertError, Model, PartOp, Partition};
use crate::operation::{Operation, Outcome};
use serde_json::Value;

/// A compiled etcd op. Values are integers; `None` is nil (absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdOp {
    Read(Option<i64>),
    Write {
        value: i64,
        maybe: bool,
    },
    /// `ok`: `Some(true)` succeeded, `Some(false)` compare failed, `None` unknown.
    Cas {
        from: i64,
        to: i64,
        ok: Option<bool>,
    },
}

/// The etcd register model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Etcd;

impl Model for Etcd {
    type State = Option<i64>;
    type Op = EtcdOp;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &EtcdOp) -> Option<Option<i64>> {
        match *op {
            EtcdOp::Read(v) => (v == *state).then_some(*state),
            EtcdOp::Write { value, .. } => Some(Some(value)),
            EtcdOp::Cas { from, to, ok } => {
                let matches = *state == Some(from);
                match ok {
                    Some(true) => matches.then_some(Some(to)),
                    Some(false) => (!matches).then_some(*state),
                    None => Some(if matches { Some(to) } else { *state }),
                }
            }
        }
    }

    fn read_only(&self, op: &EtcdOp) -> bool {
        matches!(
            op,
            EtcdOp::Read(_)
                | EtcdOp::Cas {
                    ok: Some(false),
                    ..
                }
        )
    }

    fn describe_op(&self, op: &EtcdOp) -> String {
        match *op {
            EtcdOp::Read(v) => format!("read -> {}", show(v)),
            EtcdOp::Write { value, maybe } => {
                format!("write {value}{}", if maybe { " (?)" } else { "" })
            }
            EtcdOp::Cas { from, to, ok } => format!(
                "cas {from} -> {to}: {}",
                match ok {
                    Some(true) => "ok",
                    Some(false) => "fail",
                    None => "unknown",
                }
            ),
        }
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        show(*state)
    }
}

fn show(v: Option<i64>) -> String {
    v.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

fn int(i: usize, v: &Value, what: &str) -> Result<i64, ConvertError> {
    v.as_i64()
        .ok_or_else(|| ConvertError::new(i, format!("{what} must be an integer, got {v}")))
}

/// Compiles the whole history as one partition (Porcupine does not partition it).
pub fn compile(ops: &[Operation]) -> Result<Vec<Partition<Etcd>>, ConvertError> {
    let mut out: Vec<PartOp<EtcdOp>> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let c = match (op.f.as_str(), &op.outcome) {
            ("read", Outcome::Ok(v)) => Some(EtcdOp::Read(if v.is_null() {
                None
            } else {
                Some(int(i, v, "a read's result")?)
            })),
            ("read", _) => None,
            ("write", Outcome::Fail(_)) => None,
            ("write", outcome) => Some(EtcdOp::Write {
                value: int(i, &op.value, "a write's value")?,
                maybe: *outcome == Outcome::Unknown,
            }),
            ("cas", outcome) => {
                let Value::Array(pair) = &op.value else {
                    return Err(ConvertError::new(
                        i,
                        format!("cas needs a value [from to], got {}", op.value),
                    ));
                };
                if pair.len() != 2 {
                    return Err(ConvertError::new(i, "cas needs exactly [from to]"));
                }
                Some(EtcdOp::Cas {
                    from: int(i, &pair[0], "cas from")?,
                    to: int(i, &pair[1], "cas to")?,
                    ok: match outcome {
                        Outcome::Ok(_) => Some(true),
                        Outcome::Fail(_) => Some(false),
                        Outcome::Unknown => None,
                    },
                })
            }
            (f, _) => {
                return Err(ConvertError::new(
                    i,
                    format!("the etcd model has no function {f:?} (expected read, write, cas)"),
                ))
            }
        };
        if let Some(c) = c {
            out.push(part_op(ops, i, c));
        }
    }
    Ok(vec![Partition {
        key: None,
        model: Etcd,
        ops: out,
    }])
}
