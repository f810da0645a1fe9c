//! Process and clock faults on the lab with the zoo running (started by
//! `splitbrain test --nemesis clock --leave-db-running`, so each daemon runs under
//! libfaketime with its node's offset file):
//!
//! - `fault clock bump n3 +5s` moves n3's wall clock by 5 s as its zoo process sees
//!   it and leaves the others alone; `fault clock reset` moves it back. What this
//!   proves: the zoo process of n3 carries `FAKETIME_TIMESTAMP_FILE` = n3's offset
//!   file (read from `/proc/PID/environ` by `fault status`), and a program reading
//!   the time through libfaketime with exactly that environment (`date` run by
//!   `fault status`) sees the bump. The zoo's `role` answer carries no wall time, so
//!   the zoo's own reading is not observed directly.
//! - `fault pause n1` stops n1's zoo from answering (SIGSTOP, shown as paused),
//!   `fault resume n1` brings it back; `fault kill n2` leaves it dead,
//!   `fault restart n2` brings it back answering; `fault heal` resumes paused ones.
//!
//! Needs root (skips otherwise; fails under `CI=true`); holds the lab lock, stops
//! the zoo and takes the lab down at the end, also on failure.

mod lab_support;

use harness::lab;
use harness::nodes::NodeSpec;
use harness::systems::zoo::Zoo;
use harness::systems::System;
use lab_support::{fault, splitbrain, status};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fault(&["heal"]);
        let _ = fault(&["kill", "all"]);
        if let Err(e) = lab::down(&lab::LabConfig::default()) {
            eprintln!("lab down failed: {e}");
        }
    }
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = fault(args);
    assert_eq!(code, 0, "fault {args:?}: {err}");
    out
}

fn row(rows: &[Value], node: &str) -> Value {
    rows.iter()
        .find(|r| r["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("{node} missing in status"))
}

/// Whether the zoo on `node` answers a role request within 1 s.
fn answers(node: &NodeSpec) -> bool {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zoo = Zoo {
        mode: "async-failover".into(),
        binary: PathBuf::new(),
        connect_timeout: Duration::from_secs(1),
        faketime: false,
    };
    rt.block_on(zoo.roles(std::slice::from_ref(node), Duration::from_secs(1)))
        .len()
        == 1
}

#[test]
fn clock_bump_reset_and_process_kill_pause_resume_restart() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if unsafe { libc::geteuid() } != 0 {
        assert!(!ci, "CI=true but not root; the lab tests need root");
        eprintln!("fault_process_clock_lab: skipped: needs root for network namespaces");
        return;
    }
    let _lock = lab::exclusive_use(Duration::from_secs(900)).expect("lab lock");
    let info = lab::up(&lab::LabConfig::default()).expect("lab up");
    let _cleanup = Cleanup;
    let zoo = splitbrain().with_file_name("zoo");
    assert!(
        zoo.is_file(),
        "{} missing: cargo build --workspace",
        zoo.display()
    );
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args([
            "test",
            "--nemesis",
            "clock",
            "--time-limit",
            "4s",
            "--nemesis-interval",
            "2s",
            "--recovery-time",
            "1s",
            "--leave-db-running",
            "--seed",
            "1",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .arg("--zoo-binary")
        .arg(&zoo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "test run failed: {stderr}"
    );
    let history = std::fs::read_to_string(results.path().join("latest/history.jsonl")).unwrap();
    assert!(
        history.contains("\"f\":\"clock-offsets\""),
        "offsets recorded in the history"
    );

    // Clock: every zoo runs under its node's offset file; bump n3 only.
    let rows = status();
    for r in &rows {
        let node = r["node"].as_str().unwrap();
        let want = format!("{}/work/{node}/faketime.rc", lab::DEFAULT_STATE_DIR);
        assert_eq!(r["faketime_file"], want.as_str(), "{r}");
        assert!(r["process"].as_str().unwrap().starts_with("running"), "{r}");
    }
    let offset = |rows: &[Value], n: &str| {
        let c = &row(rows, n)["clock"];
        (
            c["offset_s"].as_f64().unwrap(),
            c["uncertainty_s"].as_f64().unwrap(),
        )
    };
    let (before, _) = offset(&rows, "n3");
    ok(&["clock", "bump", "n3", "+5s"]);
    let rows = status();
    let (bumped, u) = offset(&rows, "n3");
    assert!(
        (bumped - before - 5.0).abs() <= 2.0 * u + 0.5,
        "n3 moved {before} -> {bumped} (±{u})"
    );
    let (other, u1) = offset(&rows, "n1");
    assert!(other.abs() <= u1 + 0.5, "n1 untouched: {other} ±{u1}");
    ok(&["clock", "bump", "n3", "-2.5s"]);
    let (back, u) = offset(&status(), "n3");
    assert!((back + 2.5).abs() <= u + 0.5, "n3 at -2.5 s: {back} ±{u}");
    ok(&["clock", "reset", "n3"]);
    let (reset, u) = offset(&status(), "n3");
    assert!(reset.abs() <= u + 0.5, "n3 back after reset: {reset} ±{u}");

    // Processes.
    let node = |n: &str| info.nodes.iter().find(|s| s.name == n).unwrap().clone();
    assert!(answers(&node("n1")) && answers(&node("n2")));
    ok(&["pause", "n1"]);
    assert!(row(&status(), "n1")["process"]
        .as_str()
        .unwrap()
        .starts_with("paused"));
    assert!(!answers(&node("n1")), "a paused zoo must not answer");
    ok(&["resume", "n1"]);
    assert!(row(&status(), "n1")["process"]
        .as_str()
        .unwrap()
        .starts_with("running"));
    assert!(answers(&node("n1")));
    ok(&["kill", "n2"]);
    assert!(row(&status(), "n2")["process"]
        .as_str()
        .unwrap()
        .starts_with("dead"));
    let (code, _, err) = fault(&["kill", "n2"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("n2") && err.contains("no running process"),
        "{err}"
    );
    ok(&["restart", "n2"]);
    let t = Instant::now();
    while !answers(&node("n2")) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "restarted n2 never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _, err) = fault(&["restart", "n2"]);
    assert_eq!(code, 3, "a running zoo is not started twice");
    assert!(err.contains("still running"), "{err}");
    ok(&["pause", "n4,n5"]);
    ok(&["heal"]);
    for r in status() {
        assert!(
            r["process"].as_str().unwrap().starts_with("running"),
            "heal resumes: {r}"
        );
    }
}
