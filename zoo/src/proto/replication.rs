//! What replicas exchange, as opposed to what clients ask: the log-based modes'
//! commands and log entries ([`Cmd`], [`Entry`]), `async-failover`'s replicated
//! operations ([`Op`]) with the lineages that name its histories and the full-resync
//! image ([`DataImage`]), and the ring modes' stamped whole-object writes
//! ([`VersionedWrite`]). Re-exported from [`crate::proto`]; the JSON shapes are part
//! of the same stable contract.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Element;

/// One replicated command of the log-based modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Cmd {
    /// Written by a new master to commit its term; changes nothing.
    Noop,
    Add {
        key: String,
        value: Element,
    },
    Write {
        key: String,
        value: Element,
    },
    Cas {
        key: String,
        from: Element,
        to: Element,
    },
    Append {
        key: String,
        value: Element,
    },
}

/// One log entry: a command and the term of the master that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub cmd: Cmd,
}

/// A whole object as `lww-ring` replicates it: the kind and its elements (sets
/// sorted, lists in order, a register as one element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Set,
    List,
    Register,
}

/// One accepted write in the ring modes: the key's whole new value, stamped with the
/// accepting node's wall clock (milliseconds since the Unix epoch, possibly skewed)
/// and its name. `lww-ring`: the larger (`ts_ms`, `origin`) wins everywhere.
/// `vclock-ring`: `vclock` orders writes; concurrent ones are kept as siblings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedWrite {
    pub key: String,
    pub kind: ObjectKind,
    pub values: Vec<Element>,
    pub ts_ms: u64,
    pub origin: String,
    /// `vclock-ring`: node → number of writes it accepted that this one follows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vclock: BTreeMap<String, u64>,
}

/// A history of operations, named by the node that started it when it became master
/// in `epoch`. Two nodes at the same lineage and offset hold the same data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lineage {
    pub epoch: u64,
    pub node: String,
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.epoch)
    }
}

/// Where the current lineage forked from its predecessor: operations up to `offset`
/// of `lineage` are shared, so a replica of the old lineage at or below `offset` can
/// continue incrementally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageFork {
    pub lineage: Lineage,
    pub offset: u64,
}

/// A node's whole data set in a full resync: sets (the original field) plus lists
/// and registers, each omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataImage {
    pub sets: BTreeMap<String, Vec<Element>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lists: BTreeMap<String, Vec<Element>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registers: BTreeMap<String, Element>,
}

/// One replicated operation of `async-failover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    pub value: Element,
    /// What it does with `value`; absent: add to a set (the original shape).
    #[serde(default, skip_serializing_if = "OpKind::is_add")]
    pub kind: OpKind,
}

/// The kind of an [`Op`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum OpKind {
    #[default]
    Add,
    Write,
    Append,
    Cas {
        from: Element,
    },
}

impl OpKind {
    pub fn is_add(&self) -> bool {
        *self == OpKind::Add
    }
}

impl Op {
    /// The command this operation applies.
    pub fn cmd(&self) -> Cmd {
        let (key, value) = (self.key.clone(), self.value);
        match self.kind {
            OpKind::Add => Cmd::Add { key, value },
            OpKind::Write => Cmd::Write { key, value },
            OpKind::Append => Cmd::Append { key, value },
            OpKind::Cas { from } => Cmd::Cas {
                key,
                from,
                to: value,
            },
        }
    }

    /// The operation of a client write command (`None` for a no-op).
    pub fn of(cmd: &Cmd) -> Option<Op> {
        let (key, value, kind) = match cmd {
            Cmd::Noop => return None,
            Cmd::Add { key, value } => (key, *value, OpKind::Add),
            Cmd::Write { key, value } => (key, *value, OpKind::Write),
            Cmd::Append { key, value } => (key, *value, OpKind::Append),
            Cmd::Cas { key, from, to } => (key, *to, OpKind::Cas { from: *from }),
        };
        Some(Op {
            key: key.clone(),
            value,
            kind,
        })
    }
}
