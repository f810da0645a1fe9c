//! Helpers shared by the lab integration tests: the binaries under test, `splitbrain
//! fault` and its status read-back, the harness's iptables rules on every node, and
//! the heal-then-down every lab test's guard runs, also when the test fails.
#![allow(dead_code)]

use harness::lab;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Nodes of the default lab.
pub const NODES: usize = lab::DEFAULT_NODES;

pub fn splitbrain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbrain"))
}

/// The zoo binary beside `splitbrain` (built by `cargo build --workspace`).
pub fn zoo_binary() -> PathBuf {
    let zoo = splitbrain().with_file_name("zoo");
    assert!(
        zoo.is_file(),
        "{} missing: build the workspace first (cargo build --workspace)",
        zoo.display()
    );
    zoo
}

/// Runs `splitbrain fault ARGS`: exit code, stdout, stderr.
pub fn fault(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .arg("fault")
        .args(args)
        .output()
        .expect("run splitbrain fault");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `splitbrain fault status --json`, one row per node.
pub fn status() -> Vec<Value> {
    let (code, out, err) = fault(&["status", "--json"]);
    assert_eq!(code, 0, "status: {err}");
    serde_json::from_str::<Value>(&out)
        .expect("status JSON")
        .as_array()
        .unwrap()
        .clone()
}

/// Lines of ours (`SPLITBRAIN` chains) in every node's iptables rules.
pub fn our_rules() -> Vec<String> {
    (1..=NODES)
        .flat_map(|n| {
            let out = Command::new("ip")
                .args(["netns", "exec", &format!("sb-n{n}"), "iptables", "-S"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("SPLITBRAIN"))
                .map(|l| format!("n{n}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Heals and takes the lab down when dropped: at the end of a lab test, also a failed one.
pub struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        heal_and_down();
    }
}

/// The lab for one test: its lock (waiting up to 15 minutes for other lab users) and
/// the heal-then-down at the end. `None` when not root (a skip, said on stderr), which
/// under `CI=true` is a failure instead. The lab goes down before the lock is released:
/// a tuple drops its fields in order, so `LabDown` comes first (with the lock first,
/// the next lab user got the lock and then lost its lab to this test's `down`).
pub fn guard(test: &str) -> Option<(LabDown, lab::LabLock)> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if unsafe { libc::geteuid() } != 0 {
        assert!(!ci, "{test}: CI=true but not root; the lab tests need root");
        eprintln!("{test}: skipped: needs root for network namespaces");
        return None;
    }
    let lock = lab::exclusive_use(std::time::Duration::from_secs(900)).expect("lab lock");
    Some((LabDown, lock))
}

/// Heals every fault and takes the lab down; what every lab test's guard ends with.
pub fn heal_and_down() {
    let _ = fault(&["heal"]);
    if let Err(e) = lab::down(&lab::LabConfig::default()) {
        eprintln!("lab down failed: {e}");
    }
}
