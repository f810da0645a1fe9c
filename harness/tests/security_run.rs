//! Secrets and permissions of a real run, and `serve`'s default address:
//!
//! - a short lab run started with `SPLITBRAIN_SSH_PASSWORD` and
//!   `SPLITBRAIN_SSH_KEY_PASSPHRASE` set to marker strings, under `umask 000`: neither
//!   marker appears in any file of the run folder (history, test.json, results,
//!   reports, harness.log, node logs) nor on stdout/stderr, and no file or directory
//!   the run wrote is world-writable;
//! - `serve` listens on 127.0.0.1 unless told otherwise (the parsed default, and the
//!   address a started server reports).
//!
//! The lab part needs root (skips otherwise; fails under `CI=true`), holds the lab
//! lock and takes the lab down at the end, also on failure.

mod lab_support;

use clap::Parser;
use harness::cli::{Cli, Command as Sub};
use harness::lab;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "pw-marker-7f3c19e2";
const PASSPHRASE: &str = "pp-marker-b04d5a61";

struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        lab_support::heal_and_down();
    }
}

/// Every file under `dir` (not following symlinks), and the directories themselves.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_run_writes_no_secret_and_nothing_world_writable() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if unsafe { libc::geteuid() } != 0 {
        assert!(!ci, "CI=true but not root; the lab tests need root");
        eprintln!("security_run: skipped: needs root for the lab");
        return;
    }
    let _lock = lab::exclusive_use(Duration::from_secs(900)).expect("lab lock");
    let _down = Down;
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(lab_support::splitbrain())
        .args([
            "test",
            "--time-limit",
            "3s",
            "--recovery-time",
            "1s",
            "--nemesis",
            "none",
        ])
        .args(["--seed", "5", "--results-dir"])
        .arg(&results)
        .arg("--zoo-binary")
        .arg(lab_support::zoo_binary())
        .env(lab::LOCK_HELD_ENV, "1")
        .env("SPLITBRAIN_SSH_PASSWORD", PASSWORD)
        .env("SPLITBRAIN_SSH_KEY_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run splitbrain test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for marker in [PASSWORD, PASSPHRASE] {
        assert!(
            !stdout.contains(marker) && !stderr.contains(marker),
            "{marker} printed"
        );
    }
    let mut files = Vec::new();
    walk(&results, &mut files);
    let run_files: Vec<_> = files.iter().filter(|p| p.is_file()).collect();
    assert!(
        run_files.iter().any(|p| p.ends_with("history.jsonl"))
            && run_files.iter().any(|p| p.ends_with("harness.log"))
            && run_files.iter().any(|p| p.ends_with("report.html")),
        "the run folder is incomplete: {files:?}"
    );
    for p in &files {
        let meta = std::fs::symlink_metadata(p).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        assert_eq!(
            mode & 0o002,
            0,
            "{} is world-writable ({:o})",
            p.display(),
            mode & 0o7777
        );
        if meta.is_file() {
            let bytes = std::fs::read(p).unwrap();
            for marker in [PASSWORD, PASSPHRASE] {
                let found = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
                assert!(!found, "{marker} written to {}", p.display());
            }
        }
    }
}

#[test]
fn serve_listens_on_loopback_by_default() {
    let cli = Cli::try_parse_from(["splitbrain", "serve"]).unwrap();
    let Sub::Serve(args) = cli.command else {
        panic!("not serve")
    };
    assert!(args.bind.ip().is_loopback(), "default --bind {}", args.bind);
    assert_eq!(args.bind.ip().to_string(), "127.0.0.1");

    // A started server with only the port changed says where it listens.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(lab_support::splitbrain())
        .args(["serve", "--results-dir"])
        .arg(tmp.path())
        .args(["--bind", &format!("{}:0", args.bind.ip())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("on http://127.0.0.1:"), "{line}");
}
