//! What a scanning thread hands the checker's thread per line: [`Entry`], a
//! scanned line as plain numbers and byte spans into its block (no borrow, no
//! allocation; 64 bytes, a cache line, written by one core and read by another),
//! or the index of a line outside the fast subset that serde parsed.

use crate::history::{OpType, Process};
use crate::scan::{Members, OpView, ValueRef};

/// A piece of the block's text, by byte offsets.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

const NO_SPAN: Span = Span {
    start: u32::MAX,
    end: u32::MAX,
};

/// [`Fast::flags`]: `epoch` holds the line's epoch.
const EPOCH: u8 = 1;
/// [`Fast::flags`]: the process is the nemesis (`process` is then 0).
const NEMESIS: u8 = 2;
/// [`Fast::flags`]: the extra field `final` is `true`.
const FINAL: u8 = 4;
/// [`Fast::flags`]: the value is an array of integers, its elements at
/// `extra >> 32 .. extra & u32::MAX` of the batch's integers.
const INTS: u8 = 8;
/// [`Fast::flags`]: the value is an integer, `extra` its bits as `i64`.
const INT: u8 = 16;
/// [`Fast::flags`]: the value's set is the batch's set number `extra`.
const MEMBERS: u8 = 32;

/// The short strings of a line (`f`, `key`, `node`, `acked_by`, in this order in
/// [`Fast::short`] and [`Fast::len`]): where each starts (`u32::MAX`: none) and
/// its length (a longer string takes serde's path).
const F: usize = 0;
const KEY: usize = 1;
const NODE: usize = 2;
const ACKED_BY: usize = 3;

/// Where `s` sits in `base` and its length, when it is a piece of it shorter
/// than 256 bytes.
#[inline(always)]
fn short(base: &str, s: &str) -> Option<(u32, u8)> {
    let sp = span_in(base, s)?;
    Some((sp.start, u8::try_from(sp.end - sp.start).ok()?))
}

/// One scanned line: [`OpView`] with spans instead of borrowed strings, in 64
/// bytes (a process or epoch past `u32`, or a name of 256 bytes or more, takes
/// serde's path instead).
pub(super) struct Fast {
    index: u64,
    time: u64,
    /// See [`INTS`], [`INT`] and [`MEMBERS`].
    extra: u64,
    /// `NO_SPAN`: the line has no `value` (it reads as `null`).
    value: Span,
    /// Where `f`, `key`, `node`, `acked_by` start (`u32::MAX`: none).
    short: [u32; 4],
    /// Their lengths.
    len: [u8; 4],
    epoch: u32,
    process: u32,
    kind: OpType,
    flags: u8,
}

/// Plain data (no drop glue): a block's entries are emptied in one step.
pub(super) enum Entry {
    Fast(Fast),
    /// A line outside the scanner's subset, parsed by serde: its index in the
    /// block's ops.
    Slow(usize),
}

/// Where `s` sits in `base`, or `None` when it is not a piece of it.
#[inline(always)]
fn span_in(base: &str, s: &str) -> Option<Span> {
    let start = (s.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start + s.len();
    (end <= base.len()).then_some(Span {
        start: u32::try_from(start).ok()?,
        end: u32::try_from(end).ok()?,
    })
}

#[inline(always)]
fn text(base: &str, s: Span) -> Option<&str> {
    if s.start == u32::MAX {
        None
    } else {
        base.get(s.start as usize..s.end as usize)
    }
}

impl Fast {
    /// The entry of a scanned line of `base`; `None` if a field is not a piece of
    /// `base` (then the line takes the serde path) or the block outgrew `u32`.
    #[inline(always)]
    pub(super) fn of(
        base: &str,
        v: &OpView<'_>,
        ints: Option<std::ops::Range<usize>>,
    ) -> Option<Fast> {
        let (mut flags, mut extra) = (0, 0);
        if let Some(r) = ints {
            flags |= INTS;
            extra = u64::from(u32::try_from(r.start).ok()?) << 32
                | u64::from(u32::try_from(r.end).ok()?);
        }
        let value = match v.value {
            ValueRef::Raw(s) => match span_in(base, s) {
                Some(sp) => sp,
                // The scanner's stand-in for a missing value.
                None if s == "null" => NO_SPAN,
                None => return None,
            },
            ValueRef::Int(s, i) => {
                flags |= INT;
                extra = i as u64;
                span_in(base, s)?
            }
            ValueRef::Json(_) | ValueRef::Ints(..) => return None,
        };
        let (mut short, mut len) = ([u32::MAX; 4], [0u8; 4]);
        let strings = [Some(v.f), v.key, v.node, v.acked_by];
        for (i, s) in strings.into_iter().enumerate() {
            if let Some(s) = s {
                (short[i], len[i]) = self::short(base, s)?;
            }
        }
        let process = match v.process {
            Process::Client(p) => u32::try_from(p).ok()?,
            Process::Nemesis => {
                flags |= NEMESIS;
                0
            }
        };
        if v.is_final {
            flags |= FINAL;
        }
        if v.epoch.is_some() {
            flags |= EPOCH;
        }
        Some(Fast {
            index: v.index,
            time: v.time,
            extra,
            value,
            short,
            len,
            epoch: u32::try_from(v.epoch.unwrap_or(0)).ok()?,
            process,
            kind: v.kind,
            flags,
        })
    }

    /// Notes that the value's set is `sets[i]` (the value is then raw text:
    /// `extra` holds nothing else).
    pub(super) fn set_members(&mut self, i: usize) -> Option<()> {
        if self.flags & (INTS | INT) != 0 {
            return None;
        }
        self.flags |= MEMBERS;
        self.extra = u64::try_from(i).ok()?;
        Some(())
    }

    /// The short string `i` ([`F`], [`KEY`], [`NODE`], [`ACKED_BY`]).
    #[inline(always)]
    fn text<'a>(&self, base: &'a str, i: usize) -> Option<&'a str> {
        let start = self.short[i];
        text(
            base,
            Span {
                start,
                end: start.wrapping_add(u32::from(self.len[i])),
            },
        )
    }

    #[inline(always)]
    pub(super) fn view<'a>(
        &self,
        base: &'a str,
        ints: &'a [i64],
        sets: &'a [Members],
    ) -> OpView<'a> {
        let raw = text(base, self.value).unwrap_or("null");
        let has = |flag: u8| self.flags & flag != 0;
        let value = if has(INT) {
            ValueRef::Int(raw, self.extra as i64)
        } else {
            let elems = (self.extra >> 32) as usize..(self.extra & u64::from(u32::MAX)) as usize;
            match ints.get(elems) {
                Some(xs) if has(INTS) => ValueRef::Ints(raw, xs),
                _ => ValueRef::Raw(raw),
            }
        };
        OpView {
            index: self.index,
            time: self.time,
            process: if has(NEMESIS) {
                Process::Nemesis
            } else {
                Process::Client(u64::from(self.process))
            },
            kind: self.kind,
            f: self.text(base, F).unwrap_or_default(),
            key: self.text(base, KEY),
            node: self.text(base, NODE),
            value,
            is_final: has(FINAL),
            acked_by: self.text(base, ACKED_BY),
            epoch: has(EPOCH).then_some(u64::from(self.epoch)),
            members: match has(MEMBERS) {
                true => sets.get(self.extra as usize),
                false => None,
            },
        }
    }
}

// An entry is one cache line (the tag in `kind`'s spare values).
const _: () = assert!(std::mem::size_of::<Entry>() == 64);
