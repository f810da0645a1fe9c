//! Porcupine's key-value model: a map of string registers with `get`, `put` and
//! `append` (absent = ""), checked per key ([`compile_partitioned`]) or as one
//! object ([`compile_whole`]). A register's value is represented exactly but
//! compactly: as a node of a trie built from every string a `get` returned, so a
//! state is a `u32`. A value that is no prefix of any returned string can never be
//! read again until a `put`, so all such values share one state, [`DEAD`].

use super::{group_by_key, part_op, ConvertError, Model, PartOp, Partition};
use crate::operation::{Operation, Outcome};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The state shared by every value no `get` can observe.
pub const DEAD: u32 = u32::MAX;

/// A byte trie of observed values; node 0 is the empty string.
#[derive(Debug, Clone)]
pub struct Trie {
    children: Vec<Vec<(u8, u32)>>,
    parent: Vec<(u32, u8)>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            children: vec![Vec::new()],
            parent: vec![(0, 0)],
        }
    }
}

impl Trie {
    fn insert(&mut self, s: &[u8]) -> u32 {
        let mut node = 0u32;
        for &b in s {
            node = match self.child(node, b) {
                Some(c) => c,
                None => {
                    let id = self.children.len() as u32;
                    self.children.push(Vec::new());
                    self.parent.push((node, b));
                    self.children[node as usize].push((b, id));
                    id
                }
            };
        }
        node
    }

    #[inline]
    fn child(&self, node: u32, b: u8) -> Option<u32> {
        self.children[node as usize]
            .iter()
            .find(|(c, _)| *c == b)
            .map(|(_, id)| *id)
    }

    /// The node for `from`'s string followed by `s`, or [`DEAD`].
    #[inline]
    pub fn walk(&self, from: u32, s: &[u8]) -> u32 {
        let mut node = from;
        for &b in s {
            if node == DEAD {
                return DEAD;
            }
            node = self.child(node, b).unwrap_or(DEAD);
        }
        node
    }

    pub fn string(&self, node: u32) -> String {
        if node == DEAD {
            return "<a value no get returned>".to_string();
        }
        let mut bytes = Vec::new();
        let mut n = node;
        while n != 0 {
            let (p, b) = self.parent[n as usize];
            bytes.push(b);
            n = p;
        }
        bytes.reverse();
        format!("{:?}", String::from_utf8_lossy(&bytes))
    }
}

/// A compiled kv op on register `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Get { slot: u32, node: u32, text: String },
    Put { slot: u32, value: Box<[u8]> },
    Append { slot: u32, value: Box<[u8]> },
}

fn text(i: usize, v: &Value, what: &str) -> Result<String, ConvertError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ConvertError::new(
            i,
            format!("{what} must be a string, got {other}"),
        )),
    }
}

/// Converts ops to (slot, op) with one trie per slot; `slot_of` names the slot.
fn convert(
    ops: &[Operation],
    idx: &[usize],
    tries: &mut Vec<Trie>,
    mut slot_of: impl FnMut(&Operation) -> u32,
) -> Result<Vec<PartOp<KvOp>>, ConvertError> {
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        let op = &ops[i];
        if matches!(op.outcome, Outcome::Fail(_)) {
            continue;
        }
        let slot = slot_of(op);
        while tries.len() <= slot as usize {
            tries.push(Trie::default());
        }
        let c = match op.f.as_str() {
            "get" => {
                let Outcome::Ok(v) = &op.outcome else {
                    continue; // an unanswered get constrains nothing
                };
                let s = text(i, v, "a get's result")?;
                let node = tries[slot as usize].insert(s.as_bytes());
                KvOp::Get {
                    slot,
                    node,
                    text: s,
                }
            }
            "put" => KvOp::Put {
                slot,
                value: text(i, &op.value, "a put's value")?.into_bytes().into(),
            },
            "append" => KvOp::Append {
                slot,
                value: text(i, &op.value, "an append's value")?.into_bytes().into(),
            },
            f => {
                return Err(ConvertError::new(
                    i,
                    format!("the kv model has no function {f:?} (expected get, put, append)"),
                ))
            }
        };
        out.push(part_op(ops, i, c));
    }
    Ok(out)
}

fn describe(key: &str, op: &KvOp) -> String {
    match op {
        KvOp::Get { text, .. } => format!("get {key} -> {text:?}"),
        KvOp::Put { value, .. } => format!("put {key} {:?}", String::from_utf8_lossy(value)),
        KvOp::Append { value, .. } => {
            format!("append {key} {:?}", String::from_utf8_lossy(value))
        }
    }
}

/// One key of the map.
#[derive(Debug, Clone)]
pub struct KvKey {
    key: String,
    trie: Trie,
}

impl Model for KvKey {
    type State = u32;
    type Op = KvOp;

    fn init(&self) -> u32 {
        0
    }

    #[inline]
    fn step(&self, state: &u32, op: &KvOp) -> Option<u32> {
        match op {
            KvOp::Get { node, .. } => (*node == *state).then_some(*state),
            KvOp::Put { value, .. } => Some(self.trie.walk(0, value)),
            KvOp::Append { value, .. } => Some(self.trie.walk(*state, value)),
        }
    }

    fn read_only(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Get { .. })
    }

    fn describe_op(&self, op: &KvOp) -> String {
        describe(&self.key, op)
    }

    fn describe_state(&self, state: &u32) -> String {
        self.trie.string(*state)
    }
}

/// One partition per key.
pub fn compile_partitioned(ops: &[Operation]) -> Result<Vec<Partition<KvKey>>, ConvertError> {
    let mut parts = Vec::new();
    for (key, idx) in group_by_key(ops, true) {
        let mut tries = Vec::new();
        let converted = convert(ops, &idx, &mut tries, |_| 0)?;
        parts.push(Partition {
            model: KvKey {
                key: key.clone().unwrap_or_default(),
                trie: tries.pop().unwrap_or_default(),
            },
            key,
            ops: converted,
        });
    }
    Ok(parts)
}

/// The node of every key, inline for up to 16 keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Nodes {
    Inline([u32; 16]),
    Heap(Box<[u32]>),
}

impl Nodes {
    fn zeros(n: usize) -> Nodes {
        if n <= 16 {
            Nodes::Inline([0; 16])
        } else {
            Nodes::Heap(vec![0; n].into())
        }
    }

    #[inline]
    fn get(&self, slot: u32) -> u32 {
        match self {
            Nodes::Inline(a) => a[slot as usize],
            Nodes::Heap(a) => a[slot as usize],
        }
    }

    #[inline]
    fn with(&self, slot: u32, node: u32) -> Nodes {
        let mut n = self.clone();
        match &mut n {
            Nodes::Inline(a) => a[slot as usize] = node,
            Nodes::Heap(a) => a[slot as usize] = node,
        }
        n
    }
}

/// The whole map as one object.
#[derive(Debug, Clone)]
pub struct KvMap {
    keys: Arc<Vec<String>>,
    tries: Vec<Trie>,
}

impl Model for KvMap {
    type State = Nodes;
    type Op = KvOp;

    fn init(&self) -> Nodes {
        Nodes::zeros(self.keys.len())
    }

    #[inline]
    fn step(&self, state: &Nodes, op: &KvOp) -> Option<Nodes> {
        match op {
            KvOp::Get { slot, node, .. } => (state.get(*slot) == *node).then(|| state.clone()),
            KvOp::Put { slot, value } => {
                Some(state.with(*slot, self.tries[*slot as usize].walk(0, value)))
            }
            KvOp::Append { slot, value } => {
                let t = &self.tries[*slot as usize];
                Some(state.with(*slot, t.walk(state.get(*slot), value)))
            }
        }
    }

    fn read_only(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Get { .. })
    }

    fn describe_op(&self, op: &KvOp) -> String {
        let slot = match op {
            KvOp::Get { slot, .. } | KvOp::Put { slot, .. } | KvOp::Append { slot, .. } => *slot,
        };
        describe(&self.keys[slot as usize], op)
    }

    fn footprint(&self, op: &KvOp) -> Option<u32> {
        Some(match op {
            KvOp::Get { slot, .. } | KvOp::Put { slot, .. } | KvOp::Append { slot, .. } => *slot,
        })
    }

    fn component_name(&self, c: u32) -> Option<String> {
        self.keys.get(c as usize).cloned()
    }

    fn describe_state(&self, state: &Nodes) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k}: {}", self.tries[i].string(state.get(i as u32))))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// The whole history as one partition over the map.
pub fn compile_whole(ops: &[Operation]) -> Result<Vec<Partition<KvMap>>, ConvertError> {
    let mut slots: HashMap<String, u32> = HashMap::new();
    let mut keys = Vec::new();
    let mut tries = Vec::new();
    let idx: Vec<usize> = (0..ops.len()).collect();
    let converted = convert(ops, &idx, &mut tries, |op| {
        let k = op.key.clone().unwrap_or_default();
        *slots.entry(k.clone()).or_insert_with(|| {
            keys.push(k);
            (keys.len() - 1) as u32
        })
    })?;
    tries.resize_with(keys.len(), Trie::default);
    Ok(vec![Partition {
        key: None,
        model: KvMap {
            keys: Arc::new(keys),
            tries,
        },
        ops: converted,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_walks_exactly_and_dead_absorbs() {
        let mut t = Trie::default();
        let ab = t.insert(b"ab");
        let a = t.walk(0, b"a");
        assert_eq!(t.walk(a, b"b"), ab);
        assert_eq!(t.walk(ab, b"c"), DEAD);
        assert_eq!(t.walk(DEAD, b""), DEAD);
        assert_eq!(t.walk(DEAD, b"x"), DEAD);
        assert_eq!(t.string(ab), "\"ab\"");
    }
}
