//! The file driver behind [`super::for_each_view_file`]: no reading thread and no
//! shared stream. The file is cut into fixed chunks by offset; scanning thread `w`
//! takes chunks `w`, `w + SCANNERS`, ..., reads each with `pread` straight into its
//! own reused buffer (so the kernel's copy is split over the cores and the text is
//! still in that core's cache when it is scanned), and scans the lines that *start*
//! in the chunk: a line cut by the chunk's end is read on to its end, a line cut by
//! its start belongs to the chunk before. The caller's thread takes the chunks back
//! in file order, exactly as [`super::consume`] does for the reading thread's blocks.

use super::{consume, scan_batch, Batch, Block, SCANNERS};
use crate::history::HistoryError;
use crate::scan::OpView;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

/// Bytes per chunk: a few chunks per scanner fit its core's cache.
pub const CHUNK: u64 = 1 << 20;

/// The first read past a chunk's end, for the rest of its last line.
const FIRST_STEP: usize = 4 << 10;

/// Reads at `at` into `buf` from `start` on until `want` bytes are there or the
/// file ends; how many came. (What `buf` held past `start` is overwritten rather
/// than cleared first: a reused buffer costs no zeroing.)
fn read_more(
    file: &File,
    buf: &mut Vec<u8>,
    start: usize,
    at: u64,
    want: usize,
) -> std::io::Result<usize> {
    buf.resize(start + want, 0);
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[start + got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    buf.truncate(start + got);
    Ok(got)
}

/// Fills `buf` with the whole lines that start in `[lo, hi)` of the file, preceded
/// by spaces standing for the bytes of the line cut by `lo` (so that the buffer is
/// text exactly when those lines are, and the first line's leading blanks do not
/// count as a line). Empty when no line starts there.
fn read_chunk(
    file: &File,
    buf: &mut Vec<u8>,
    (lo, hi): (u64, u64),
    first_step: usize,
) -> std::io::Result<()> {
    // One byte before `lo` says whether a line starts at `lo`.
    let from = lo.saturating_sub(1);
    let want = (hi - from) as usize;
    let got = read_more(file, buf, 0, from, want)?;
    let first = if lo == 0 {
        Some(0)
    } else {
        memchr::memchr(b'\n', buf).map(|i| i + 1)
    };
    // The chunk may have been cut short by the file ending early (it shrank).
    let end = from + got as u64;
    match first {
        Some(s) if from + (s as u64) < hi.min(end) => buf[..s].fill(b' '),
        _ => {
            buf.clear();
            return Ok(());
        }
    }
    if got < want || buf.last() == Some(&b'\n') {
        return Ok(());
    }
    // The last line runs past `hi`: read on to its end, in steps that start at a
    // usual line's length and double (a long line is read a logarithmic number of
    // times, a short one costs one small read).
    let mut at = end;
    let mut step = first_step;
    loop {
        step = step.min(buf.len()).max(first_step);
        let before = buf.len();
        let got = read_more(file, buf, before, at, step)?;
        if let Some(i) = memchr::memchr(b'\n', &buf[before..]) {
            buf.truncate(before + i + 1);
            return Ok(());
        }
        if got < step {
            return Ok(());
        }
        at += got as u64;
        step *= 2;
    }
}

/// A scanning thread: chunks `first`, `first + SCANNERS`, ... up to `len`, each
/// read into a buffer handed back by the consumer when there is one.
fn scan_chunks(
    file: &File,
    (len, chunk): (u64, u64),
    first: u64,
    out: SyncSender<Batch>,
    spent: Receiver<Block>,
) {
    let first_step = FIRST_STEP.min(chunk as usize);
    let mut lo = first * chunk;
    let mut pool: Vec<Block> = Vec::new();
    while lo < len {
        pool.extend(spent.try_iter());
        let mut block = pool.pop().unwrap_or_default();
        block.out.clear();
        let span = (lo, (lo + chunk).min(len));
        let batch = match read_chunk(file, &mut block.bytes, span, first_step) {
            Ok(()) => scan_batch(block),
            Err(e) => Batch::failed(HistoryError::Io(e)),
        };
        let stop = batch.error.is_some();
        if out.send(batch).is_err() || stop {
            return;
        }
        lo += SCANNERS as u64 * chunk;
    }
}

/// [`super::for_each_view_file`] on a regular file of `len` bytes, in chunks of
/// `chunk` bytes (at least 1).
pub(super) fn for_each_view_chunks(
    file: &File,
    len: u64,
    chunk: u64,
    visit: &mut impl FnMut(&OpView<'_>),
) -> Result<(), HistoryError> {
    let chunk = chunk.max(1);
    std::thread::scope(|s| {
        let (mut scanned, mut spent): (Vec<Receiver<Batch>>, Vec<Sender<Block>>) =
            (Vec::new(), Vec::new());
        for w in 0..SCANNERS {
            let (tx, rx) = sync_channel(super::AHEAD);
            let (spent_tx, spent_rx) = channel();
            s.spawn(move || scan_chunks(file, (len, chunk), w as u64, tx, spent_rx));
            scanned.push(rx);
            spent.push(spent_tx);
        }
        // Returning early drops the receivers: each thread stops at its next send.
        consume(scanned, &spent, visit)
    })
}
