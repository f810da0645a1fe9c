//! [`Members`]: the distinct elements of a list of integers as a set, a bit per
//! small non-negative value and the rest sorted. A scanning thread reads every
//! long list (a set's final read) straight into one, never into a vector of its
//! elements, so that a checker folds a final read of a million elements as a few
//! thousand words instead of element by element on its own thread; a checker
//! makes one from a short list itself.

/// Lists of integers with at least this many bytes of text are read by the
/// scanning thread into [`Members`] instead of element by element (shorter ones
/// are cheaper to fold directly).
pub const SET_FROM: usize = 16 << 10;

/// Builds a [`Members`] one element at a time.
pub(crate) struct MembersBuilder {
    limit: u64,
    bits: Vec<u64>,
    others: Vec<i64>,
    len: usize,
    /// The word being filled, kept out of `bits` while the values stay in it (a
    /// list read back is mostly ascending: no store and reload per value).
    at: usize,
    word: u64,
}

impl MembersBuilder {
    /// Values in `0..limit` (rounded down to a multiple of 64) become bits.
    fn with_limit(limit: u64) -> Self {
        MembersBuilder {
            limit: limit / 64 * 64,
            bits: Vec::new(),
            others: Vec::new(),
            len: 0,
            at: 0,
            word: 0,
        }
    }

    /// For a list spelled in `bytes` bytes: the bits cost at most as many bytes
    /// as the text, plus 8 KiB.
    pub(crate) fn for_text(bytes: usize) -> Self {
        Self::with_limit(8 * bytes as u64 + (1 << 16))
    }

    #[inline(always)]
    pub(crate) fn insert(&mut self, v: i64) {
        self.len += 1;
        let u = v as u64;
        if u >= self.limit {
            // Negative values too (as u64 they are past any limit).
            self.others.push(v);
            return;
        }
        let w = (u / 64) as usize;
        if w != self.at {
            self.flush();
            self.at = w;
        }
        self.word |= 1 << (u % 64);
    }

    fn flush(&mut self) {
        if self.word == 0 {
            return;
        }
        if self.at >= self.bits.len() {
            let cap = (self.limit / 64) as usize;
            let len = (self.at + 1).max(2 * self.bits.len()).min(cap);
            self.bits.resize(len, 0);
        }
        self.bits[self.at] |= self.word;
        self.word = 0;
    }

    pub(crate) fn finish(mut self) -> Members {
        self.flush();
        // Trailing empty words (room grown ahead) would only narrow what sets
        // have in common as bits.
        while self.bits.last() == Some(&0) {
            self.bits.pop();
        }
        self.others.sort_unstable();
        self.others.dedup();
        Members {
            bits: self.bits,
            others: self.others,
            len: self.len,
        }
    }
}

/// The set of a list's elements: values in `0..limit` as bits (the limit set by
/// the builder from the list's length), the rest listed. Which values a set
/// keeps as bits varies with its builder; only membership is ever asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// Bit `v % 64` of word `v / 64` for each element `v` in `0..limit`.
    bits: Vec<u64>,
    /// Every other element, sorted, without repeats.
    others: Vec<i64>,
    /// Elements in the list (repeats included).
    len: usize,
}

impl Members {
    /// The set of `values`.
    pub fn of(values: &[i64]) -> Members {
        let mut b = MembersBuilder::with_limit(64 * values.len() as u64 + (1 << 16));
        for &v in values {
            b.insert(v);
        }
        b.finish()
    }

    /// Whether `v` is an element.
    #[inline]
    pub fn contains(&self, v: i64) -> bool {
        match u64::try_from(v) {
            Ok(u) if u < self.bit_range() => self.bits[(u / 64) as usize] & (1 << (u % 64)) != 0,
            _ => !self.others.is_empty() && self.others.binary_search(&v).is_ok(),
        }
    }

    /// Every value below this is an element exactly when its bit is set.
    #[inline]
    pub fn bit_range(&self) -> u64 {
        64 * self.bits.len() as u64
    }

    /// The bits (see [`Members::bit_range`]).
    pub fn bits(&self) -> &[u64] {
        &self.bits
    }

    /// The elements outside the bits, sorted, without repeats.
    pub fn others(&self) -> &[i64] {
        &self.others
    }

    /// The list's length, repeats included.
    pub fn list_len(&self) -> usize {
        self.len
    }

    /// Every element, bits first (ascending), then the others (ascending).
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let bits = self.bits.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let b = rest.trailing_zeros();
                    rest &= rest - 1;
                    (w as i64) * 64 + i64::from(b)
                })
            })
        });
        bits.chain(self.others.iter().copied())
    }
}

/// Which values are in every and in some of several sets: a word at a time over
/// the values that every set holds as bits, set by set for the rest.
pub(crate) struct Presence {
    every: Vec<u64>,
    some: Vec<u64>,
}

impl Presence {
    pub(crate) fn of<'s>(sets: impl Iterator<Item = &'s Members> + Clone) -> Presence {
        let words = sets.clone().map(|m| m.bits.len()).min().unwrap_or(0);
        let (mut every, mut some) = (vec![!0u64; words], vec![0u64; words]);
        for m in sets {
            for ((e, s), &w) in every.iter_mut().zip(&mut some).zip(&m.bits) {
                *e &= w;
                *s |= w;
            }
        }
        Presence { every, some }
    }

    /// Whether `v` is in every one of `sets` (those this was made of), and
    /// whether in any.
    #[inline]
    pub(crate) fn of_value<'s>(
        &self,
        v: i64,
        sets: impl ExactSizeIterator<Item = &'s Members>,
    ) -> (bool, bool) {
        match usize::try_from(v) {
            Ok(i) if i / 64 < self.every.len() => {
                let bit = 1 << (i % 64);
                (self.every[i / 64] & bit != 0, self.some[i / 64] & bit != 0)
            }
            _ => {
                let all = sets.len();
                let n = sets.filter(|m| m.contains(v)).count();
                (n == all, n > 0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn presence_is_membership_in_every_and_some_set(
            lists in prop::collection::vec(
                prop::collection::vec(prop_oneof![0i64..700, -3i64..3, 65_530i64..65_600], 0..60),
                0..4,
            ),
            probe in prop::collection::vec(prop_oneof![-4i64..800, 65_500i64..65_700], 1..40),
        ) {
            // Sets of one list built both ways: their bit ranges differ.
            let sets: Vec<Members> = lists
                .iter()
                .enumerate()
                .map(|(i, xs)| match i % 2 {
                    0 => Members::of(xs),
                    _ => {
                        let mut b = MembersBuilder::with_limit(64 * (i as u64 + 1));
                        xs.iter().for_each(|&v| b.insert(v));
                        b.finish()
                    }
                })
                .collect();
            let p = Presence::of(sets.iter());
            for &v in &probe {
                let n = lists.iter().filter(|xs| xs.contains(&v)).count();
                prop_assert_eq!(p.of_value(v, sets.iter()), (n == lists.len(), n > 0), "{}", v);
            }
        }

        #[test]
        fn holds_exactly_the_lists_elements(
            values in prop::collection::vec(prop_oneof![
                0i64..300, any::<i64>(), -5i64..5, Just(i64::MAX), Just(70_000),
                Just((1 << 16) - 1), Just(1 << 16), 65_000i64..300_000
            ], 0..200),
            probe in prop::collection::vec(prop_oneof![-3i64..400, any::<i64>()], 0..50),
            bytes in 0usize..20_000,
        ) {
            let mut want: Vec<i64> = values.clone();
            want.sort_unstable();
            want.dedup();
            let mut b = MembersBuilder::for_text(bytes);
            for &v in &values {
                b.insert(v);
            }
            for m in [Members::of(&values), b.finish()] {
                let mut got: Vec<i64> = m.iter().collect();
                got.sort_unstable();
                prop_assert_eq!(&got, &want);
                for v in probe.iter().chain(&values) {
                    prop_assert_eq!(m.contains(*v), want.binary_search(v).is_ok(), "{}", v);
                }
                prop_assert_eq!(m.list_len(), values.len());
                prop_assert!(m.bits().last() != Some(&0));
                prop_assert!(m.others().iter().all(|&v| v < 0 || v as u64 >= m.bit_range()));
                prop_assert!(m.others().windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
