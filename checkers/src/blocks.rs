//! The multi-core reader behind the streaming checkers' `check_jsonl`: one thread
//! reads `history.jsonl` in large blocks of whole lines and deals them in turn to two
//! scanning threads, which scan every line with [`crate::scan::scan`] into
//! fixed-size entries that point into the block (byte spans, no per-line
//! allocation; a long list of integers, a final read, straight into a set); the
//! calling thread takes the blocks back in file order and hands
//! each line's [`OpView`] to the checker. Reading and scanning overlap the checker's
//! own work, and the checker still sees every entry in order, so its
//! results are those of the one-thread [`crate::scan::for_each_view`]: same line
//! numbering, same first-error stop, same errors.

use crate::history::{parse_line, HistoryError, Op};
use crate::scan::{scan_ints, scan_line_set_at, Members, OpView, SET_FROM};
use std::io::Read;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

mod entry;

use entry::{Entry, Fast};

/// Bytes read per block (a longer line makes its block longer), reached by doubling
/// from `FIRST_BLOCK` so that a small history costs no large buffer. (256 and
/// 512 KiB cost fewer page faults and less memory, but were slower on the 1M-op
/// history except on a machine loaded far beyond its two cores.)
const BLOCK: usize = 1 << 20;
const FIRST_BLOCK: usize = 64 << 10;
/// Room a line longer than a block gets at once, and more as it grows: the
/// final reads of a large history are lines of several MiB.
const LONG_ROOM: usize = 16 << 20;
/// Blocks each scanner keeps ready for the checker: bounds memory to a few blocks.
const AHEAD: usize = 1;
/// Text dealt to the scanners and not yet handed back by the checker, past which
/// the reader waits (one line longer than this still goes through alone).
const IN_FLIGHT: usize = 12 << 20;
/// Threads scanning blocks (besides the reading thread and the caller's).
pub const SCANNERS: usize = 2;

/// What scanning a block makes, kept with the block's buffers and reused.
#[derive(Default)]
struct Scanned {
    /// The elements of the values that are arrays of integers, read by the scanner.
    ints: Vec<i64>,
    /// One per non-blank line, in order.
    entries: Vec<Entry>,
    /// The lines outside the scanner's subset, parsed by serde ([`Entry::Slow`]).
    slow: Vec<Op>,
    /// The long integer lists, read as sets instead of into `ints` (see [`SET_FROM`]).
    sets: Vec<Members>,
}

impl Scanned {
    /// Empties it, keeping the room (entries need no dropping one by one).
    fn clear(&mut self) {
        self.ints.clear();
        self.entries.clear();
        self.slow.clear();
        self.sets.clear();
    }
}

/// A block of whole lines and its entries, in file order; `error` ends the stream.
struct Batch {
    text: String,
    /// Lines in the block (blank ones included).
    lines: usize,
    out: Scanned,
    error: Option<HistoryError>,
}

impl Batch {
    /// A batch that only ends the stream with `error`.
    fn failed(error: HistoryError) -> Batch {
        Batch {
            text: String::new(),
            lines: 0,
            out: Scanned::default(),
            error: Some(error),
        }
    }
}

fn not_utf8() -> HistoryError {
    HistoryError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "stream did not contain valid UTF-8",
    ))
}

/// Scans the lines of `text` (whole lines) into `out`, counting them in
/// `line`, stopping at the first bad line; its error numbers lines from the
/// block's start (the consumer adds the lines before it).
fn scan_block(text: &str, line: &mut usize, out: &mut Scanned) -> Option<HistoryError> {
    let Scanned {
        ints,
        entries,
        slow,
        sets,
    } = out;
    entries.reserve(text.len() / 96 + 1);
    let mut at = 0;
    while at < text.len() {
        *line += 1;
        // The usual line is read where it stands, its end found by the scanner; a
        // long list of integers (a final read) straight into a set.
        if let Some((v, r, set, next)) = scan_line_set_at(text, at, ints, SET_FROM) {
            if let Some(mut fast) = Fast::of(text, &v, r) {
                let stored = match set {
                    Some(set) => {
                        let ok = fast.set_members(sets.len()).is_some();
                        sets.push(set);
                        ok
                    }
                    None => true,
                };
                if stored {
                    entries.push(Entry::Fast(fast));
                    at = next;
                    continue;
                }
            }
        }
        // Anything else as a line reader reads it: split off, trimmed.
        let end = memchr::memchr(b'\n', &text.as_bytes()[at..]).map_or(text.len(), |i| at + i);
        let raw = text.get(at..end).unwrap_or_default();
        at = end + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        match scan_ints(l, ints).and_then(|(v, r)| Fast::of(text, &v, r)) {
            Some(fast) => entries.push(Entry::Fast(fast)),
            None => match parse_line(l, *line) {
                Ok(op) => {
                    entries.push(Entry::Slow(slow.len()));
                    slow.push(op);
                }
                Err(e) => return Some(e),
            },
        }
    }
    None
}

/// Appends to `buf` until `size` more bytes are there or the input ends (false).
/// The bytes go straight into the buffer's spare room (no clearing first).
fn fill<R: Read>(input: &mut R, buf: &mut Vec<u8>, size: usize) -> std::io::Result<bool> {
    buf.reserve(size);
    let got = input.by_ref().take(size as u64).read_to_end(buf)?;
    Ok(got == size)
}

/// The buffers of one block: its bytes, and (empty, reused) room for its scan.
/// The consumer hands them back to the reader once the checker has seen them.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    out: Scanned,
}

/// A block of whole lines as read, or the read error that ends the input.
type Raw = Result<Block, std::io::Error>;

/// Scans a block of whole lines. At its first line that is not UTF-8 the batch
/// ends the stream, with the lines before it scanned as a line reader would.
fn scan_batch(block: Block) -> Batch {
    let Block { bytes, mut out } = block;
    let mut lines = 0;
    let (text, error) = match String::from_utf8(bytes) {
        Ok(text) => {
            let error = scan_block(&text, &mut lines, &mut out);
            (text, error)
        }
        Err(e) => {
            let bad = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            // The good prefix up to the last line boundary before the bad byte.
            let cut = memchr::memrchr(b'\n', &bytes[..bad]).map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
            let error = scan_block(&text, &mut lines, &mut out);
            (text, error.or_else(|| Some(not_utf8())))
        }
    };
    Batch {
        text,
        out,
        lines,
        error,
    }
}

/// The pooled block to fill next: the smallest whose room holds `want` bytes (a
/// large one, grown for a long line, stays free for the next long line), else
/// the largest (it grows), else a new one.
fn take(pool: &mut Vec<Block>, want: usize) -> Block {
    let room = |b: &Block| b.bytes.capacity();
    let fits = (0..pool.len())
        .filter(|&i| room(&pool[i]) >= want)
        .min_by_key(|&i| room(&pool[i]));
    let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| room(&pool[i])));
    let mut block = pick.map(|i| pool.swap_remove(i)).unwrap_or_default();
    block.out.clear();
    block.bytes.clear();
    block
}

/// Takes back the blocks the checker is done with; while more than [`IN_FLIGHT`]
/// bytes are dealt and unseen and `enough` says the pool lacks what is needed,
/// waits for them (bounding memory, and letting a run of long lines reuse a few
/// large buffers instead of each making its own).
fn recycle(
    spent: &Receiver<Block>,
    pool: &mut Vec<Block>,
    in_flight: &mut usize,
    enough: impl Fn(&[Block]) -> bool,
) {
    let back = |b: Block, pool: &mut Vec<Block>, in_flight: &mut usize| {
        *in_flight = in_flight.saturating_sub(b.bytes.len());
        pool.push(b);
    };
    while let Ok(b) = spent.try_recv() {
        back(b, pool, in_flight);
    }
    while *in_flight > IN_FLIGHT && !enough(pool) {
        let Ok(b) = spent.recv() else { break };
        back(b, pool, in_flight);
    }
}

/// The reading thread: blocks of whole lines, dealt to the scanners in turn, in
/// buffers handed back by the consumer when there are any.
fn read_blocks<R: Read>(mut input: R, outs: Vec<SyncSender<Raw>>, spent: Receiver<Block>) {
    let mut size = FIRST_BLOCK;
    let (mut pool, mut in_flight) = (Vec::new(), 0usize);
    // The next block, already holding the partial line the last one ended with
    // (copied once, straight from where it was read).
    let mut next: Option<Block> = None;
    for turn in 0.. {
        let out = &outs[turn % outs.len()];
        recycle(&spent, &mut pool, &mut in_flight, |_| false);
        let mut block = match next.take() {
            Some(b) => b,
            None => take(&mut pool, size),
        };
        let mut buf = std::mem::take(&mut block.bytes);
        let more = loop {
            let start = buf.len();
            match fill(&mut input, &mut buf, size) {
                Ok(true) => {}
                Ok(false) => break false,
                Err(e) => {
                    let _ = out.send(Err(e));
                    return;
                }
            }
            size = (2 * size).min(BLOCK);
            // The partial last line starts the next block; a block without a
            // line end grows until it has one.
            if let Some(i) = memchr::memrchr(b'\n', &buf[start..]) {
                let end = start + i + 1;
                let tail = buf.len() - end;
                let mut after = take(&mut pool, tail + size);
                after.bytes.extend_from_slice(&buf[end..]);
                buf.truncate(end);
                next = Some(after);
                break true;
            }
            // A long line: read on a block at a time into a large buffer, one a
            // long line before left if there is one (fresh memory costs a page
            // fault per 4 KiB; waited for while too much is in flight), else
            // room for a few blocks at once: room that is never read into
            // costs nothing, and growing a block at a time would copy the line
            // into new memory again and again.
            if buf.capacity() - buf.len() < size {
                let want = (buf.len() + size).max(LONG_ROOM);
                recycle(&spent, &mut pool, &mut in_flight, |pool| {
                    pool.iter().any(|b| b.bytes.capacity() >= want)
                });
                let larger = (0..pool.len())
                    .filter(|&i| pool[i].bytes.capacity() >= want)
                    .max_by_key(|&i| pool[i].bytes.capacity());
                match larger {
                    Some(i) => {
                        let mut big = pool.swap_remove(i);
                        big.out.clear();
                        big.bytes.clear();
                        big.bytes.extend_from_slice(&buf);
                        std::mem::swap(&mut big.bytes, &mut buf);
                        pool.push(big);
                    }
                    None => buf.reserve(LONG_ROOM.max(buf.len())),
                }
            }
        };
        in_flight += buf.len();
        block.bytes = buf;
        if out.send(Ok(block)).is_err() || !more {
            return;
        }
    }
}

/// A scanning thread: its share of the blocks, in the order it got them.
fn scan_blocks(blocks: Receiver<Raw>, out: SyncSender<Batch>) {
    for raw in blocks {
        let batch = match raw {
            Err(e) => Batch::failed(HistoryError::Io(e)),
            Ok(block) => scan_batch(block),
        };
        let stop = batch.error.is_some();
        if out.send(batch).is_err() || stop {
            return;
        }
    }
}

/// Takes the scanners' batches in the order the blocks were dealt, numbering
/// their lines on from the blocks before, and hands the buffers back.
fn consume(
    batches: Vec<Receiver<Batch>>,
    spent: Sender<Block>,
    visit: &mut impl FnMut(&OpView<'_>),
) -> Result<(), HistoryError> {
    let mut before = 0;
    for turn in 0.. {
        // A scanner that hangs up on its turn got no further block: the end.
        let Ok(batch) = batches[turn % batches.len()].recv() else {
            break;
        };
        let out = &batch.out;
        for e in &out.entries {
            match e {
                Entry::Fast(f) => visit(&f.view(&batch.text, &out.ints, &out.sets)),
                Entry::Slow(i) => {
                    if let Some(op) = out.slow.get(*i) {
                        visit(&OpView::of(op))
                    }
                }
            }
        }
        if let Some(mut e) = batch.error {
            if let HistoryError::Parse { line, .. } | HistoryError::Semantic { line, .. } = &mut e {
                *line += before;
            }
            return Err(e);
        }
        before += batch.lines;
        // The reader may be gone (end of input): the buffers are then just freed.
        let _ = spent.send(Block {
            bytes: batch.text.into_bytes(),
            out: batch.out,
        });
    }
    Ok(())
}

/// Streams a JSONL history into `visit` like [`crate::scan::for_each_view`] (same
/// entries in the same order, same errors): one thread reads blocks of whole lines,
/// [`SCANNERS`] threads scan them, and `visit` runs on this thread over the blocks
/// in file order. Memory: a few 1 MiB blocks and their entries per scanner, and
/// about 12 MiB of text in flight at most (more only for a line that long).
pub fn for_each_view_par<R: Read + Send>(
    input: R,
    mut visit: impl FnMut(&OpView<'_>),
) -> Result<(), HistoryError> {
    std::thread::scope(|s| {
        let (mut to_scan, mut scanned) = (Vec::new(), Vec::new());
        for _ in 0..SCANNERS {
            let (tx, rx) = sync_channel(1);
            let (btx, brx) = sync_channel(AHEAD);
            s.spawn(move || scan_blocks(rx, btx));
            to_scan.push(tx);
            scanned.push(brx);
        }
        let (spent_tx, spent_rx) = channel();
        s.spawn(move || read_blocks(input, to_scan, spent_rx));
        // Returning early drops the receivers: each thread stops at its next send.
        consume(scanned, spent_tx, &mut visit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::for_each_view;

    fn show(v: &OpView<'_>) -> String {
        format!(
            "{} {} {:?} {:?} {} {:?} {:?} {} {:?} {:?} {:?} {:?}",
            v.index,
            v.time,
            v.process,
            v.kind,
            v.f,
            v.key,
            v.node,
            v.value.to_value(),
            v.acked_by,
            v.epoch,
            v.value.as_i64(),
            v.is_final
        )
    }

    fn both(text: &[u8]) -> (Result<Vec<String>, String>, Result<Vec<String>, String>) {
        let run = |par: bool| {
            let mut seen = Vec::new();
            let mut visit = |v: &OpView<'_>| seen.push(show(v));
            let r = if par {
                for_each_view_par(text, &mut visit)
            } else {
                for_each_view(text, &mut visit)
            };
            r.map(|()| seen).map_err(|e| e.to_string())
        };
        (run(true), run(false))
    }

    #[test]
    fn blocks_read_what_the_line_reader_reads_across_block_boundaries() {
        // Lines long enough that several blocks are cut mid-line, one line longer
        // than a block, a serde-path line, blank lines, no final newline.
        let mut text = String::new();
        let long: Vec<String> = (0..(BLOCK / 3)).map(|i| i.to_string()).collect();
        for i in 0..120_000u64 {
            let value = if i == 70_000 {
                format!("[{}]", long.join(","))
            } else if i % 1000 == 7 {
                "1.5".to_string()
            } else {
                i.to_string()
            };
            text.push_str(&format!(
                "{{\"index\":{i},\"time\":{},\"process\":{},\"type\":\"ok\",\"f\":\"add\",\"key\":\"k\",\"value\":{value},\"acked_by\":\"n1\",\"epoch\":3}}\n",
                i * 10,
                i % 7
            ));
            if i % 5000 == 0 {
                text.push_str("  \n");
            }
        }
        text.push_str(
            "{\"index\":0,\"time\":1,\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"x\"}",
        );
        assert!(text.len() > 3 * BLOCK);
        let (par, seq) = both(text.as_bytes());
        let par = par.expect("parses");
        assert_eq!(par.len(), 120_001);
        assert_eq!(Ok(par), seq);
    }

    #[test]
    fn a_long_list_comes_as_its_set_and_a_short_one_as_its_elements() {
        let long: Vec<i64> = (0..5_000).map(|i| (i * 7) % 4_001 - 3).collect();
        let line = |v: &[i64]| {
            format!(
                "{{\"index\":1,\"time\":2,\"process\":3,\"type\":\"ok\",\"f\":\"read\",\"value\":{}}}\n",
                serde_json::to_string(v).unwrap_or_default()
            )
        };
        let text = format!("{}{}", line(&long), line(&[4, 4, -1]));
        assert!(text.len() > SET_FROM);
        let mut seen = Vec::new();
        for_each_view_par(text.as_bytes(), |v| {
            let mut buf = Vec::new();
            let elems = v.value.ints(&mut buf).map(<[i64]>::to_vec);
            seen.push((v.members.map(|m| m.iter().collect::<Vec<_>>()), elems));
        })
        .expect("parses");
        let mut want: Vec<i64> = long.clone();
        want.sort_unstable();
        want.dedup();
        let (set, elems) = &seen[0];
        let mut got = set.clone().expect("a set for the long list");
        got.sort_unstable();
        assert_eq!(got, want);
        // The raw text still reads as the list, in order, repeats included.
        assert_eq!(elems.as_deref(), Some(&long[..]));
        assert_eq!(seen[1], (None, Some(vec![4, 4, -1])));
    }

    #[test]
    fn what_an_entry_cannot_hold_reads_as_the_line_reader_reads_it() {
        // Processes and epochs past `u32`, names of 255 and 256 bytes or more:
        // an entry holds the first and the serde path reads the rest, the same.
        let mut text = String::new();
        // Each past its limit alone, all at their limits, all past them.
        let lines = [
            (1u64 << 32, 3u64, 5usize, 3usize, 3usize),
            (7, (1 << 32) + 9, 5, 3, 3),
            (8, 4, 256, 3, 3),
            (9, 4, 3, 256, 3),
            (10, 4, 3, 3, 256),
            (u32::MAX as u64, u32::MAX as u64, 255, 255, 255),
            (u64::MAX, u64::MAX, 300, 256, 257),
        ];
        for (i, (p, e, key, node, by)) in lines.into_iter().enumerate() {
            text.push_str(&format!(
                "{{\"index\":{i},\"time\":1,\"process\":{p},\"type\":\"ok\",\"f\":\"add\",\"key\":\"{}\",\"value\":{i},\"node\":\"{}\",\"acked_by\":\"{}\",\"epoch\":{e}}}\n",
                "k".repeat(key),
                "n".repeat(node),
                "a".repeat(by),
            ));
        }
        let (par, seq) = both(text.as_bytes());
        assert_eq!(par.as_ref().map(Vec::len), Ok(lines.len()));
        assert_eq!(par, seq);
    }

    #[test]
    fn the_first_bad_line_stops_it_with_the_line_readers_error() {
        let good = "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"add\",\"value\":1}\n";
        let mut text = good.repeat(60_000).into_bytes();
        text.extend_from_slice(b"{\"index\":1,\"time\":2,\"proc\n");
        text.extend_from_slice(good.as_bytes());
        let (par, seq) = both(&text);
        assert!(par.as_ref().is_err_and(|e| e.starts_with("line 60001")));
        assert_eq!(par, seq);
        let mut bad = good.repeat(60_000).into_bytes();
        bad.extend_from_slice(b"{\"f\":\"\xff\"}\n");
        bad.extend_from_slice(good.as_bytes());
        let (par, seq) = both(&bad);
        assert!(par.is_err());
        assert_eq!(par, seq);
    }
}
