//! A full disk under the results store, for real: a small tmpfs is mounted as the run
//! folder, the history is recorded until the disk refuses, and the file must still
//! end at a whole line with every op numbered densely from 0, the error must name the
//! file, every later `record` must fail with it, and results.json must either be
//! written whole or not at all. Needs root (mount); without it the test says why and
//! skips, and under `CI=true` it fails instead.

use checkers::{Op, OpType, Process};
use harness::store::{Recorder, RunDir};
use std::path::PathBuf;
use std::time::Instant;

mod tmpfs_support;
use tmpfs_support::Tmpfs;

fn root_or_skip(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "{test}: CI=true but not root; mounting a tmpfs needs root"
    );
    eprintln!("{test}: skipped: needs root to mount a tmpfs");
    false
}

fn op(i: u64, pad: usize) -> Op {
    Op::new(
        0,
        Process::Client(i % 7),
        OpType::Invoke,
        "add",
        serde_json::json!({"n": i, "pad": "x".repeat(pad)}),
    )
}

/// Records ops of about `pad` bytes until the disk refuses; returns how many were
/// accepted and the error.
fn fill(path: PathBuf, pad: usize) -> (u64, String, Recorder) {
    let rec = Recorder::create(path, Instant::now()).expect("create history");
    for i in 0..100_000u64 {
        if let Err(e) = rec.record(op(i, pad)) {
            return (i, e.to_string(), rec);
        }
        if i % 50 == 0 {
            // Hand batches to the file now and then, as the flusher thread does.
            if let Err(e) = rec.flush() {
                return (i + 1, e.to_string(), rec);
            }
        }
    }
    panic!("the 256 KiB disk never filled");
}

#[test]
fn a_full_disk_leaves_the_history_whole_to_its_last_line() {
    if !root_or_skip("store_full_disk") {
        return;
    }
    // Op sizes that land the disk's end at different places inside a line.
    for pad in [37usize, 500, 3000] {
        let disk = Tmpfs::mount("256k");
        let run = RunDir::create(disk.path(), "full").expect("run dir");
        let history = run.file("history.jsonl");
        let (accepted, error, rec) = fill(history.clone(), pad);
        assert!(accepted > 0, "pad {pad}: nothing recorded");
        assert!(
            error.contains(&history.display().to_string())
                && error.contains("No space left on device"),
            "pad {pad}: {error}"
        );
        // Later records and flushes fail with the same error, and change nothing.
        let before = std::fs::read(&history).unwrap();
        assert_eq!(rec.record(op(0, 1)).unwrap_err().to_string(), error);
        assert_eq!(rec.flush().unwrap_err().to_string(), error);
        assert_eq!(rec.failure().map(|e| e.to_string()), Some(error.clone()));
        drop(rec);
        let text = std::fs::read(&history).unwrap();
        assert_eq!(
            text, before,
            "pad {pad}: the file changed after the failure"
        );
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "pad {pad}: the history ends inside a line: ...{:?}",
            String::from_utf8_lossy(&text[text.len().saturating_sub(80)..])
        );
        let ops = checkers::history::read_jsonl(text.as_slice())
            .unwrap_or_else(|e| panic!("pad {pad}: kept history does not parse: {e}"));
        assert!(!ops.is_empty(), "pad {pad}: no op kept");
        assert!(ops.len() as u64 <= accepted, "pad {pad}");
        for (i, o) in ops.iter().enumerate() {
            assert_eq!(o.index, i as u64, "pad {pad}: ops kept out of order");
        }
        // results.json on the full disk: refused, naming the file, and no partial
        // temp file left behind.
        let big = serde_json::json!({"pad": "y".repeat(300_000)});
        let e = run
            .write_json("results.json", &big)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("results.json") && e.contains("No space left"),
            "{e}"
        );
        let names: Vec<String> = std::fs::read_dir(&run.path)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("results.json")),
            "pad {pad}: {names:?}"
        );
    }
}
