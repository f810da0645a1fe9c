//! [`ValueRef`]: an op's value as the streaming checkers see it, raw JSON text
//! from the scanner's fast path or a value serde parsed, with the reads they make
//! of it (`as_i64`, `get`, integer lists, elements) answered as serde_json's
//! `Value` would answer them.

use super::cursor::{Cur, Int};
use serde_json::Value;

/// An op's value: raw JSON text from the fast path (only integers, strings without
/// escapes, literals, arrays and objects of those), the same for an array of
/// integers with its elements already read, or a parsed value.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Raw(&'a str),
    /// An array of integers that fit an `i64`: its text and its elements.
    Ints(&'a str, &'a [i64]),
    /// An integer that fits an `i64`: its text and its value.
    Int(&'a str, i64),
    Json(&'a Value),
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
            ValueRef::Int(_, i) => Some(*i),
            ValueRef::Ints(..) => None,
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
            ValueRef::Int(_, i) => u64::try_from(*i).ok(),
            ValueRef::Ints(..) => None,
        }
    }

    /// `Value::as_str`.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueRef::Json(v) => v.as_str(),
            ValueRef::Raw(s) => s.strip_prefix('"')?.strip_suffix('"'),
            ValueRef::Ints(..) | ValueRef::Int(..) => None,
        }
    }

    /// `Value::get(name)` on an object (the last of duplicate fields, as serde's map).
    pub fn get(&self, name: &str) -> Option<ValueRef<'a>> {
        match self {
            ValueRef::Json(v) => v.get(name).map(ValueRef::Json),
            ValueRef::Ints(..) | ValueRef::Int(..) => None,
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
                        found = Some(ValueRef::Raw(s.get(start..c.i)?));
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

    /// The elements when the value is an array of integers that fit an `i64`:
    /// those the scanner already read, or else read into `out`.
    pub fn ints<'s>(&'s self, out: &'s mut Vec<i64>) -> Option<&'s [i64]> {
        match self {
            ValueRef::Ints(_, xs) => Some(xs),
            _ => self.int_list(out).then_some(&out[..]),
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
            ValueRef::Ints(_, xs) => {
                out.extend_from_slice(xs);
                true
            }
            ValueRef::Int(..) => false,
            ValueRef::Raw(s) => {
                let mut c = Cur::new(s);
                c.int_list(out).is_some() && c.i == s.len()
            }
        }
    }

    /// Whether the value is an array.
    pub fn is_array(&self) -> bool {
        match self {
            ValueRef::Json(v) => v.is_array(),
            ValueRef::Raw(s) => s.starts_with('['),
            ValueRef::Ints(..) => true,
            ValueRef::Int(..) => false,
        }
    }

    /// The elements of an array value (`None` when it is not an array).
    pub fn elements(&self) -> Option<Vec<ValueRef<'a>>> {
        match self {
            ValueRef::Json(v) => Some(v.as_array()?.iter().map(ValueRef::Json).collect()),
            ValueRef::Int(..) => None,
            ValueRef::Raw(s) | ValueRef::Ints(s, _) => {
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
                    out.push(ValueRef::Raw(s.get(start..c.i)?));
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
            ValueRef::Raw(s) | ValueRef::Ints(s, _) | ValueRef::Int(s, _) => {
                serde_json::from_str(s).unwrap_or(Value::Null)
            }
        }
    }
}
