//! The fast path for reading `history.jsonl` in the streaming checkers: [`scan`]
//! pulls the fields they use (index, time, process, type, f, key, node, the value as
//! raw JSON text, and the extras `final`, `acked_by`, `epoch`) out of one line
//! without building a `serde_json::Value`. It accepts a strict subset of JSON (no
//! backslash escapes, integers only, bounded nesting) and answers `None` for
//! anything else, so the caller falls back to the full serde parse of [`Op`], which
//! then also words any error. [`OpView`] is what the streaming checkers consume,
//! built from a scanned line or from an [`Op`]; [`for_each_view`] streams a reader.

use crate::history::{parse_line, HistoryError, Op, OpType, Process};
use serde_json::Value;
use std::io::BufRead;

/// Deepest nesting the fast path accepts (serde's own limit is 128).
const MAX_DEPTH: usize = 32;

/// An op's value: raw JSON text from the fast path (only integers, strings without
/// escapes, literals, arrays and objects of those), or a parsed value.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Raw(&'a str),
    Json(&'a Value),
}

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
        }
    }
}

/// A plain JSON integer as serde_json reads it (`-0` is a float there, so excluded).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Int {
    Pos(u64),
    Neg(i64),
}

impl<'a> ValueRef<'a> {
    fn raw_int(s: &str) -> Option<Int> {
        let mut c = Cur::new(s);
        let n = c.int()?;
        (c.i == s.len()).then_some(n)
    }

    /// `Value::as_i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ValueRef::Json(v) => v.as_i64(),
            ValueRef::Raw(s) => match Self::raw_int(s)? {
                Int::Pos(u) => i64::try_from(u).ok(),
                Int::Neg(i) => Some(i),
            },
        }
    }

    /// `Value::as_u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            ValueRef::Json(v) => v.as_u64(),
            ValueRef::Raw(s) => match Self::raw_int(s)? {
                Int::Pos(u) => Some(u),
                Int::Neg(_) => None,
            },
        }
    }

    /// `Value::as_str`.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueRef::Json(v) => v.as_str(),
            ValueRef::Raw(s) => s.strip_prefix('"')?.strip_suffix('"'),
        }
    }

    /// `Value::get(name)` on an object (the last of duplicate fields, as serde's map).
    pub fn get(&self, name: &str) -> Option<ValueRef<'a>> {
        match self {
            ValueRef::Json(v) => v.get(name).map(ValueRef::Json),
            ValueRef::Raw(s) => {
                let mut c = Cur::new(s);
                c.eat(b'{')?;
                let mut found = None;
                c.ws();
                if c.eat(b'}').is_some() {
                    return None;
                }
                loop {
                    c.ws();
                    let k = c.string()?;
                    c.ws();
                    c.eat(b':')?;
                    c.ws();
                    let start = c.i;
                    c.skip(0)?;
                    if k == name {
                        found = Some(ValueRef::Raw(&s[start..c.i]));
                    }
                    c.ws();
                    if c.eat(b',').is_none() {
                        break;
                    }
                }
                found
            }
        }
    }

    /// Fills `out` with the elements when the value is an array of integers that fit
    /// an `i64`; false (and `out` unspecified) otherwise.
    pub fn int_list(&self, out: &mut Vec<i64>) -> bool {
        out.clear();
        match self {
            ValueRef::Json(v) => match v.as_array() {
                Some(a) => a.iter().all(|e| e.as_i64().map(|i| out.push(i)).is_some()),
                None => false,
            },
            ValueRef::Raw(s) => {
                let mut c = Cur::new(s);
                if c.eat(b'[').is_none() {
                    return false;
                }
                c.ws();
                if c.eat(b']').is_some() {
                    return true;
                }
                loop {
                    c.ws();
                    match c.int() {
                        Some(Int::Neg(i)) => out.push(i),
                        Some(Int::Pos(u)) => match i64::try_from(u) {
                            Ok(i) => out.push(i),
                            Err(_) => return false,
                        },
                        None => return false,
                    }
                    c.ws();
                    if c.eat(b',').is_none() {
                        return c.eat(b']').is_some();
                    }
                }
            }
        }
    }

    /// Whether the value is an array.
    pub fn is_array(&self) -> bool {
        match self {
            ValueRef::Json(v) => v.is_array(),
            ValueRef::Raw(s) => s.starts_with('['),
        }
    }

    /// The elements of an array value (`None` when it is not an array).
    pub fn elements(&self) -> Option<Vec<ValueRef<'a>>> {
        match self {
            ValueRef::Json(v) => Some(v.as_array()?.iter().map(ValueRef::Json).collect()),
            ValueRef::Raw(s) => {
                let mut c = Cur::new(s);
                c.eat(b'[')?;
                let mut out = Vec::new();
                c.ws();
                if c.eat(b']').is_some() {
                    return Some(out);
                }
                loop {
                    c.ws();
                    let start = c.i;
                    c.skip(0)?;
                    out.push(ValueRef::Raw(&s[start..c.i]));
                    c.ws();
                    if c.eat(b',').is_none() {
                        return Some(out);
                    }
                }
            }
        }
    }

    /// The value itself. Raw text is valid JSON by construction of the fast path.
    pub fn to_value(&self) -> Value {
        match self {
            ValueRef::Json(v) => (*v).clone(),
            ValueRef::Raw(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        }
    }
}

struct Cur<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters; the cursor is on its quote.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let out = self.s.get(start..self.i)?;
        self.i += 1;
        Some(out)
    }

    /// An integer without fraction or exponent that serde_json reads as one.
    #[inline]
    fn int(&mut self) -> Option<Int> {
        let neg = self.eat(b'-').is_some();
        let start = self.i;
        let mut n: u64 = 0;
        // Nineteen digits always fit a u64; only longer numbers need the checks.
        let unchecked = self.b.len().min(start + 19);
        while self.i < unchecked && self.b[self.i].is_ascii_digit() {
            n = n * 10 + u64::from(self.b[self.i] - b'0');
            self.i += 1;
        }
        while let Some(d @ b'0'..=b'9') = self.b.get(self.i) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        if neg {
            if n == 0 || n > i64::MAX as u64 + 1 {
                return None;
            }
            Some(Int::Neg((n as i128).wrapping_neg() as i64))
        } else {
            Some(Int::Pos(n))
        }
    }

    /// One of the history's own field names written `"name":` exactly, which it
    /// steps over; `None` (cursor unmoved) for anything else, which then takes the
    /// general path to the same reading.
    #[inline]
    fn known_key(&mut self) -> Option<&'static str> {
        const KEYS: [(&[u8], &str); 11] = [
            (b"\"index\":", "index"),
            (b"\"time\":", "time"),
            (b"\"process\":", "process"),
            (b"\"type\":", "type"),
            (b"\"f\":", "f"),
            (b"\"key\":", "key"),
            (b"\"value\":", "value"),
            (b"\"node\":", "node"),
            (b"\"acked_by\":", "acked_by"),
            (b"\"epoch\":", "epoch"),
            (b"\"final\":", "final"),
        ];
        let rest = self.b.get(self.i..)?;
        let (lit, name) = KEYS.iter().find(|(lit, _)| rest.starts_with(lit))?;
        self.i += lit.len();
        Some(name)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Skips one value of the accepted subset.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.int().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            open @ (b'[' | b'{') => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let close = if open == b'[' { b']' } else { b'}' };
                self.i += 1;
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    if self.eat(b',').is_none() {
                        return self.eat(close);
                    }
                }
            }
            _ => None,
        }
    }
}

/// Reads the fields of one (trimmed) history line, or `None` when the line is
/// outside the fast path's subset and must go through [`parse_line`].
pub fn scan(line: &str) -> Option<OpView<'_>> {
    let mut c = Cur::new(line);
    c.eat(b'{')?;
    let (mut index, mut time, mut process, mut kind, mut f) = (None, None, None, None, None);
    let (mut key, mut node, mut value) = (None, None, None);
    let (mut fin, mut acked_by, mut epoch) = (None, None, None);
    c.ws();
    if c.eat(b'}').is_some() {
        return None;
    }
    loop {
        c.ws();
        let k = match c.known_key() {
            Some(k) => k,
            None => {
                let k = c.string()?;
                c.ws();
                c.eat(b':')?;
                k
            }
        };
        c.ws();
        // A repeated field goes to the full parser, which decides what it means.
        match k {
            "index" | "time" => {
                let Int::Pos(n) = c.int()? else { return None };
                let slot = if k == "index" { &mut index } else { &mut time };
                if slot.replace(n).is_some() {
                    return None;
                }
            }
            "process" => {
                let p = if c.b.get(c.i) == Some(&b'"') {
                    (c.string()? == "nemesis").then_some(Process::Nemesis)?
                } else {
                    let Int::Pos(n) = c.int()? else { return None };
                    Process::Client(n)
                };
                if process.replace(p).is_some() {
                    return None;
                }
            }
            "type" => {
                let t = match c.string()? {
                    "invoke" => OpType::Invoke,
                    "ok" => OpType::Ok,
                    "fail" => OpType::Fail,
                    "info" => OpType::Info,
                    _ => return None,
                };
                if kind.replace(t).is_some() {
                    return None;
                }
            }
            "f" => {
                if f.replace(c.string()?).is_some() {
                    return None;
                }
            }
            "key" | "node" => {
                let v = if c.literal(b"null").is_some() {
                    None
                } else {
                    Some(c.string()?)
                };
                let slot = if k == "key" { &mut key } else { &mut node };
                if slot.replace(v).is_some() {
                    return None;
                }
            }
            _ => {
                let start = c.i;
                c.skip(0)?;
                let raw = &line[start..c.i];
                let slot = match k {
                    "value" => &mut value,
                    "final" => &mut fin,
                    "acked_by" => &mut acked_by,
                    "epoch" => &mut epoch,
                    _ => &mut None,
                };
                if slot.replace(raw).is_some() {
                    return None;
                }
            }
        }
        c.ws();
        if c.eat(b',').is_none() {
            break;
        }
    }
    c.eat(b'}')?;
    c.ws();
    if c.i != line.len() {
        return None;
    }
    Some(OpView {
        index: index?,
        time: time?,
        process: process?,
        kind: kind?,
        f: f?,
        key: key.flatten(),
        node: node.flatten(),
        value: ValueRef::Raw(value.unwrap_or("null")),
        is_final: fin == Some("true"),
        acked_by: acked_by.and_then(|s| ValueRef::Raw(s).as_str()),
        epoch: epoch.and_then(|s| ValueRef::Raw(s).as_u64()),
    })
}

/// Streams a JSONL history into `visit`, one view per non-blank line, with the same
/// line numbering, errors and first-error stop as [`crate::history::JsonlReader`].
pub fn for_each_view<R: BufRead>(
    mut input: R,
    mut visit: impl FnMut(&OpView<'_>),
) -> Result<(), HistoryError> {
    let mut buf = Vec::with_capacity(1 << 12);
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
        match scan(text) {
            Some(view) => visit(&view),
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
