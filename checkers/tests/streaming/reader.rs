//! The block reader (`blocks::for_each_view_par`) against the one-thread line
//! reader on histories of long lines: lines just under, at and over a block
//! (1 MiB) and 256 KiB, runs of several-MiB final reads (the reader then reuses
//! the large buffers earlier long lines left), a long line that serde reads, one
//! that is broken, one that is not UTF-8, one at the end without its line end;
//! the input handed over in reads of odd sizes. The views, in order, or the
//! error must be the same.

use super::Rng;
use checkers::blocks::for_each_view_par;
use checkers::scan::{for_each_view, OpView, ValueRef};
use std::io::Read;

/// Hands `data` over in reads of at most the next of `sizes` bytes (cycled).
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let most = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = most.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What a view says, the value as its raw text and, for a long list, its set.
fn show(v: &OpView<'_>) -> String {
    let raw = match v.value {
        ValueRef::Raw(s) | ValueRef::Ints(s, _) | ValueRef::Int(s, _) => s.to_string(),
        ValueRef::Json(j) => j.to_string(),
    };
    // The distinct elements: the set the scanner made (which must hold what
    // the text lists), or the list read from the text.
    let mut buf = Vec::new();
    let listed = v.value.ints(&mut buf).map(|xs| {
        let mut xs = xs.to_vec();
        xs.sort_unstable();
        xs.dedup();
        xs
    });
    let elems = match v.members {
        Some(m) => {
            let mut got: Vec<i64> = m.iter().collect();
            got.sort_unstable();
            assert_eq!(Some(&got), listed.as_ref(), "the set of line {}", v.index);
            Some(got)
        }
        None => listed,
    };
    let elems = elems.map(|xs| (xs.len(), xs.iter().fold(0i64, |a, &x| a.wrapping_add(x))));
    format!(
        "{} {} {:?} {:?} {} {:?} {:?} {:?} {:?} {} {} {:?}",
        v.index,
        v.time,
        v.process,
        v.kind,
        v.f,
        v.key,
        v.node,
        v.acked_by,
        v.epoch,
        v.is_final,
        raw.len(),
        elems
    ) + &raw[..raw.len().min(40)]
        + &raw[raw.len().saturating_sub(40)..]
}

fn both(
    text: &[u8],
    sizes: Vec<usize>,
) -> (Result<Vec<String>, String>, Result<Vec<String>, String>) {
    let mut seen = Vec::new();
    let par = for_each_view_par(
        Chunked {
            data: text,
            sizes,
            turn: 0,
        },
        |v| seen.push(show(v)),
    )
    .map(|()| seen)
    .map_err(|e| e.to_string());
    let mut seen = Vec::new();
    let one = for_each_view(text, |v| seen.push(show(v)))
        .map(|()| seen)
        .map_err(|e| e.to_string());
    (par, one)
}

fn line(i: u64, value: &str) -> String {
    format!(
        "{{\"index\":{i},\"time\":{},\"process\":{},\"type\":\"ok\",\"f\":\"read\",\"key\":\"set\",\"value\":{value},\"final\":true}}\n",
        i * 3,
        i % 5
    )
}

/// A list of integers spelled in about `bytes` bytes.
fn list(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    s.push('[');
    let mut v = rng.below(1000) as i64 - 3;
    while s.len() < bytes {
        if s.len() > 1 {
            s.push(',');
        }
        s.push_str(&v.to_string());
        v += 1 + rng.below(3) as i64;
    }
    s.push(']');
    s
}

const MIB: usize = 1 << 20;

/// A history: short lines, then long ones of the given sizes in a row, then
/// short ones, with `odd` (when given) replacing one long line.
fn history(rng: &mut Rng, longs: &[usize], odd: Option<(usize, &str)>) -> String {
    let mut text = String::new();
    let mut i = 0;
    for _ in 0..3000 {
        text.push_str(&line(i, &i.to_string()));
        i += 1;
    }
    for (k, &n) in longs.iter().enumerate() {
        match odd {
            Some((at, value)) if at == k => text.push_str(&line(i, value)),
            _ => text.push_str(&line(i, &list(rng, n))),
        }
        i += 1;
        if k % 2 == 1 {
            text.push_str(&line(i, "[1,2,3]"));
            i += 1;
        }
    }
    for _ in 0..rng.below(3000) {
        text.push_str(&line(i, &i.to_string()));
        i += 1;
    }
    text
}

#[test]
fn long_lines_read_as_the_line_reader_reads_them_whatever_the_read_sizes() {
    let mut rng = Rng(0x5eed_0005);
    let sizes = [
        vec![1 << 30],
        vec![4096, 7, 65_537, 999_999, 3],
        vec![MIB - 1, MIB + 1, 100],
    ];
    let layouts: [&[usize]; 4] = [
        // Just under, at and over a block (1 MiB) and a quarter block; then a
        // run of long reads, more than are let in flight at once, so that later
        // ones reuse earlier buffers.
        &[
            MIB / 4 - 200,
            MIB / 4,
            MIB / 4 + 10,
            MIB - 200,
            MIB,
            2 * MIB + 3,
        ],
        &[3 * MIB, 4 * MIB, 3 * MIB + 77, 4 * MIB, 5 * MIB, 3 * MIB],
        &[9 * MIB],
        &[100, 2 * MIB, 70_000, 2 * MIB],
    ];
    for (l, longs) in layouts.iter().enumerate() {
        let text = history(&mut rng, longs, None);
        // Every read pattern on the first layout, one each on the others.
        for s in sizes
            .iter()
            .skip(if l == 0 { 0 } else { l % 3 })
            .take(if l == 0 { 3 } else { 1 })
        {
            let (par, one) = both(text.as_bytes(), s.clone());
            let par = par.unwrap_or_else(|e| panic!("layout {l}: {e}"));
            assert_eq!(Ok(par), one, "layout {l}, reads {s:?}");
        }
    }
    // A long list serde reads (a float in it), one broken, one not UTF-8.
    let mut float = list(&mut rng, 2 * MIB);
    let after_comma = |l: &str| MIB + l[MIB..].find(',').map_or(0, |i| i + 1);
    float.insert_str(after_comma(&float), "1.5,");
    let mut broken = list(&mut rng, 2 * MIB);
    broken.insert(after_comma(&broken), ',');
    for (what, odd) in [("float", float), ("broken", broken)] {
        let text = history(&mut rng, &[2 * MIB, 2 * MIB, 3 * MIB], Some((1, &odd)));
        let (par, one) = both(text.as_bytes(), vec![MIB / 3 + 1]);
        assert_eq!(par, one, "{what}");
        assert_eq!(par.is_ok(), what == "float", "{what}: {par:?}");
    }
    let mut text = history(&mut rng, &[2 * MIB, 3 * MIB], None).into_bytes();
    let at = text.len() - 5 * MIB / 2;
    text[at] = 0xff;
    let (par, one) = both(&text, vec![MIB]);
    assert!(par.is_err());
    assert_eq!(par, one);
    // A long line last, without its line end.
    let mut text = history(&mut rng, &[2 * MIB], None);
    text.push_str(line(99_999, &list(&mut rng, 3 * MIB)).trim_end());
    let (par, one) = both(text.as_bytes(), vec![MIB + 3]);
    let n = par.as_ref().map(Vec::len);
    assert_eq!(par, one);
    assert!(n.is_ok_and(|n| n > 3000));
}
