//! The byte cursor under [`super::scan`]: whitespace, literals, strings without
//! escapes, integers as serde_json reads them, arrays of integers read into a
//! caller's buffer, the history's own field names matched as whole literals, and
//! skipping one value of the accepted subset; it notes whether whitespace it
//! skipped held a line end. Every method answers `None` for
//! anything outside that subset; the caller then hands the line to serde.

use super::members::{Members, MembersBuilder};

/// Deepest nesting the fast path accepts (serde's own limit is 128).
const MAX_DEPTH: usize = 32;

/// A plain JSON integer as serde_json reads it (`-0` is a float there, so excluded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Int {
    Pos(u64),
    Neg(i64),
}

/// A field of a history line the scanner tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Index,
    Time,
    Process,
    Type,
    F,
    Key,
    Value,
    Node,
    AckedBy,
    Epoch,
    Final,
    /// Any other name: its value is checked and skipped.
    Other,
}

impl Field {
    fn of(name: &str) -> Field {
        match name {
            "index" => Field::Index,
            "time" => Field::Time,
            "process" => Field::Process,
            "type" => Field::Type,
            "f" => Field::F,
            "key" => Field::Key,
            "value" => Field::Value,
            "node" => Field::Node,
            "acked_by" => Field::AckedBy,
            "epoch" => Field::Epoch,
            "final" => Field::Final,
            _ => Field::Other,
        }
    }
}

/// `rest` starts with `word`: a comparison of constant length, so no call.
#[inline(always)]
fn starts<const N: usize>(rest: &[u8], word: &[u8; N]) -> bool {
    rest.get(..N).is_some_and(|s| s == word)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `i` as a little-endian word, when there are eight.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let w: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// The high bit of each byte of `w` equal to `c` (exact up to the first such byte,
/// which is all the callers use).
#[inline(always)]
fn has_byte(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The high bit of each byte of `w` below `n` (`n` ≤ 0x80; exact up to the first).
#[inline(always)]
fn has_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS
}

/// How many ASCII digits the word `w` starts with (0 to 8) and the number they
/// spell: the digits found with a mask, combined by three multiplications.
#[inline(always)]
fn word_digits(w: u64) -> (u64, usize) {
    let d = w.wrapping_sub(ONES * u64::from(b'0'));
    // The high bit of each byte that is no digit (exact up to the first such
    // byte: borrows and carries only move upwards from it).
    let not_digit = (d | d.wrapping_add(ONES * 0x76)) & HIGHS;
    let len = (not_digit.trailing_zeros() / 8) as usize;
    if len == 0 {
        return (0, 0);
    }
    // The digits at the top of the word, leading zeros below; then pairs,
    // fours and the eight combined.
    let v = d << (8 * (8 - len));
    let v = (v.wrapping_mul(2561) >> 8) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(6_553_601) >> 16) & 0x0000_FFFF_0000_FFFF;
    (v.wrapping_mul(42_949_672_960_001) >> 32, len)
}

const POW10: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The number spelled by the one to fifteen ASCII digits at `i` and how many
/// there are, read a word at a time, when the bytes there start with them and
/// at least eight bytes follow their start (sixteen past eight digits); for
/// more than one digit, not with `0` (no JSON integer: left to [`Cur::int`]).
/// The byte after them is the caller's to check. `None` otherwise.
#[inline(always)]
fn short_uint(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let w = word_at(b, i)?;
    let (hi, n) = word_digits(w);
    if n == 0 || (n > 1 && w & 0xff == u64::from(b'0')) {
        return None;
    }
    if n < 8 {
        return Some((hi as i64, n));
    }
    let (lo, m) = word_digits(word_at(b, i + 8)?);
    let scale = *POW10.get(m)?;
    Some(((hi * scale + lo) as i64, 8 + m))
}

/// The number spelled by up to nineteen digits from `start` (nineteen always fit a
/// u64), and where they end. Not inlined: in its own frame the loop keeps the
/// number in a register (inlined into the large field scanner it was spilled to
/// the stack on every digit).
#[inline(never)]
fn digits(b: &[u8], start: usize) -> (u64, usize) {
    let mut n: u64 = 0;
    let mut i = start;
    let unchecked = b.len().min(start + 19);
    while i < unchecked && b[i].is_ascii_digit() {
        n = n * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    (n, i)
}

pub(super) struct Cur<'a> {
    pub s: &'a str,
    pub b: &'a [u8],
    pub i: usize,
    /// Whether whitespace skipped so far held a line end (a block of lines is
    /// scanned one line at a time: a value must not run on into the next line).
    pub nl: bool,
}

impl<'a> Cur<'a> {
    pub fn new(s: &'a str) -> Self {
        Cur::at(s, 0)
    }

    /// A cursor at byte `i` of `s`.
    pub fn at(s: &'a str, i: usize) -> Self {
        Cur {
            s,
            b: s.as_bytes(),
            i,
            nl: false,
        }
    }

    /// Moves the cursor back (or on) to byte `i`.
    #[inline]
    pub fn seek(&mut self, i: usize) -> &mut Self {
        self.i = i;
        self
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub fn ws(&mut self) {
        let mut i = self.i;
        while let Some(&c @ (b' ' | b'\t' | b'\n' | b'\r')) = self.b.get(i) {
            self.nl |= c == b'\n';
            i += 1;
        }
        self.i = i;
    }

    #[inline]
    pub fn eat(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Steps over `word` when the input continues with it.
    #[inline(always)]
    pub fn word<const N: usize>(&mut self, word: &[u8; N]) -> bool {
        let hit = starts(&self.b[self.i.min(self.b.len())..], word);
        if hit {
            self.i += N;
        }
        hit
    }

    pub fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters; the cursor is on its quote.
    #[inline]
    pub fn string(&mut self) -> Option<&'a str> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut i = start;
        // Eight bytes at a time to the first quote, backslash or control character.
        while let Some(w) = word_at(b, i) {
            let hit = has_byte(w, b'"') | has_byte(w, b'\\') | has_below(w, 0x20);
            if hit != 0 {
                i += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        loop {
            match *b.get(i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
        let out = self.s.get(start..i)?;
        self.i = i + 1;
        Some(out)
    }

    /// An integer without fraction or exponent that serde_json reads as one.
    #[inline(always)]
    pub fn int(&mut self) -> Option<Int> {
        let b = self.b;
        // One to seven digits (indexes, processes, elements), a word at a time;
        // a fraction or exponent after them makes it no integer either way.
        if let Some((v, len)) = short_uint(b, self.i) {
            if let Some(b'.' | b'e' | b'E') = b.get(self.i + len) {
                return None;
            }
            self.i += len;
            return Some(Int::Pos(v as u64));
        }
        let neg = b.get(self.i) == Some(&b'-');
        let start = self.i + usize::from(neg);
        let (mut n, mut i) = digits(b, start);
        while let Some(d @ b'0'..=b'9') = b.get(i) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            i += 1;
        }
        let count = i - start;
        if count == 0 || (count > 1 && b[start] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = b.get(i) {
            return None;
        }
        self.i = i;
        if neg {
            if n == 0 || n > i64::MAX as u64 + 1 {
                return None;
            }
            Some(Int::Neg((n as i128).wrapping_neg() as i64))
        } else {
            Some(Int::Pos(n))
        }
    }

    /// A non-negative integer (what `index`, `time` and client processes are).
    #[inline]
    pub fn uint(&mut self) -> Option<u64> {
        match self.int()? {
            Int::Pos(n) => Some(n),
            Int::Neg(_) => None,
        }
    }

    /// An array whose elements are all integers that fit an `i64`, appended to
    /// `out`; `None` for anything else (then `out` may hold some of its elements
    /// and the cursor is anywhere inside: the caller resets both).
    pub fn int_list(&mut self, out: &mut Vec<i64>) -> Option<()> {
        self.int_elems(|v| out.push(v))
    }

    /// The set of the array at the cursor when it is at least `min` bytes long
    /// (brackets included) and a list of integers that fit an `i64` exactly as
    /// [`Cur::int_list`] reads one (the same loop); `None` for anything else (the
    /// cursor then anywhere: the caller resets it). A long list (a set's final
    /// read) is kept this way instead of element by element.
    pub fn int_set(&mut self, min: usize) -> Option<Members> {
        let open = self.i;
        if self.peek()? != b'[' {
            return None;
        }
        // A list of integers holds no `]`: if this is one, it ends at the first.
        let close = open + memchr::memchr(b']', self.b.get(open..)?)?;
        if close + 1 - open < min {
            return None;
        }
        let mut set = MembersBuilder::for_text(close + 1 - open);
        self.int_elems(|v| set.insert(v))?;
        Some(set.finish())
    }

    /// The loop under [`Cur::int_list`] and [`Cur::int_set`]: each element to `put`.
    #[inline(always)]
    fn int_elems(&mut self, mut put: impl FnMut(i64)) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            // The usual element first: one to seven digits and then a comma or
            // the `]`, read a word at a time; anything else the general way.
            if let Some((v, len)) = short_uint(self.b, self.i) {
                match self.b.get(self.i + len) {
                    Some(b',') => {
                        put(v);
                        self.i += len + 1;
                        continue;
                    }
                    Some(b']') => {
                        put(v);
                        self.i += len + 1;
                        return Some(());
                    }
                    _ => {}
                }
            }
            self.ws();
            let v = match self.int()? {
                Int::Neg(i) => i,
                Int::Pos(u) => i64::try_from(u).ok()?,
            };
            put(v);
            // The usual separator first; whitespace only where it is.
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => {
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// An object key and its colon: the history's own names written `"name":`
    /// exactly are matched whole; anything else takes the general path to the
    /// same reading.
    #[inline]
    pub fn field(&mut self) -> Option<Field> {
        let rest = &self.b[self.i.min(self.b.len())..];
        let hit = match rest.get(1) {
            Some(b'i') if starts(rest, b"\"index\":") => Some((Field::Index, 8)),
            Some(b't') if starts(rest, b"\"time\":") => Some((Field::Time, 7)),
            Some(b't') if starts(rest, b"\"type\":") => Some((Field::Type, 7)),
            Some(b'p') if starts(rest, b"\"process\":") => Some((Field::Process, 10)),
            Some(b'f') if starts(rest, b"\"f\":") => Some((Field::F, 4)),
            Some(b'f') if starts(rest, b"\"final\":") => Some((Field::Final, 8)),
            Some(b'k') if starts(rest, b"\"key\":") => Some((Field::Key, 6)),
            Some(b'v') if starts(rest, b"\"value\":") => Some((Field::Value, 8)),
            Some(b'n') if starts(rest, b"\"node\":") => Some((Field::Node, 7)),
            Some(b'a') if starts(rest, b"\"acked_by\":") => Some((Field::AckedBy, 11)),
            Some(b'e') if starts(rest, b"\"epoch\":") => Some((Field::Epoch, 8)),
            _ => None,
        };
        if let Some((f, n)) = hit {
            self.i += n;
            return Some(f);
        }
        let name = self.string()?;
        self.ws();
        self.eat(b':')?;
        Some(Field::of(name))
    }

    /// Skips one value of the accepted subset.
    pub fn skip(&mut self, depth: usize) -> Option<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `short_uint` reads what `Cur::int` reads, or leaves it to it.
    fn agrees(text: &str) {
        let b = text.as_bytes();
        let mut c = Cur::new(text);
        let general = c.int().map(|n| (n, c.i));
        if let Some((v, len)) = short_uint(b, 0) {
            assert!(len < 16 && v >= 0, "{text:?}");
            let end = b.get(len).copied();
            // What the caller accepts: a comma or `]` right after.
            if matches!(end, Some(b',' | b']')) {
                assert_eq!(general, Some((Int::Pos(v as u64), len)), "{text:?}");
            }
        }
    }

    #[test]
    fn short_numbers_read_a_word_at_a_time_are_the_general_readers() {
        let long = [
            9_999_000,
            99_999_990,
            100_000_000_000,
            123_456_789_012_345,
            999_999_999_999_990,
            1_000_000_000_000_000,
        ];
        let near = long.iter().flat_map(|&n| n..n + 20);
        for n in (0..200_000u64).chain(near) {
            for sep in [",", "]", ".5,", "e1]", " ,", "x", "9,", "\u{e9}"] {
                agrees(&format!("{n}{sep}1234567"));
            }
        }
        for odd in [
            "00,12345678",
            "01,1234567",
            "0,1234567",
            "-1,234567",
            " 1,234567",
            "1234567,1",
            "12345678,",
            "7]\u{e9}\u{e9}\u{e9}",
        ] {
            agrees(odd);
        }
        assert_eq!(short_uint(b"0012345,", 0), None);
        assert_eq!(short_uint(b"1234567,", 0), Some((1_234_567, 7)));
        assert_eq!(
            short_uint(b"12345678", 0),
            None,
            "fewer than sixteen bytes left"
        );
        assert_eq!(short_uint(b"12345678,0000000", 0), Some((12_345_678, 8)));
        assert_eq!(
            short_uint(b"123456789012345,", 0),
            Some((123_456_789_012_345, 15))
        );
        assert_eq!(short_uint(b"1234567890123456,0000000", 0), None);
        assert_eq!(short_uint(b"5,", 0), None, "fewer than eight bytes left");
    }
}
