//! The set checker's report pass over a key's elements ([`Pass`]), and
//! [`halves`], which runs it (and the building of the missing writes) in two
//! halves at once: the report runs after the last line, when only the checker's
//! thread is left working.

use super::{Elem, ACKED, ATTEMPTED, FAILED};
use crate::compact::Smallest;
use crate::scan::{Members, Presence};

/// Elements or missing writes from which the report's passes run in two halves
/// at once (the report runs after the last line, when the scanning threads are
/// done and a core is free).
pub(super) const PAR_FROM: usize = 1 << 14;

/// `f` over `0..n`, in two halves at once from [`PAR_FROM`] on (else the second
/// is empty): the halves' results in order.
pub(super) fn halves<T: Send>(n: usize, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> [T; 2] {
    if n < PAR_FROM {
        return [f(0..n), f(n..n)];
    }
    let mid = n / 2;
    std::thread::scope(|s| {
        let second = std::thread::Builder::new().spawn_scoped(s, || f(mid..n));
        let first = f(0..mid);
        let second = match second {
            Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            // No thread to be had: on this one.
            Err(_) => f(mid..n),
        };
        [first, second]
    })
}

/// What a pass over some of a key's elements finds.
pub(super) struct Pass {
    /// Attempted, acknowledged, failed, indeterminate.
    pub counts: [usize; 4],
    /// Slots of the acknowledged elements not in every final read, and whether
    /// they are in any.
    pub missing: Vec<(u32, bool)>,
    /// Recovered, unexpected, failed but present, stale: their least values.
    pub tallies: [Smallest; 4],
}

impl Pass {
    /// The pass over the elements at `range` (slots), their flags in `flags`,
    /// with `ks` examples kept per category.
    pub(super) fn over(
        elems: &[Elem],
        flags: &[u8],
        range: std::ops::Range<usize>,
        finals: &[(String, Members)],
        presence: &Presence,
        ks: [usize; 4],
    ) -> Pass {
        let has = |flags: u8, f: u8| flags & f != 0;
        let mut p = Pass {
            counts: [0; 4],
            missing: Vec::new(),
            tallies: ks.map(Smallest::new),
        };
        let start = range.start;
        let flags = flags.get(range.clone()).unwrap_or_default();
        let elems = elems.get(range).unwrap_or_default();
        for (s, (e, &fl)) in elems.iter().zip(flags).enumerate() {
            let (attempted, acked, failed) = (has(fl, ATTEMPTED), has(fl, ACKED), has(fl, FAILED));
            let indeterminate = attempted && !acked && !failed;
            p.counts[0] += usize::from(attempted);
            p.counts[1] += usize::from(acked);
            p.counts[2] += usize::from(failed);
            p.counts[3] += usize::from(indeterminate);
            if finals.is_empty() {
                continue;
            }
            let (in_all, in_any) = presence.of_value(e.value, finals.iter().map(|(_, m)| m));
            if acked && !in_all {
                p.missing.push(((start + s) as u32, in_any));
            }
            if in_any {
                if indeterminate {
                    p.tallies[0].push(e.value);
                }
                if !attempted {
                    p.tallies[1].push(e.value);
                }
                if failed {
                    p.tallies[2].push(e.value);
                }
                if acked && e.acked_at < e.stale_before {
                    p.tallies[3].push(e.value);
                }
            }
        }
        p
    }

    /// Both passes' findings, `self`'s elements first.
    pub(super) fn merge(mut self, other: Pass) -> Pass {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.missing.extend(other.missing);
        for (a, b) in self.tallies.iter_mut().zip(other.tallies) {
            a.absorb(b);
        }
        self
    }
}
