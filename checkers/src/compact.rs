//! Compact state for the streaming checkers: a fast hasher for integer and short
//! string keys (histories are our own records, so hash flooding is not a concern),
//! an interner that turns node and key names into dense `u32` ids, and a map keyed
//! by client process id (a vector for the small ids runs hand out), and a counter
//! that keeps the least few of what it counts (a report's examples).

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};

/// A multiply-rotate hasher (the Fx scheme) for small keys.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FastHasher`]s.
#[derive(Default, Clone, Copy)]
pub struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher::default()
    }
}

/// A `HashMap` with [`FastHash`].
pub type FastMap<K, V> = HashMap<K, V, FastHash>;

/// The id standing for "no name".
pub const NONE: u32 = u32::MAX;

/// `a == b`, without a library call for the short names histories use (node and
/// key names of up to sixteen bytes are compared byte by byte in place).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Names to dense ids, first seen first; remembers the last name looked up, since
/// consecutive ops mostly share their key and node.
#[derive(Default)]
pub struct Interner {
    ids: FastMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    last: Option<u32>,
}

impl Interner {
    /// The id of `name`, assigning the next one if it is new. The usual case (the
    /// name looked up last) inlined where it is asked.
    #[inline(always)]
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(last) = self.last {
            if self
                .names
                .get(last as usize)
                .is_some_and(|n| same(n.as_bytes(), name.as_bytes()))
            {
                return last;
            }
        }
        self.look_up(name)
    }

    #[inline(never)]
    fn look_up(&mut self, name: &str) -> u32 {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                // Ids stay below NONE: a history with 4 billion distinct names would
                // not fit in memory long before.
                let id = self.names.len() as u32;
                self.names.push(name.into());
                self.ids.insert(name.into(), id);
                id
            }
        };
        self.last = Some(id);
        id
    }

    /// The id of `name`, or [`NONE`] for no name.
    pub fn opt(&mut self, name: Option<&str>) -> u32 {
        name.map_or(NONE, |n| self.id(n))
    }

    /// The name of `id` (`None` for [`NONE`] or an id never given out).
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Client process ids below this are kept in a vector rather than hashed.
const DENSE_PROCESSES: u64 = 1 << 16;

/// A map from client process id to what it has in flight: a vector for the small
/// ids a run hands out, a hash map for the rest.
pub struct ProcessMap<T> {
    dense: Vec<Option<T>>,
    other: FastMap<u64, T>,
}

impl<T> Default for ProcessMap<T> {
    fn default() -> Self {
        ProcessMap {
            dense: Vec::new(),
            other: FastMap::default(),
        }
    }
}

impl<T> ProcessMap<T> {
    /// Sets what `p` has in flight, replacing what it had.
    #[inline]
    pub fn insert(&mut self, p: u64, v: T) {
        self.insert_with(p, || v)
    }

    /// [`ProcessMap::insert`] of what `make` makes, once there is room for it: it
    /// is then written straight into its slot (a value made first and held
    /// across the growing was stored field by field and copied back in wider
    /// loads, which stalled on every op).
    #[inline]
    pub fn insert_with(&mut self, p: u64, make: impl FnOnce() -> T) {
        if p < DENSE_PROCESSES {
            let i = p as usize;
            if i >= self.dense.len() {
                self.dense.resize_with(i + 1, || None);
            }
            self.dense[i] = Some(make());
        } else {
            self.other.insert(p, make());
        }
    }

    /// Takes what `p` had in flight.
    #[inline]
    pub fn remove(&mut self, p: u64) -> Option<T> {
        if p < DENSE_PROCESSES {
            self.dense.get_mut(p as usize)?.take()
        } else {
            self.other.remove(&p)
        }
    }
}

/// How many values there are, and the `k` least of them.
pub struct Smallest {
    k: usize,
    n: usize,
    heap: BinaryHeap<i64>,
}

impl Smallest {
    pub fn new(k: usize) -> Self {
        Smallest {
            k,
            n: 0,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    pub fn push(&mut self, v: i64) {
        self.n += 1;
        if self.heap.len() < self.k {
            self.heap.push(v);
        } else if self.heap.peek().is_some_and(|&top| v < top) {
            self.heap.pop();
            self.heap.push(v);
        }
    }

    /// Takes in what `other` saw (as if its values had been pushed here).
    pub fn absorb(&mut self, other: Smallest) {
        let n = self.n + other.n;
        for v in other.heap {
            self.push(v);
        }
        self.n = n;
    }

    /// Adds the count to `count` and the least values, ascending, to `examples`.
    pub fn into(self, count: &mut usize, examples: &mut Vec<i64>) {
        *count += self.n;
        examples.extend(self.heap.into_sorted_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_absorbs_another_as_if_its_values_were_pushed() {
        let values: Vec<i64> = (0..500).map(|i| (i * 7919) % 1009 - 300).collect();
        for k in [0, 1, 5, 20, 600] {
            for cut in [0, 1, 250, 499, 500] {
                let mut whole = Smallest::new(k);
                values.iter().for_each(|&v| whole.push(v));
                let (mut a, mut b) = (Smallest::new(k), Smallest::new(k));
                values[..cut].iter().for_each(|&v| a.push(v));
                values[cut..].iter().for_each(|&v| b.push(v));
                a.absorb(b);
                let (mut n1, mut e1, mut n2, mut e2) = (0, Vec::new(), 0, Vec::new());
                whole.into(&mut n1, &mut e1);
                a.into(&mut n2, &mut e2);
                assert_eq!((n1, e1), (n2, e2), "k {k} cut {cut}");
            }
        }
    }

    #[test]
    fn names_of_every_length_keep_their_ids() {
        let names = [
            "",
            "n",
            "n1",
            "n2",
            "n12345678",
            "n1234567",
            "n1234568",
            "set",
            "sets",
            "s\u{e9}t",
            "a-much-longer-key-name",
            "a-much-longer-key-namf",
        ];
        let mut i = Interner::default();
        let ids: Vec<u32> = names.iter().map(|n| i.id(n)).collect();
        assert_eq!(ids, (0..names.len() as u32).collect::<Vec<_>>());
        // Again, in an order where the remembered last name is a near miss.
        for (k, n) in names.iter().enumerate().rev() {
            assert_eq!(i.id(n), k as u32, "{n:?}");
            assert_eq!(i.id(n), k as u32, "{n:?} twice");
        }
        for a in names {
            for b in names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
        assert_eq!(i.name(3), Some("n2"));
        assert_eq!(i.opt(None), NONE);
    }
}
