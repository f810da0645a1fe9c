//! The smaller model families: a grow-only set read whole (partitioned by key), a
//! mutex (acquire / release, per key), and Knossos' multi-register (`txn` of
//! `[:read k v]` / `[:write k v]` micro-ops, one object). `fail` ops are dropped and
//! open ops may or may not take effect.

use super::{group_by_key, part_op, ConvertError, Interner, Model, ModelConfig, Partition};
use crate::operation::{Operation, Outcome};
use serde_json::Value;
use std::sync::Arc;

/// A set op; elements are interned ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    Add(u32),
    /// A read of the whole set, as a bitset of element ids.
    Read(Vec<u64>),
    /// A read that returned some element twice: never legal.
    ReadWithDuplicates(String),
}

/// A grow-only set of JSON values.
#[derive(Debug, Clone)]
pub struct SetModel {
    words: usize,
    values: Arc<Interner>,
}

fn bit(words: &mut [u64], id: u32) {
    words[(id / 64) as usize] |= 1 << (id % 64);
}

impl Model for SetModel {
    type State = Vec<u64>;
    type Op = SetOp;

    fn init(&self) -> Vec<u64> {
        vec![0; self.words]
    }

    fn step(&self, state: &Vec<u64>, op: &SetOp) -> Option<Vec<u64>> {
        match op {
            SetOp::Add(e) => {
                let mut s = state.clone();
                bit(&mut s, *e);
                Some(s)
            }
            SetOp::Read(r) => (r == state).then(|| state.clone()),
            SetOp::ReadWithDuplicates(_) => None,
        }
    }

    fn read_only(&self, op: &SetOp) -> bool {
        matches!(op, SetOp::Read(_) | SetOp::ReadWithDuplicates(_))
    }

    fn describe_op(&self, op: &SetOp) -> String {
        match op {
            SetOp::Add(e) => format!("add {}", self.values.show(*e)),
            SetOp::Read(r) => format!("read -> {}", self.describe_state(r)),
            SetOp::ReadWithDuplicates(text) => format!("read -> {text} (duplicates)"),
        }
    }

    fn describe_state(&self, state: &Vec<u64>) -> String {
        let mut items = Vec::new();
        for (w, word) in state.iter().enumerate() {
            for b in 0..64 {
                if word & (1 << b) != 0 {
                    items.push(self.values.show((w * 64 + b) as u32));
                }
            }
        }
        format!("#{{{}}}", items.join(" "))
    }
}

/// Compiles set ops, one partition per key.
pub fn compile_set(ops: &[Operation]) -> Result<Vec<Partition<SetModel>>, ConvertError> {
    let mut values = Interner::default();
    let mut staged: Vec<Option<(bool, Vec<u32>)>> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        staged.push(match (op.f.as_str(), &op.outcome) {
            (_, Outcome::Fail(_)) => None,
            ("add", _) => Some((true, vec![values.intern(&op.value)])),
            ("read", Outcome::Ok(Value::Array(items))) => {
                Some((false, items.iter().map(|v| values.intern(v)).collect()))
            }
            ("read", Outcome::Ok(other)) => {
                return Err(ConvertError::new(
                    i,
                    format!("a set read must return a list, got {other}"),
                ))
            }
            ("read", _) => None,
            (f, _) => {
                return Err(ConvertError::new(
                    i,
                    format!("the set model has no function {f:?} (expected add, read)"),
                ))
            }
        });
    }
    let words = values.values_len().div_ceil(64).max(1);
    let values = Arc::new(values);
    let build = |i: usize, add: bool, ids: &[u32]| {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if add {
            part_op(ops, i, SetOp::Add(ids[0]))
        } else if sorted.len() != ids.len() {
            let text = ops[i].result_value().to_string();
            part_op(ops, i, SetOp::ReadWithDuplicates(text))
        } else {
            let mut w = vec![0; words];
            ids.iter().for_each(|id| bit(&mut w, *id));
            part_op(ops, i, SetOp::Read(w))
        }
    };
    Ok(group_by_key(ops, true)
        .into_iter()
        .map(|(key, idx)| Partition {
            key,
            model: SetModel {
                words,
                values: values.clone(),
            },
            ops: idx
                .into_iter()
                .filter_map(|i| staged[i].as_ref().map(|(add, ids)| build(i, *add, ids)))
                .collect(),
        })
        .collect())
}

/// A mutex op; `maybe` = open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexOp {
    Acquire { maybe: bool },
    Release { maybe: bool },
}

/// One lock, initially free.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

impl Model for Mutex {
    type State = bool;
    type Op = MutexOp;

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match *op {
            MutexOp::Acquire { maybe } => match (*held, maybe) {
                (false, _) => Some(true),
                (true, true) => Some(true),
                (true, false) => None,
            },
            MutexOp::Release { maybe } => match (*held, maybe) {
                (true, _) => Some(false),
                (false, true) => Some(false),
                (false, false) => None,
            },
        }
    }

    fn read_only(&self, _: &MutexOp) -> bool {
        false
    }

    fn describe_op(&self, op: &MutexOp) -> String {
        match op {
            MutexOp::Acquire { maybe } => format!("acquire{}", if *maybe { " (?)" } else { "" }),
            MutexOp::Release { maybe } => format!("release{}", if *maybe { " (?)" } else { "" }),
        }
    }

    fn describe_state(&self, held: &bool) -> String {
        if *held { "held" } else { "free" }.to_string()
    }
}

/// Compiles mutex ops, one partition per key.
pub fn compile_mutex(ops: &[Operation]) -> Result<Vec<Partition<Mutex>>, ConvertError> {
    let mut parts = Vec::new();
    for (key, idx) in group_by_key(ops, true) {
        let mut out = Vec::new();
        for i in idx {
            let op = &ops[i];
            let maybe = op.outcome == Outcome::Unknown;
            let c = match (op.f.as_str(), &op.outcome) {
                (_, Outcome::Fail(_)) => continue,
                ("acquire", _) => MutexOp::Acquire { maybe },
                ("release", _) => MutexOp::Release { maybe },
                (f, _) => {
                    return Err(ConvertError::new(
                        i,
                        format!(
                            "the mutex model has no function {f:?} (expected acquire, release)"
                        ),
                    ))
                }
            };
            out.push(part_op(ops, i, c));
        }
        parts.push(Partition {
            key,
            model: Mutex,
            ops: out,
        });
    }
    Ok(parts)
}

/// One micro-op of a multi-register transaction; reads of `None` are unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Micro {
    Read(u32, Option<u32>),
    Write(u32, u32),
}

/// A transaction; `maybe` = open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub micro: Vec<Micro>,
    pub maybe: bool,
}

/// Several registers changed together by transactions.
#[derive(Debug, Clone)]
pub struct MultiRegister {
    init: Vec<u32>,
    keys: Vec<Value>,
    values: Arc<Interner>,
}

impl Model for MultiRegister {
    type State = Vec<u32>;
    type Op = Txn;

    fn init(&self) -> Vec<u32> {
        self.init.clone()
    }

    fn step(&self, state: &Vec<u32>, op: &Txn) -> Option<Vec<u32>> {
        let mut s = state.clone();
        for m in &op.micro {
            match *m {
                Micro::Read(k, Some(v)) if s[k as usize] != v => {
                    return op.maybe.then(|| state.clone());
                }
                Micro::Read(..) => {}
                Micro::Write(k, v) => s[k as usize] = v,
            }
        }
        Some(s)
    }

    fn read_only(&self, op: &Txn) -> bool {
        op.micro.iter().all(|m| matches!(m, Micro::Read(..)))
    }

    fn describe_op(&self, op: &Txn) -> String {
        let parts: Vec<String> = op
            .micro
            .iter()
            .map(|m| match *m {
                Micro::Read(k, v) => format!(
                    "r {} {}",
                    self.keys[k as usize],
                    v.map_or("nil".to_string(), |v| self.values.show(v))
                ),
                Micro::Write(k, v) => {
                    format!("w {} {}", self.keys[k as usize], self.values.show(v))
                }
            })
            .collect();
        format!(
            "txn [{}]{}",
            parts.join(", "),
            if op.maybe { " (?)" } else { "" }
        )
    }

    fn describe_state(&self, state: &Vec<u32>) -> String {
        let parts: Vec<String> = state
            .iter()
            .enumerate()
            .skip(1)
            .map(|(k, v)| format!("{} {}", self.keys[k], self.values.show(*v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// Compiles `txn` ops into one partition.
pub fn compile_multi_register(
    ops: &[Operation],
    cfg: &ModelConfig,
) -> Result<Vec<Partition<MultiRegister>>, ConvertError> {
    let mut values = Interner::default();
    let mut keys = Interner::default();
    let mut init: Vec<u32> = vec![values.intern(&cfg.init)];
    let slot = |k: &Value, keys: &mut Interner, init: &mut Vec<u32>| {
        let id = keys.intern(k) as usize;
        while init.len() <= id {
            init.push(init[0]);
        }
        id as u32
    };
    for (k, v) in &cfg.multi_init {
        let id = slot(&Value::String(k.clone()), &mut keys, &mut init);
        init[id as usize] = values.intern(v);
    }
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op.outcome, Outcome::Fail(_)) {
            continue;
        }
        if op.f != "txn" {
            return Err(ConvertError::new(
                i,
                format!(
                    "the multi-register model has no function {:?} (expected txn)",
                    op.f
                ),
            ));
        }
        let Value::Array(items) = op.result_value() else {
            return Err(ConvertError::new(
                i,
                "a txn's value must be a list of micro-ops",
            ));
        };
        let mut micro = Vec::with_capacity(items.len());
        for item in items {
            let bad =
                || ConvertError::new(i, format!("bad micro-op {item}: expected [f key value]"));
            let Value::Array(parts) = item else {
                return Err(bad());
            };
            let [f, k, v] = parts.as_slice() else {
                return Err(bad());
            };
            let k = slot(k, &mut keys, &mut init);
            micro.push(match f.as_str() {
                Some("read") => Micro::Read(k, (!v.is_null()).then(|| values.intern(v))),
                Some("write") => Micro::Write(k, values.intern(v)),
                _ => return Err(bad()),
            });
        }
        let maybe = op.outcome == Outcome::Unknown;
        if maybe && micro.iter().all(|m| matches!(m, Micro::Read(..))) {
            continue;
        }
        out.push(part_op(ops, i, Txn { micro, maybe }));
    }
    let key_names = (0..init.len() as u32)
        .map(|k| keys.value(k).clone())
        .collect();
    Ok(vec![Partition {
        key: None,
        model: MultiRegister {
            init,
            keys: key_names,
            values: Arc::new(values),
        },
        ops: out,
    }])
}

#[cfg(test)]
mod tests {
    use crate::formats::Format;
    use crate::linear::{CheckOptions, Validity};
    use crate::models::ModelKind;
    use crate::pipeline::{check, prepare};

    fn verdict(model: ModelKind, edn: &str) -> Validity {
        let p = prepare(Format::Edn, Some(model), edn).unwrap();
        check(&p, &CheckOptions::default()).unwrap().verdict
    }

    /// Porcupine's set examples: two concurrent adds and a concurrent read.
    fn set_history(read: &str) -> String {
        format!(
            "[{{:process 0 :type :invoke :f :add :value 100}} {{:process 1 :type :invoke :f :add :value 110}}
              {{:process 2 :type :invoke :f :read :value nil}} {{:process 2 :type :ok :f :read :value {read}}}
              {{:process 1 :type :ok :f :add :value 110}} {{:process 0 :type :ok :f :add :value 100}}]"
        )
    }

    #[test]
    fn set_reads_are_checked_whole() {
        assert_eq!(
            verdict(ModelKind::Set, &set_history("[100]")),
            Validity::Valid
        );
        assert_eq!(
            verdict(ModelKind::Set, &set_history("[110 100]")),
            Validity::Valid
        );
        assert_eq!(verdict(ModelKind::Set, &set_history("[]")), Validity::Valid);
        assert_eq!(
            verdict(ModelKind::Set, &set_history("[100 100 110]")),
            Validity::Invalid
        );
        assert_eq!(
            verdict(ModelKind::Set, &set_history("[7]")),
            Validity::Invalid
        );
    }

    #[test]
    fn mutex_allows_one_holder_and_open_ops_may_not_happen() {
        let two_holders =
            "[{:process 0 :type :invoke :f :acquire} {:process 0 :type :ok :f :acquire}
            {:process 1 :type :invoke :f :acquire} {:process 1 :type :ok :f :acquire}]";
        assert_eq!(verdict(ModelKind::Mutex, two_holders), Validity::Invalid);
        let open_second =
            "[{:process 0 :type :invoke :f :acquire} {:process 0 :type :ok :f :acquire}
            {:process 1 :type :invoke :f :acquire} {:process 1 :type :info :f :acquire}
            {:process 0 :type :invoke :f :release} {:process 0 :type :ok :f :release}]";
        assert_eq!(verdict(ModelKind::Mutex, open_second), Validity::Valid);
    }

    #[test]
    fn multi_register_txns_read_their_own_and_others_writes() {
        let ok = "[{:process 0 :type :invoke :f :txn :value [[:write :x 1] [:read :x nil]]}
            {:process 0 :type :ok :f :txn :value [[:write :x 1] [:read :x 1]]}
            {:process 1 :type :invoke :f :txn :value [[:read :x nil] [:read :y nil]]}
            {:process 1 :type :ok :f :txn :value [[:read :x 1] [:read :y 0]]}]";
        assert_eq!(verdict(ModelKind::MultiRegister, ok), Validity::Valid);
        let stale = ok.replace("[:read :x 1] [:read :y 0]", "[:read :x 0] [:read :y 0]");
        assert_eq!(verdict(ModelKind::MultiRegister, &stale), Validity::Invalid);
    }
}
