//! Sequential specifications for the linearizability search: the [`Model`] trait
//! (init, step, equal/hash through the state type, describe), the compiled
//! [`Partition`]s a model family builds from paired operations (partitioning is the
//! family's job: by key where keys are independent), and [`ModelKind`], the closed
//! set of families the CLI can name.

pub mod etcd;
pub mod kv;
pub mod misc;
pub mod register;

use crate::linear::{self, CheckOptions, CheckResult};
use crate::operation::Operation;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential object. States are compared and hashed for the search's cache, so
/// two states must be equal exactly when the object behaves the same from them.
pub trait Model: Clone + Send + Sync + 'static {
    type State: Clone + Eq + Hash + Send + Debug;
    /// One compiled operation: input and observed output together.
    type Op: Send + Sync + Debug + PartialEq;
    fn init(&self) -> Self::State;
    /// The state after `op`, or `None` when `op` cannot have happened in `state`
    /// with the output it observed.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// True when `op` never changes the state wherever it is legal (a read). The
    /// search commits to such an op as soon as it is legal, without backtracking
    /// over that choice: moving a state-preserving op earlier to a point where it is
    /// legal never breaks a linearization.
    fn read_only(&self, op: &Self::Op) -> bool;
    /// Which open ops (`open[i]`: no return) no linearization needs, so the search
    /// may leave them out: for each such op, every linearization that places it can
    /// drop it and stay legal. Default: none.
    fn useless_open(&self, ops: &[Self::Op], open: &[bool]) -> Vec<bool> {
        let _ = open;
        vec![false; ops.len()]
    }
    fn describe_op(&self, op: &Self::Op) -> String;
    fn describe_state(&self, state: &Self::State) -> String;
    /// The independent component of the state `op` reads and writes, if the model
    /// is a product of independent objects (a map of registers: the key's slot).
    /// When every op of a partition names one, the checker may split it by
    /// component (Herlihy and Wing's locality: a history of independent objects is
    /// linearizable exactly when each object's sub-history is).
    fn footprint(&self, _op: &Self::Op) -> Option<u32> {
        None
    }
    /// The name of a component (a key) for reports.
    fn component_name(&self, _component: u32) -> Option<String> {
        None
    }
}

/// One operation compiled for a model, with its interval in the partition's order.
#[derive(Debug, Clone)]
pub struct PartOp<O> {
    /// Index into the paired operation list.
    pub source: usize,
    pub call: u64,
    /// `None` = open-ended.
    pub ret: Option<u64>,
    pub op: O,
}

/// An independently checkable piece of a history (one key, or everything).
pub struct Partition<M: Model> {
    pub key: Option<String>,
    pub model: M,
    pub ops: Vec<PartOp<M::Op>>,
}

/// An operation the model cannot interpret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConvertError {
    /// Index into the paired operation list.
    pub op: usize,
    pub message: String,
}

impl ConvertError {
    pub fn new(op: usize, message: impl Into<String>) -> Self {
        ConvertError {
            op,
            message: message.into(),
        }
    }
}

/// Maps JSON values to small ids; id 0 is `null` (nil).
#[derive(Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<Value>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            ids: HashMap::from([("null".to_string(), 0)]),
            values: vec![Value::Null],
        }
    }
}

impl Interner {
    pub fn intern(&mut self, v: &Value) -> u32 {
        let text = v.to_string();
        if let Some(id) = self.ids.get(&text) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(text, id);
        self.values.push(v.clone());
        id
    }

    /// How many distinct values (including nil) were seen.
    pub fn values_len(&self) -> usize {
        self.values.len()
    }

    pub fn value(&self, id: u32) -> &Value {
        self.values.get(id as usize).unwrap_or(&Value::Null)
    }

    pub fn show(&self, id: u32) -> String {
        match self.value(id) {
            Value::Null => "nil".to_string(),
            v => v.to_string(),
        }
    }
}

/// Groups operation indices by key, in order of first appearance (keys sorted).
pub fn group_by_key(ops: &[Operation], by_key: bool) -> Vec<(Option<String>, Vec<usize>)> {
    if !by_key {
        return vec![(None, (0..ops.len()).collect())];
    }
    let mut groups: HashMap<Option<String>, Vec<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        groups.entry(op.key.clone()).or_default().push(i);
    }
    let mut out: Vec<_> = groups.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The model families `splitbrain check --model` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// read / write, partitioned by key.
    Register,
    /// read / write / cas, partitioned by key.
    CasRegister,
    /// get / put / append on a map of string registers, partitioned by key.
    Kv,
    /// The same map checked as one object (no partitioning).
    KvNoPartition,
    /// add / read of a whole set, partitioned by key.
    Set,
    /// Porcupine's etcd register: read (nil = absent), write, cas with ok/fail results.
    Etcd,
    /// acquire / release of one lock.
    Mutex,
    /// Knossos multi-register: txn of [:read k v] / [:write k v] micro-ops.
    MultiRegister,
}

impl ModelKind {
    pub const ALL: [ModelKind; 8] = [
        ModelKind::Register,
        ModelKind::CasRegister,
        ModelKind::Kv,
        ModelKind::KvNoPartition,
        ModelKind::Set,
        ModelKind::Etcd,
        ModelKind::Mutex,
        ModelKind::MultiRegister,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::KvNoPartition => "kv-no-partition",
            ModelKind::Set => "set",
            ModelKind::Etcd => "etcd",
            ModelKind::Mutex => "mutex",
            ModelKind::MultiRegister => "multi-register",
        }
    }

    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Guesses the family from the functions a history uses.
    pub fn infer(ops: &[Operation]) -> Option<ModelKind> {
        let has = |f: &str| ops.iter().any(|o| o.f == f);
        if has("txn") {
            Some(ModelKind::MultiRegister)
        } else if has("acquire") || has("release") {
            Some(ModelKind::Mutex)
        } else if has("get") || has("put") || has("append") {
            Some(ModelKind::Kv)
        } else if has("add") {
            Some(ModelKind::Set)
        } else if has("cas") {
            Some(ModelKind::CasRegister)
        } else if has("read") || has("write") {
            Some(ModelKind::Register)
        } else {
            None
        }
    }

    /// Compiles `ops` for this family and runs the search.
    pub fn check(
        self,
        ops: &[Operation],
        cfg: &ModelConfig,
        opts: &CheckOptions,
    ) -> Result<CheckResult, ConvertError> {
        Ok(match self {
            ModelKind::Register | ModelKind::CasRegister => {
                let parts = register::compile(ops, cfg, self == ModelKind::CasRegister)?;
                linear::check(parts, opts)
            }
            ModelKind::Kv => linear::check(kv::compile_partitioned(ops)?, opts),
            ModelKind::KvNoPartition => linear::check(kv::compile_whole(ops)?, opts),
            ModelKind::Set => linear::check(misc::compile_set(ops)?, opts),
            ModelKind::Etcd => linear::check(etcd::compile(ops)?, opts),
            ModelKind::Mutex => linear::check(misc::compile_mutex(ops)?, opts),
            ModelKind::MultiRegister => {
                linear::check(misc::compile_multi_register(ops, cfg)?, opts)
            }
        })
    }
}

/// Settings of the register-like families.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Initial value of every register (`null` = nil / absent).
    pub init: Value,
    /// Knossos semantics: a read that returned nil tells nothing and is always legal.
    pub nil_read_is_unknown: bool,
    /// Initial values per key for the multi-register (missing keys start at `init`).
    pub multi_init: Vec<(String, Value)>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            init: Value::Null,
            nil_read_is_unknown: false,
            multi_init: Vec::new(),
        }
    }
}

/// Builds a [`PartOp`] for operation `i`.
pub(crate) fn part_op<O>(ops: &[Operation], i: usize, op: O) -> PartOp<O> {
    PartOp {
        source: i,
        call: ops[i].call,
        ret: ops[i].ret,
        op,
    }
}
