//! Structured logs (tracing) of the harness, written to the current run's
//! `harness.log`. The file can be switched between runs; before a run has a folder,
//! log lines are dropped (the CLI prints what a user must see on stderr itself).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

static SINK: Mutex<Option<File>> = Mutex::new(None);

struct SinkWriter;

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match SINK.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match SINK.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Installs the global subscriber (once); level from `SPLITBRAIN_LOG`, default `info`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPLITBRAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| SinkWriter)
        .try_init();
}

/// Sends log lines to `path` from now on (appending).
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    Ok(())
}

/// Stops writing to the current file.
pub fn close() {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = None;
}
