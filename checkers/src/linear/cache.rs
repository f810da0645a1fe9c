//! The search's memory: inline bitsets of linearized ops, a fast non-cryptographic
//! hasher for model states, Zobrist keys for O(1) incremental set hashing, and the
//! cache of visited (linearized set, state) configurations — flat arenas probed in
//! place (nothing is cloned unless the configuration is new), with a byte budget
//! shared by every partition after which it stops growing instead of exhausting RAM.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fixed-capacity set of op indices.
pub trait Bits: Send + 'static {
    fn with_capacity(n: usize) -> Self;
    fn set(&mut self, i: u32);
    fn clear(&mut self, i: u32);
    fn words(&self) -> &[u64];
}

impl<const N: usize> Bits for [u64; N] {
    fn with_capacity(_: usize) -> Self {
        [0; N]
    }
    #[inline(always)]
    fn set(&mut self, i: u32) {
        self[(i >> 6) as usize] |= 1 << (i & 63);
    }
    #[inline(always)]
    fn clear(&mut self, i: u32) {
        self[(i >> 6) as usize] &= !(1 << (i & 63));
    }
    #[inline(always)]
    fn words(&self) -> &[u64] {
        self
    }
}

impl Bits for Box<[u64]> {
    fn with_capacity(n: usize) -> Self {
        vec![0; n.div_ceil(64)].into()
    }
    #[inline(always)]
    fn set(&mut self, i: u32) {
        self[(i >> 6) as usize] |= 1 << (i & 63);
    }
    #[inline(always)]
    fn clear(&mut self, i: u32) {
        self[(i >> 6) as usize] &= !(1 << (i & 63));
    }
    #[inline(always)]
    fn words(&self) -> &[u64] {
        self
    }
}

/// An FxHash-style hasher (multiply-rotate), finished with a 64-bit mixer.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for FastHasher {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline(always)]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(K);
    }
    #[inline(always)]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    #[inline(always)]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    #[inline(always)]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline(always)]
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// SplitMix64's finalizer: a bijective avalanche of 64 bits.
#[inline(always)]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a model state.
#[inline(always)]
pub fn hash_state<S: Hash>(s: &S) -> u64 {
    let mut h = FastHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// One random 64-bit key per op; the set's hash is the XOR of its members' keys.
pub fn zobrist(n: usize, seed: u64) -> Vec<u64> {
    (0..n as u64)
        .map(|i| mix(seed ^ mix(i.wrapping_add(0x9e37_79b9_7f4a_7c15))))
        .collect()
}

/// Keys are already well mixed: hash them by identity.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, _: &[u8]) {
        unreachable!("IdHasher only hashes u64 keys")
    }
    #[inline(always)]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0
    }
}

const NONE: u32 = u32::MAX;

/// A byte budget shared by the caches of one check.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Visited configurations: `hash -> first slot`, slots chained through `next`, the
/// bitset words of slot `i` at `words[i*wpb..]`.
pub struct Cache<S> {
    heads: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    next: Vec<u32>,
    words: Vec<u64>,
    states: Vec<S>,
    wpb: usize,
    budget: Budget,
    unreported: usize,
    per_entry: usize,
    pub full: bool,
}

impl<S: Eq> Cache<S> {
    pub fn new(words_per_set: usize, budget: Budget) -> Self {
        Cache {
            heads: HashMap::default(),
            next: Vec::new(),
            words: Vec::new(),
            states: Vec::new(),
            wpb: words_per_set,
            per_entry: words_per_set * 8 + std::mem::size_of::<S>() + 4 + 24,
            budget,
            unreported: 0,
            full: false,
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Records (bits, state) under hash `h`; false if it was already there. Once the
    /// budget is spent, new configurations are reported new but not stored.
    #[inline]
    pub fn insert(&mut self, h: u64, bits: &[u64], state: &S) -> bool
    where
        S: Clone,
    {
        let head = self.heads.get(&h).copied().unwrap_or(NONE);
        let mut slot = head;
        while slot != NONE {
            let i = slot as usize;
            if self.states[i] == *state && &self.words[i * self.wpb..(i + 1) * self.wpb] == bits {
                return false;
            }
            slot = self.next[i];
        }
        if self.full {
            return true;
        }
        let id = self.states.len() as u32;
        self.words.extend_from_slice(bits);
        self.states.push(state.clone());
        self.next.push(head);
        self.heads.insert(h, id);
        self.unreported += self.per_entry;
        if self.unreported >= 1 << 16 {
            let total = self
                .budget
                .used
                .fetch_add(self.unreported, Ordering::Relaxed)
                + self.unreported;
            self.unreported = 0;
            if total >= self.budget.limit {
                self.full = true;
            }
        }
        true
    }
}

impl<S> Drop for Cache<S> {
    fn drop(&mut self) {
        let mine = self.states.len() * self.per_entry - self.unreported;
        let _ = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(mine))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_distinguishes_state_and_set_and_stops_at_budget() {
        let mut c: Cache<u32> = Cache::new(1, Budget::new(usize::MAX));
        assert!(c.insert(7, &[1], &5));
        assert!(!c.insert(7, &[1], &5));
        assert!(c.insert(7, &[1], &6), "same hash, other state");
        assert!(c.insert(7, &[3], &5), "same hash, other set");
        assert_eq!(c.len(), 3);
        let mut small: Cache<u32> = Cache::new(1, Budget::new(1));
        for i in 0..10_000u64 {
            assert!(small.insert(i, &[i], &0));
        }
        assert!(small.full);
        assert!(small.len() < 10_000);
    }

    #[test]
    fn bitsets_agree() {
        let mut a = <[u64; 2]>::with_capacity(128);
        let mut b = <Box<[u64]>>::with_capacity(128);
        for i in [0, 63, 64, 127] {
            a.set(i);
            b.set(i);
        }
        a.clear(63);
        b.clear(63);
        assert_eq!(a.words(), b.words());
    }
}
