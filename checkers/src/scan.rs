//! The fast path for reading `history.jsonl` in the streaming checkers: [`scan`]
//! pulls the fields they use (index, time, process, type, f, key, node, the value as
//! raw JSON text, and the extras `final`, `acked_by`, `epoch`) out of one line
//! without building a `serde_json::Value`, and [`scan_ints`] also reads a value that
//! is an array of integers into a buffer (a set's read result: parsed once, on the
//! scanning thread), or [`scan_line_set_at`] a long one into a [`Members`] set.
//! It accepts a strict subset of JSON (no backslash escapes,
//! integers only, bounded nesting) and answers `None` for anything else, so the
//! caller falls back to the full serde parse of [`Op`], which then also words any
//! error. [`OpView`] is what the streaming checkers consume, built from a scanned
//! line or from an [`Op`]; [`for_each_view`] streams a reader on one thread.

mod cursor;
mod members;
mod value;

pub(crate) use members::Presence;
pub use members::{Members, SET_FROM};
pub use value::ValueRef;

use crate::history::{parse_line, HistoryError, Op, OpType, Process};
use cursor::{Cur, Field, Int};
use serde_json::Value;
use std::io::BufRead;

/// The fields of one history entry the streaming checkers read.
#[derive(Debug, Clone, Copy)]
pub struct OpView<'a> {
    pub index: u64,
    pub time: u64,
    pub process: Process,
    pub kind: OpType,
    pub f: &'a str,
    pub key: Option<&'a str>,
    pub node: Option<&'a str>,
    pub value: ValueRef<'a>,
    /// The extra field `final` is `true`.
    pub is_final: bool,
    /// The extra field `acked_by`, when it is a string.
    pub acked_by: Option<&'a str>,
    /// The extra field `epoch`, when it is a non-negative integer.
    pub epoch: Option<u64>,
    /// When the value is a list of integers that the scanning thread read
    /// straight into a set ([`SET_FROM`] bytes or more, parallel driver only): that
    /// set (the value is then [`ValueRef::Raw`], its elements not read one by one).
    pub members: Option<&'a Members>,
}

impl<'a> OpView<'a> {
    pub fn of(op: &'a Op) -> OpView<'a> {
        OpView {
            index: op.index,
            time: op.time,
            process: op.process,
            kind: op.kind,
            f: &op.f,
            key: op.key.as_deref(),
            node: op.node.as_deref(),
            value: ValueRef::Json(&op.value),
            is_final: op.extra.get("final") == Some(&Value::Bool(true)),
            acked_by: op.extra.get("acked_by").and_then(Value::as_str),
            epoch: op.extra.get("epoch").and_then(Value::as_u64),
            members: None,
        }
    }
}

/// Reads the fields of one (trimmed) history line, or `None` when the line is
/// outside the fast path's subset and must go through [`parse_line`].
pub fn scan(line: &str) -> Option<OpView<'_>> {
    fields(line, 0, None, false, usize::MAX).map(|(v, ..)| v)
}

/// [`scan`], and when the value is an array of integers that fit an `i64`, its
/// elements appended to `ints`, at the returned range (the view's value is then
/// still the raw text: [`ValueRef::Ints`] is the caller's to build). On `None`,
/// `ints` is as it was.
pub fn scan_ints<'a>(
    line: &'a str,
    ints: &mut Vec<i64>,
) -> Option<(OpView<'a>, Option<std::ops::Range<usize>>)> {
    let before = ints.len();
    let out = fields(line, 0, Some(&mut *ints), false, usize::MAX);
    if out.is_none() {
        ints.truncate(before);
    }
    out.map(|(v, r, ..)| (v, r))
}

/// [`scan_ints`] on the line that starts at byte `at` of `text` (a block of lines),
/// without splitting the line off first: the line's JSON object, blanks (space,
/// tab, CR) around it, then its `\n` or the end of `text`. Also answers where the
/// next line starts. `None` (with `ints` as it was) when the line is anything else,
/// a blank line included; the caller then splits the line off and trims it as a
/// line reader does. Whatever it reads, [`scan_ints`] reads on that trimmed line.
#[inline(always)]
pub fn scan_line_at<'a>(
    text: &'a str,
    at: usize,
    ints: &mut Vec<i64>,
) -> Option<(OpView<'a>, Option<std::ops::Range<usize>>, usize)> {
    scan_line_set_at(text, at, ints, usize::MAX).map(|(v, r, _, next)| (v, r, next))
}

/// [`scan_line_at`], except that a value that is a list of integers spelled in
/// `set_from` bytes or more is read into a [`Members`] (answered third) instead of
/// into `ints`: the line is read, or refused, exactly as [`scan_line_at`] would.
#[inline(always)]
pub fn scan_line_set_at<'a>(
    text: &'a str,
    at: usize,
    ints: &mut Vec<i64>,
    set_from: usize,
) -> Option<ScannedLine<'a>> {
    let before = ints.len();
    let out = fields(text, at, Some(&mut *ints), true, set_from);
    if out.is_none() {
        ints.truncate(before);
    }
    out
}

/// What [`scan_line_set_at`] reads: the view, where its integers went in the
/// caller's buffer, the set of a long list, and where the next line starts.
pub type ScannedLine<'a> = (
    OpView<'a>,
    Option<std::ops::Range<usize>>,
    Option<Members>,
    usize,
);

/// Sets a field seen for the first time; a repeated field goes to the full parser,
/// which decides what it means.
#[inline(always)]
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot.replace(v) {
        None => Some(()),
        Some(_) => None,
    }
}

/// The fields of a line read so far.
#[derive(Default)]
struct Slots<'a> {
    index: Option<u64>,
    time: Option<u64>,
    process: Option<Process>,
    kind: Option<OpType>,
    f: Option<&'a str>,
    key: Option<Option<&'a str>>,
    node: Option<Option<&'a str>>,
    value: Option<&'a str>,
    /// The value, when it is an integer that fits an `i64`.
    int: Option<i64>,
    /// Where the value's elements went in the caller's buffer.
    ints: Option<std::ops::Range<usize>>,
    /// Or the set of a long list's elements.
    set: Option<Members>,
    fin: Option<&'a str>,
    /// The string, or `None` when the value is anything else.
    acked_by: Option<Option<&'a str>>,
    /// The non-negative integer, or `None` when the value is anything else.
    epoch: Option<Option<u64>>,
}

impl<'a> Slots<'a> {
    /// Reads the value of `field` at the cursor.
    #[inline(always)]
    fn read(
        &mut self,
        field: Field,
        c: &mut Cur<'a>,
        ints: &mut Option<&mut Vec<i64>>,
        set_from: usize,
    ) -> Option<()> {
        match field {
            Field::Index => once(&mut self.index, c.uint()?),
            Field::Time => once(&mut self.time, c.uint()?),
            Field::Process => {
                let p = if c.peek() == Some(b'"') {
                    (c.string()? == "nemesis").then_some(Process::Nemesis)?
                } else {
                    Process::Client(c.uint()?)
                };
                once(&mut self.process, p)
            }
            Field::Type => {
                let t = if c.word(b"\"invoke\"") {
                    OpType::Invoke
                } else if c.word(b"\"ok\"") {
                    OpType::Ok
                } else if c.word(b"\"fail\"") {
                    OpType::Fail
                } else if c.word(b"\"info\"") {
                    OpType::Info
                } else {
                    return None;
                };
                once(&mut self.kind, t)
            }
            Field::F => once(&mut self.f, c.string()?),
            Field::Key | Field::Node => {
                let v = if c.word(b"null") {
                    None
                } else {
                    Some(c.string()?)
                };
                let slot = if field == Field::Key {
                    &mut self.key
                } else {
                    &mut self.node
                };
                once(slot, v)
            }
            Field::Value => {
                let start = c.i;
                match ints.as_deref_mut() {
                    Some(out) if c.peek() == Some(b'[') => {
                        let from = out.len();
                        if let Some(set) = c.int_set(set_from) {
                            self.set = Some(set);
                        } else if c.seek(start).int_list(out).is_some() {
                            self.ints = Some(from..out.len());
                        } else {
                            out.truncate(from);
                            c.i = start;
                            c.skip(0)?;
                        }
                    }
                    // An integer read once, here (the checkers' element or value).
                    _ if matches!(c.peek(), Some(b'-' | b'0'..=b'9')) => {
                        self.int = match c.int()? {
                            Int::Pos(u) => i64::try_from(u).ok(),
                            Int::Neg(i) => Some(i),
                        };
                    }
                    _ => c.skip(0)?,
                }
                once(&mut self.value, c.s.get(start..c.i)?)
            }
            // Read as what the checkers take from them (`as_str`, `as_u64`), the
            // usual kinds directly, any other value checked and skipped.
            Field::AckedBy => {
                let v = match c.peek() {
                    Some(b'"') => Some(c.string()?),
                    _ => c.skip(0).map(|()| None)?,
                };
                once(&mut self.acked_by, v)
            }
            Field::Epoch => {
                let v = match c.peek() {
                    Some(b'-' | b'0'..=b'9') => match c.int()? {
                        Int::Pos(u) => Some(u),
                        Int::Neg(_) => None,
                    },
                    _ => c.skip(0).map(|()| None)?,
                };
                once(&mut self.epoch, v)
            }
            Field::Final | Field::Other => {
                let start = c.i;
                c.skip(0)?;
                match field {
                    Field::Final => once(&mut self.fin, c.s.get(start..c.i)?),
                    _ => Some(()),
                }
            }
        }
    }
}

/// The fields of the object at byte `at` of `text`, the range of its integers in
/// `ints` (or, for a list of `set_from` bytes or more, its set), and where the
/// text after it starts. A `line` is the whole line, blanks
/// trimmed; otherwise `text` is a block of lines and the object must be its line's
/// only content (blanks aside), `\n` or the end of `text` after it. Inlined:
/// returned from a call, the view (a large struct, written field by field and
/// read back in wider loads) stalled the block scanner on every line.
#[inline(always)]
fn fields<'a>(
    text: &'a str,
    at: usize,
    mut ints: Option<&mut Vec<i64>>,
    block: bool,
    set_from: usize,
) -> Option<ScannedLine<'a>> {
    let mut c = Cur::at(text, at);
    let mut s = Slots::default();
    if block {
        c.ws();
    }
    c.eat(b'{')?;
    // The recorder's own layout first, each field a whole literal in the order it
    // writes them (extras are in name order); whatever else the line holds, in any
    // order or spacing, the general loop below reads.
    let mut more = true;
    if c.word(b"\"index\":") {
        s.read(Field::Index, &mut c, &mut ints, set_from)?;
        macro_rules! next {
            ($lit:expr, $field:expr) => {
                if c.word($lit) {
                    s.read($field, &mut c, &mut ints, set_from)?;
                }
            };
        }
        next!(b",\"time\":", Field::Time);
        next!(b",\"process\":", Field::Process);
        next!(b",\"type\":", Field::Type);
        next!(b",\"f\":", Field::F);
        next!(b",\"key\":", Field::Key);
        next!(b",\"value\":", Field::Value);
        next!(b",\"node\":", Field::Node);
        next!(b",\"acked_by\":", Field::AckedBy);
        next!(b",\"epoch\":", Field::Epoch);
        next!(b",\"final\":", Field::Final);
        c.ws();
        more = c.eat(b',').is_some();
    }
    while more {
        c.ws();
        let field = c.field()?;
        c.ws();
        s.read(field, &mut c, &mut ints, set_from)?;
        c.ws();
        more = c.eat(b',').is_some();
    }
    c.eat(b'}')?;
    if block {
        // Blanks up to the line end, not past it.
        while let Some(b' ' | b'\t' | b'\r') = c.peek() {
            c.i += 1;
        }
    } else {
        c.ws();
    }
    let next = match c.peek() {
        None => c.i,
        Some(b'\n') if block => c.i + 1,
        Some(_) => return None,
    };
    if block && c.nl {
        return None;
    }
    let view = OpView {
        index: s.index?,
        time: s.time?,
        process: s.process?,
        kind: s.kind?,
        f: s.f?,
        key: s.key.flatten(),
        node: s.node.flatten(),
        value: match (s.value, s.int) {
            (Some(text), Some(i)) => ValueRef::Int(text, i),
            (text, _) => ValueRef::Raw(text.unwrap_or("null")),
        },
        is_final: s.fin == Some("true"),
        acked_by: s.acked_by.flatten(),
        epoch: s.epoch.flatten(),
        members: None,
    };
    Some((view, s.ints, s.set, next))
}

/// Streams a JSONL history into `visit`, one view per non-blank line, with the same
/// line numbering, errors and first-error stop as [`crate::history::JsonlReader`].
pub fn for_each_view<R: BufRead>(
    mut input: R,
    mut visit: impl FnMut(&OpView<'_>),
) -> Result<(), HistoryError> {
    let mut buf = Vec::with_capacity(1 << 12);
    let mut ints = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line += 1;
        let text = std::str::from_utf8(&buf)
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                )
            })?
            .trim();
        if text.is_empty() {
            continue;
        }
        ints.clear();
        match scan_ints(text, &mut ints) {
            Some((mut view, range)) => {
                if let (Some(r), ValueRef::Raw(raw)) = (range, view.value) {
                    view.value = ValueRef::Ints(raw, &ints[r]);
                }
                visit(&view)
            }
            None => {
                let op = parse_line(text, line)?;
                visit(&OpView::of(&op));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_recorded_line() {
        let line = r#"{"index":4,"time":90,"process":3,"type":"ok","f":"add","key":"s","value":[1,-2, 3],"node":"n2","acked_by":"n1","epoch":7,"final":true,"note":{"a":[null,false]}}"#;
        let v = scan(line).expect("fast path");
        assert_eq!(
            (v.index, v.time, v.process, v.kind),
            (4, 90, Process::Client(3), OpType::Ok)
        );
        assert_eq!((v.f, v.key, v.node), ("add", Some("s"), Some("n2")));
        assert_eq!(
            (v.acked_by, v.epoch, v.is_final),
            (Some("n1"), Some(7), true)
        );
        let mut ints = Vec::new();
        assert!(v.value.int_list(&mut ints));
        assert_eq!(ints, vec![1, -2, 3]);
        let role = scan(r#"{"index":0,"time":1,"process":"nemesis","type":"info","f":"role","value":{"role":"x","role":"master","epoch":2}}"#)
            .expect("fast path");
        assert_eq!(
            role.value.get("role").and_then(|r| r.as_str()),
            Some("master")
        );
        assert_eq!(role.value.get("epoch").and_then(|e| e.as_u64()), Some(2));
        assert_eq!(role.process, Process::Nemesis);
    }

    #[test]
    fn steps_aside_for_what_it_does_not_read_exactly() {
        let base = r#""time":1,"process":1,"type":"ok","f":"add""#;
        for odd in [
            r#""index":-0"#,
            r#""index":1.0"#,
            r#""index":1,"index":2"#,
            r#""index":1,"value":"a"b""#,
            r#""index":1,"value":1e3"#,
            r#""index":1,"value":18446744073709551616"#,
            r#""index":1,"value":[1,]"#,
            r#""index":1,"process":"Nemesis""#,
            r#""index":1,"key":5"#,
        ] {
            let line = format!("{{{odd},{base}}}");
            assert!(scan(&line).is_none(), "{line}");
        }
        assert!(scan(&format!("{{\"index\":1,{base}}} x")).is_none());
        assert!(scan(r#"{"time":1,"process":1,"type":"ok","f":"add"}"#).is_none());
        assert!(scan(&format!("{{\"index\":1,{base}}}")).is_some());
    }
}
