//! What a scanning thread hands the checker's thread per line: [`Entry`], a
//! scanned line as plain numbers and byte spans into its block (no borrow, no
//! allocation; 88 bytes, written by one core and read by another, so kept small),
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

/// One scanned line: [`OpView`] with spans instead of borrowed strings.
pub(super) struct Fast {
    index: u64,
    time: u64,
    epoch: u64,
    process: u64,
    /// See [`INTS`] and [`INT`].
    extra: u64,
    f: Span,
    key: Span,
    node: Span,
    /// `NO_SPAN`: the line has no `value` (it reads as `null`).
    value: Span,
    acked_by: Span,
    kind: OpType,
    flags: u8,
    /// Index of the value's set among the batch's sets (`u32::MAX`: none).
    members: u32,
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
        let must = |s: Option<&str>| -> Option<Span> {
            match s {
                None => Some(NO_SPAN),
                Some(s) => span_in(base, s),
            }
        };
        let process = match v.process {
            Process::Client(p) => p,
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
            epoch: v.epoch.unwrap_or(0),
            process,
            extra,
            f: span_in(base, v.f)?,
            key: must(v.key)?,
            node: must(v.node)?,
            value,
            acked_by: must(v.acked_by)?,
            kind: v.kind,
            flags,
            members: u32::MAX,
        })
    }

    /// Notes that the value's set is `sets[i]`.
    pub(super) fn set_members(&mut self, i: usize) -> Option<()> {
        self.members = u32::try_from(i).ok().filter(|&i| i != u32::MAX)?;
        Some(())
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
                Process::Client(self.process)
            },
            kind: self.kind,
            f: text(base, self.f).unwrap_or_default(),
            key: text(base, self.key),
            node: text(base, self.node),
            value,
            is_final: has(FINAL),
            acked_by: text(base, self.acked_by),
            epoch: has(EPOCH).then_some(self.epoch),
            members: sets.get(self.members as usize),
        }
    }
}
