//! Read/write register and compare-and-set register (Knossos `register` and
//! `cas-register`), values interned to small ids, partitioned by key. `fail` ops are
//! dropped; open ops (info, never completed) may take effect or not.

use super::{group_by_key, part_op, ConvertError, Interner, Model, ModelConfig, Partition};
use crate::operation::{Operation, Outcome};
use serde_json::Value;
use std::sync::Arc;

/// A compiled register op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOp {
    /// Read that observed this value id.
    Read(u32),
    /// Write; `maybe` = open, may not have happened.
    Write { value: u32, maybe: bool },
    /// Compare-and-set from `from` to `to`; `maybe` = open (no-op when the compare fails).
    Cas { from: u32, to: u32, maybe: bool },
}

/// One key's register, value ids shared with the other keys for printing.
#[derive(Debug, Clone)]
pub struct Register {
    init: u32,
    values: Arc<Interner>,
}

impl Register {
    pub fn new(init: u32, values: Arc<Interner>) -> Self {
        Register { init, values }
    }
}

impl Model for Register {
    type State = u32;
    type Op = RegOp;

    fn init(&self) -> u32 {
        self.init
    }

    fn step(&self, state: &u32, op: &RegOp) -> Option<u32> {
        match *op {
            RegOp::Read(v) => (v == *state).then_some(*state),
            RegOp::Write { value, .. } => Some(value),
            RegOp::Cas { from, to, maybe } => {
                if from == *state {
                    Some(to)
                } else if maybe {
                    Some(*state)
                } else {
                    None
                }
            }
        }
    }

    fn read_only(&self, op: &RegOp) -> bool {
        matches!(op, RegOp::Read(_))
    }

    /// An open write or cas whose value nothing can observe: no completed read
    /// returned it, no completed cas expects it, and no open cas that expects it
    /// sets a value that is observable in turn. After such an op (or a run of
    /// them) the next op of a linearization can only be a write, which overwrites
    /// the value, so leaving the run out keeps the linearization legal. Open ops
    /// of a run cut short by a time-out (a frozen node's clients) are mostly such.
    fn useless_open(&self, ops: &[RegOp], open: &[bool]) -> Vec<bool> {
        let mut seen = std::collections::HashSet::new();
        for (op, &open) in ops.iter().zip(open) {
            match *op {
                RegOp::Read(v) if !open => {
                    seen.insert(v);
                }
                RegOp::Cas { from, .. } if !open => {
                    seen.insert(from);
                }
                _ => {}
            }
        }
        // An open cas from `from` matters when what it sets is seen.
        loop {
            let before = seen.len();
            for (op, &open) in ops.iter().zip(open) {
                if let RegOp::Cas { from, to, .. } = *op {
                    if open && seen.contains(&to) {
                        seen.insert(from);
                    }
                }
            }
            if seen.len() == before {
                break;
            }
        }
        ops.iter()
            .zip(open)
            .map(|(op, &open)| {
                open && match *op {
                    RegOp::Read(_) => false,
                    RegOp::Write { value, .. } => !seen.contains(&value),
                    RegOp::Cas { to, .. } => !seen.contains(&to),
                }
            })
            .collect()
    }

    fn describe_op(&self, op: &RegOp) -> String {
        let v = |id| self.values.show(id);
        match *op {
            RegOp::Read(x) => format!("read -> {}", v(x)),
            RegOp::Write { value, maybe } => {
                format!("write {}{}", v(value), if maybe { " (?)" } else { "" })
            }
            RegOp::Cas { from, to, maybe } => format!(
                "cas {} -> {}{}",
                v(from),
                v(to),
                if maybe { " (?)" } else { "" }
            ),
        }
    }

    fn describe_state(&self, state: &u32) -> String {
        self.values.show(*state)
    }
}

/// Compiles register ops, one partition per key. `cas` allows the `cas` function.
pub fn compile(
    ops: &[Operation],
    cfg: &ModelConfig,
    cas: bool,
) -> Result<Vec<Partition<Register>>, ConvertError> {
    let mut values = Interner::default();
    let init = values.intern(&cfg.init);
    let mut compiled: Vec<Option<RegOp>> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        compiled.push(convert(i, op, cfg, cas, &mut values)?);
    }
    let values = Arc::new(values);
    Ok(group_by_key(ops, true)
        .into_iter()
        .map(|(key, idx)| Partition {
            key,
            model: Register::new(init, values.clone()),
            ops: idx
                .into_iter()
                .filter_map(|i| compiled[i].map(|c| part_op(ops, i, c)))
                .collect(),
        })
        .collect())
}

fn convert(
    i: usize,
    op: &Operation,
    cfg: &ModelConfig,
    cas: bool,
    values: &mut Interner,
) -> Result<Option<RegOp>, ConvertError> {
    if matches!(op.outcome, Outcome::Fail(_)) {
        return Ok(None);
    }
    let maybe = op.outcome == Outcome::Unknown;
    match op.f.as_str() {
        "read" => {
            let Outcome::Ok(v) = &op.outcome else {
                return Ok(None); // an unknown read constrains nothing
            };
            if v.is_null() && cfg.nil_read_is_unknown {
                return Ok(None);
            }
            Ok(Some(RegOp::Read(values.intern(v))))
        }
        "write" => Ok(Some(RegOp::Write {
            value: values.intern(&op.value),
            maybe,
        })),
        "cas" if cas => match &op.value {
            Value::Array(pair) if pair.len() == 2 => Ok(Some(RegOp::Cas {
                from: values.intern(&pair[0]),
                to: values.intern(&pair[1]),
                maybe,
            })),
            other => Err(ConvertError::new(
                i,
                format!("cas needs a value [from, to], got {other}"),
            )),
        },
        f => Err(ConvertError::new(
            i,
            format!(
                "the {} model has no function {f:?} (expected read, write{})",
                if cas { "cas-register" } else { "register" },
                if cas { ", cas" } else { "" }
            ),
        )),
    }
}
