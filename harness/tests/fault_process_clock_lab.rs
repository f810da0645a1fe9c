//! Process and clock faults on the lab with the zoo running (started by
//! `splitbrain test --nemesis clock --leave-db-running`, so each daemon runs under
//! libfaketime with its node's offset file):
//!
//! - `fault clock bump n3 +5s` moves n3's wall clock by 5 s as its zoo process sees
//!   it and leaves the others alone; `fault clock reset` moves it back. What this
//!   proves: the zoo process of n3 carries `FAKETIME_TIMESTAMP_FILE` = n3's offset
//!   file (read from `/proc/PID/environ` by `fault status`), a program reading
//!   the time through libfaketime with exactly that environment (`date` run by
//!   `fault status`) sees the bump, and the zoo daemon itself answers its `time`
//!   request shifted by the bump (and back after reset) while n1's does not move.
//! - `fault pause n1` stops n1's zoo from answering (SIGSTOP, shown as paused),
//!   `fault resume n1` brings it back; `fault kill n2` leaves it dead,
//!   `fault restart n2` brings it back answering; `fault heal` resumes paused ones.
//! - Fault markers: a partition, a pause, a clock bump and a kill, each applied by
//!   its own `splitbrain fault` process, leave a marker per fault on the nodes
//!   (shown by `fault status` with the pid that applied it); `fault heal` from yet
//!   another process undoes exactly those — restarting the killed zoo, which
//!   nothing else on the node would tell from a crash — and leaves no rule, no
//!   stopped process, no clock offset and no marker.
//!
//! Needs root (skips otherwise; fails under `CI=true`); holds the lab lock, stops
//! the zoo and takes the lab down at the end, also on failure.

mod lab_support;

use harness::lab;
use harness::nodes::NodeSpec;
use harness::systems::zoo::Zoo;
use harness::systems::System;
use lab_support::{fault, our_rules, splitbrain, status};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use zoo::client::Client;
use zoo::proto::{Request, Response};

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

/// How far ahead of the controller the zoo daemon on `node` says its wall clock is
/// (its answer to `time` against the midpoint of the round trip), and half the
/// round trip, in seconds.
fn zoo_offset(node: &NodeSpec) -> (f64, f64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = format!("{}:{}", node.host, harness::systems::zoo::PORT)
            .parse()
            .unwrap();
        let d = Duration::from_secs(2);
        let mut c = Client::connect(addr, d).await.expect("connect to the zoo");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        let sent = now();
        let r = c.call(&Request::Time, d).await.expect("time answered");
        let received = now();
        match r {
            Response::Time { unix_ms } => (
                unix_ms as f64 / 1000.0 - (sent + received) / 2.0,
                (received - sent) / 2.0,
            ),
            other => panic!("{}: unexpected answer to time: {other:?}", node.name),
        }
    })
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
    let node = |n: &str| info.nodes.iter().find(|s| s.name == n).unwrap().clone();
    let (zoo_before, u) = zoo_offset(&node("n3"));
    assert!(
        zoo_before.abs() <= u + 0.5,
        "n3's zoo before any bump: {zoo_before} ±{u}"
    );
    ok(&["clock", "bump", "n3", "+5s"]);
    let (zoo3, u3) = zoo_offset(&node("n3"));
    assert!(
        (zoo3 - 5.0).abs() <= u3 + 0.5,
        "n3's zoo reports its wall time {zoo3} s ahead (±{u3}) after a +5 s bump"
    );
    let (zoo1, u1) = zoo_offset(&node("n1"));
    assert!(zoo1.abs() <= u1 + 0.5, "n1's zoo untouched: {zoo1} ±{u1}");
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
    let (zoo3, u3) = zoo_offset(&node("n3"));
    assert!(
        (zoo3 + 2.5).abs() <= u3 + 0.5,
        "n3's zoo at -2.5 s: {zoo3} ±{u3}"
    );
    ok(&["clock", "reset", "n3"]);
    let (reset, u) = offset(&status(), "n3");
    assert!(reset.abs() <= u + 0.5, "n3 back after reset: {reset} ±{u}");
    let (zoo3, u3) = zoo_offset(&node("n3"));
    assert!(
        zoo3.abs() <= u3 + 0.5,
        "n3's zoo back after reset: {zoo3} ±{u3}"
    );

    // Processes.
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
        assert_eq!(r["markers"], serde_json::json!([]), "{r}");
    }
    markers_let_a_new_process_heal_exactly_what_was_applied(&info);
}

/// The kinds of the markers on `node`, and the pids that wrote them.
fn markers(rows: &[Value], node: &str) -> Vec<(String, u64)> {
    row(rows, node)["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["fault"]["kind"].as_str().unwrap().to_string(),
                m["controller_pid"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn markers_let_a_new_process_heal_exactly_what_was_applied(info: &lab::LabInfo) {
    ok(&["partition", "isolate", "n5"]);
    ok(&["pause", "n2"]);
    ok(&["clock", "bump", "n3", "+2s"]);
    ok(&["kill", "n4"]);
    let rows = status();
    let kinds = |n: &str| -> Vec<String> { markers(&rows, n).into_iter().map(|m| m.0).collect() };
    assert_eq!(kinds("n1"), ["partition"]);
    assert_eq!(kinds("n2"), ["partition", "pause"]);
    assert_eq!(kinds("n3"), ["partition", "clock"]);
    assert_eq!(kinds("n4"), ["partition", "kill"]);
    assert_eq!(kinds("n5"), ["partition"]);
    let pid_of = |n: &str, k: &str| markers(&rows, n).into_iter().find(|m| m.0 == k).unwrap().1;
    let pids = [
        pid_of("n1", "partition"),
        pid_of("n2", "pause"),
        pid_of("n3", "clock"),
        pid_of("n4", "kill"),
    ];
    for (i, p) in pids.iter().enumerate() {
        assert_ne!(*p, u64::from(std::process::id()));
        assert!(
            !pids[..i].contains(p),
            "each fault by its own process: {pids:?}"
        );
    }
    assert!(row(&rows, "n2")["process"]
        .as_str()
        .unwrap()
        .starts_with("paused"));
    assert!(row(&rows, "n4")["process"]
        .as_str()
        .unwrap()
        .starts_with("dead"));
    assert!(!our_rules().is_empty());

    // A new controller process heals exactly those.
    let out = ok(&["heal"]);
    for want in [
        "undone: n2: pause of zoo async-failover",
        "undone: n3: clock bump +2.000s",
        "undone: n4: kill of zoo async-failover",
        "undone: n5: partition {",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    assert_eq!(our_rules(), Vec::<String>::new(), "rules left after heal");
    let t = Instant::now();
    let n4 = info.nodes.iter().find(|s| s.name == "n4").unwrap();
    while !answers(n4) {
        assert!(t.elapsed() < Duration::from_secs(10), "n4 never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    for r in status() {
        let node = r["node"].as_str().unwrap();
        assert!(
            r["process"].as_str().unwrap().starts_with("running"),
            "heal resumed and restarted: {r}"
        );
        let c = &r["clock"];
        let (off, u) = (
            c["offset_s"].as_f64().unwrap(),
            c["uncertainty_s"].as_f64().unwrap(),
        );
        assert!(
            off.abs() <= u + 0.5,
            "{node}: clock offset {off} ±{u} after heal"
        );
        assert_eq!(r["markers"], serde_json::json!([]), "{r}");
        let dir = format!("{}/work/{node}/faults", lab::DEFAULT_STATE_DIR);
        assert!(
            !std::path::Path::new(&dir).exists(),
            "{dir} left after heal"
        );
    }
}
