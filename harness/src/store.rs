//! The results store: one folder per run, `results/<test>/<YYYYMMDDTHHMMSS>/`, holding
//! `test.json`, the streamed `history.jsonl`, `results.json`, `harness.log` and
//! `nodes/<node>/`; `results/latest` (and `results/<test>/latest`) point at the newest;
//! and the [`Recorder`] that appends the history in batches of whole lines.

use checkers::history::Op;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("results store {path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// UTC timestamp `YYYYMMDDTHHMMSS` from the system clock (days-from-civil, no deps).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A run's folder, created on [`RunDir::create`].
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `<root>/<test>/<timestamp>` (suffixing `-2`, `-3`... if taken) and points
    /// the `latest` links at it. Results files are created readable by all, writable only
    /// by their owner.
    pub fn create(root: &Path, test: &str) -> Result<RunDir, StoreError> {
        let test_dir = root.join(test);
        fs::create_dir_all(&test_dir).map_err(io_err(&test_dir))?;
        let base = timestamp(SystemTime::now());
        let mut path = test_dir.join(&base);
        let mut n = 1;
        loop {
            match fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    path = test_dir.join(format!("{base}-{n}"));
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        let nodes = path.join("nodes");
        fs::create_dir_all(&nodes).map_err(io_err(&nodes))?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        relink(&root.join("latest"), &rel)?;
        relink(
            &test_dir.join("latest"),
            Path::new(path.file_name().unwrap_or_default()),
        )?;
        Ok(RunDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `nodes/<node>/`, created if needed.
    pub fn node_dir(&self, node: &str) -> Result<PathBuf, StoreError> {
        let p = self.path.join("nodes").join(node);
        fs::create_dir_all(&p).map_err(io_err(&p))?;
        Ok(p)
    }

    /// Writes `value` as pretty JSON to `name`, atomically (temp file then rename).
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        let text = serde_json::to_string_pretty(value).map_err(|e| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Err(e) = fs::write(&tmp, text + "\n") {
            // A full disk leaves a partial temp file: do not keep it.
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

fn relink(link: &Path, target: &Path) -> Result<(), StoreError> {
    let tmp = link.with_extension("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, link).map_err(io_err(link))
}

/// The longest a recorded op waits in memory before it is written to the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);

/// Pending lines beyond this size are written at once, without waiting.
const FLUSH_BYTES: usize = 64 * 1024;

/// The part of the recorder under its lock.
struct Pending {
    /// Complete lines not yet written.
    buf: Vec<u8>,
    file: File,
    /// Bytes of whole lines in the file.
    written: u64,
    next_index: u64,
    /// The first write error, reported by the next `record`, `flush` or `sync`.
    failed: Option<String>,
}

impl Pending {
    /// One `write(2)` of whole lines (more only if the kernel takes part of it). When
    /// the write fails part-way (a full disk takes what fits, then says ENOSPC), the
    /// file is cut back to its last whole line, so it stays readable to that line.
    fn write_out(&mut self) {
        if self.buf.is_empty() || self.failed.is_some() {
            return;
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => self.written += self.buf.len() as u64,
            Err(e) => {
                let mut message = e.to_string();
                let back = self
                    .file
                    .set_len(self.written)
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.written)));
                if let Err(t) = back {
                    message += &format!(
                        "; cutting the file back to its last whole line ({} bytes) failed too: {t}",
                        self.written
                    );
                }
                self.failed = Some(message);
            }
        }
        self.buf.clear();
    }
}

/// The history being recorded: ops are timed and numbered under one lock, so indices
/// and times increase together, serialised into a buffer of whole lines, and the
/// buffer is handed to the file in one `write(2)` when it reaches 64 KiB or, by a
/// background thread, at most [`FLUSH_EVERY`] after an op was recorded. The file only
/// ever receives complete lines, so a crash of the controller (kill -9) loses at most
/// the ops of that last interval and never leaves half a line behind.
pub struct Recorder {
    start: Instant,
    out: Arc<Mutex<Pending>>,
    path: PathBuf,
    /// Dropping it stops the flusher thread (after a last flush).
    stop_flusher: Option<mpsc::Sender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    pub fn create(path: PathBuf, start: Instant) -> Result<Recorder, StoreError> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let out = Arc::new(Mutex::new(Pending {
            buf: Vec::with_capacity(2 * FLUSH_BYTES),
            file,
            written: 0,
            next_index: 0,
            failed: None,
        }));
        let (stop_flusher, stopped) = mpsc::channel::<()>();
        let shared = out.clone();
        let flusher = std::thread::Builder::new()
            .name("history-flush".into())
            .spawn(move || loop {
                let done = !matches!(
                    stopped.recv_timeout(FLUSH_EVERY),
                    Err(mpsc::RecvTimeoutError::Timeout)
                );
                lock(&shared).write_out();
                if done {
                    return;
                }
            })
            .map_err(io_err(&path))?;
        Ok(Recorder {
            start,
            out,
            path,
            stop_flusher: Some(stop_flusher),
            flusher: Some(flusher),
        })
    }

    /// Nanoseconds since the test began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn failed(&self, p: &Pending) -> Result<(), StoreError> {
        match &p.failed {
            Some(message) => Err(StoreError::Io {
                path: self.path.clone(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Stamps `op` with the current time and next index, queues it for the file (see
    /// the type's doc for when it gets there), and returns it as recorded.
    pub fn record(&self, mut op: Op) -> Result<Op, StoreError> {
        let mut out = lock(&self.out);
        self.failed(&out)?;
        op.time = self.now();
        op.index = out.next_index;
        let before = out.buf.len();
        if let Err(e) = serde_json::to_writer(&mut out.buf, &op) {
            out.buf.truncate(before);
            return Err(StoreError::Io {
                path: self.path.clone(),
                message: format!("serialising op {}: {e}", op.index),
            });
        }
        out.buf.push(b'\n');
        out.next_index += 1;
        if out.buf.len() >= FLUSH_BYTES {
            out.write_out();
        }
        Ok(op)
    }

    /// The write error that stopped the history, if one did: from then on every
    /// `record` fails with it and the file ends at its last whole line.
    pub fn failure(&self) -> Option<StoreError> {
        self.failed(&lock(&self.out)).err()
    }

    pub fn len(&self) -> u64 {
        lock(&self.out).next_index
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every recorded op to the file now.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut out = lock(&self.out);
        out.write_out();
        self.failed(&out)
    }

    /// Writes every recorded op and syncs the file to disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut out = lock(&self.out);
        out.write_out();
        self.failed(&out)?;
        out.file.sync_all().map_err(io_err(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        drop(self.stop_flusher.take());
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkers::{OpType, Process};

    #[test]
    fn timestamps_are_utc_civil_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_350_896);
        assert_eq!(timestamp(t), "20261122T123456");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "20000229T000000");
    }

    #[test]
    fn run_dirs_links_and_streamed_history() {
        let root = tempfile::tempdir().unwrap();
        let a = RunDir::create(root.path(), "t").unwrap();
        let b = RunDir::create(root.path(), "t").unwrap();
        assert_ne!(a.path, b.path);
        let latest = fs::canonicalize(root.path().join("latest")).unwrap();
        assert_eq!(latest, fs::canonicalize(&b.path).unwrap());
        assert!(b.path.join("nodes").is_dir());
        let rec = Recorder::create(b.file("history.jsonl"), Instant::now()).unwrap();
        let op = Op::new(
            0,
            Process::Client(1),
            OpType::Invoke,
            "add",
            serde_json::json!(5),
        );
        rec.record(op.clone()).unwrap();
        let second = rec.record(op.clone()).unwrap();
        assert_eq!(second.index, 1);
        // On disk within the flush interval, without closing or flushing the recorder
        // (the wait is bounded; the background flush normally takes FLUSH_EVERY).
        let read = || fs::read_to_string(b.file("history.jsonl")).unwrap();
        let waited = Instant::now();
        while read().lines().count() < 2 && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ops = checkers::history::read_jsonl(read().as_bytes()).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(ops[1].time >= ops[0].time);
        // A batch past the size bound is written at once, in whole lines only.
        let mut big = op;
        big.value = serde_json::json!("x".repeat(1000));
        for _ in 0..100 {
            rec.record(big.clone()).unwrap();
        }
        let text = read();
        assert!(text.len() >= FLUSH_BYTES, "{}", text.len());
        assert!(text.ends_with('\n'));
        assert!(checkers::history::read_jsonl(text.as_bytes()).is_ok());
        rec.flush().unwrap();
        assert_eq!(read().lines().count(), 102);
        assert!(Recorder::create(b.file("history.jsonl"), Instant::now()).is_err());
        b.write_json("results.json", &serde_json::json!({"valid": true}))
            .unwrap();
        assert!(fs::read_to_string(b.file("results.json"))
            .unwrap()
            .contains("true"));
    }
}
