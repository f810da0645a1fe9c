//! SIGINT while a scheduled fault is active (`--nemesis partition,packet`, faults
//! 20 s long): the run stops, heals every node and tears down, exits 2 (unknown);
//! afterwards no rule of ours (partition or packet loss chain) and no zoo process is
//! left on any node. Needs root (skips otherwise; fails under `CI=true`); holds the
//! lab lock and takes the lab down at the end, also on failure.

mod lab_support;

use harness::lab;
use lab_support::{heal_and_down, our_rules, splitbrain};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        heal_and_down();
    }
}

/// Interrupts and reaps the run if the test fails before it does.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}

#[test]
fn sigint_during_a_scheduled_fault_heals_every_node() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if unsafe { libc::geteuid() } != 0 {
        assert!(!ci, "CI=true but not root; the lab tests need root");
        eprintln!("fault_sigint_lab: skipped: needs root for network namespaces");
        return;
    }
    let _lock = lab::exclusive_use(Duration::from_secs(900)).expect("lab lock");
    lab::up(&lab::LabConfig::default()).expect("lab up");
    let _down = LabDown;
    let results = tempfile::tempdir().unwrap();
    let zoo = splitbrain().with_file_name("zoo");
    assert!(zoo.is_file(), "{} missing", zoo.display());
    let child = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args([
            "test",
            "--nemesis",
            "partition,packet",
            "--nemesis-interval",
            "20s",
            "--time-limit",
            "60s",
            "--seed",
            "2",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .arg("--zoo-binary")
        .arg(&zoo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Child(Some(child));
    let history = results.path().join("latest/history.jsonl");
    let t = Instant::now();
    let started = loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"start-"))
        {
            break l.to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(240), "no fault started");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !our_rules().is_empty(),
        "the fault should be in place: {started}"
    );
    let child = guard.0.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "interrupted runs are unknown\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(our_rules(), Vec::<String>::new(), "rules left after SIGINT");
    let ps = Command::new("pgrep")
        .args(["-f", "lab/work/n[0-9]+/zoo/bin/zoo"])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "zoo processes left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}
