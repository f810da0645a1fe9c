//! End to end on the local lab: `splitbrain test` with no arguments (the zoo's flawed
//! async-failover mode, the set workload, the partition nemesis) must find lost
//! writes; the same system without faults must not. Needs root and network
//! namespaces: not root and not CI, the tests print why and skip; `CI=true` and not
//! root, they fail. They hold the lab's exclusive-use lock and take the lab down at the
//! end, also when they fail.

use harness::lab;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        if let Err(e) = lab::down(&lab::LabConfig::default()) {
            eprintln!("lab down failed: {e}");
        }
    }
}

fn guard(test: &str) -> Option<(lab::LabLock, LabDown)> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(!ci, "{test}: CI=true but not root; the lab tests need root");
        eprintln!("{test}: skipped: needs root for network namespaces");
        return None;
    }
    let lock = lab::exclusive_use(Duration::from_secs(600)).expect("lab lock");
    Some((lock, LabDown))
}

fn splitbrain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbrain"))
}

fn zoo_binary() -> PathBuf {
    let zoo = splitbrain().with_file_name("zoo");
    assert!(
        zoo.is_file(),
        "{} missing: build the workspace first (cargo build --workspace)",
        zoo.display()
    );
    zoo
}

fn run(args: &[&str], results: &Path) -> (i32, Value, String) {
    let out = Command::new(splitbrain())
        .arg("test")
        .args(args)
        .arg("--results-dir")
        .arg(results)
        .arg("--zoo-binary")
        .arg(zoo_binary())
        .output()
        .expect("run splitbrain");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let code = out.status.code().unwrap_or(-1);
    let latest = results.join("latest").join("results.json");
    let text = std::fs::read_to_string(&latest).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nexit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            latest.display()
        )
    });
    (
        code,
        serde_json::from_str(&text).expect("results.json is JSON"),
        format!("{stdout}\n{stderr}"),
    )
}

fn lost_writes(results: &Value) -> &Value {
    results["checkers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["checker"] == "lost-writes"))
        .map(|c| &c["details"])
        .expect("a lost-writes checker result")
}

#[test]
fn default_test_finds_lost_writes_and_no_faults_finds_none() {
    let Some(_g) = guard("e2e") else { return };
    let dir = tempfile::tempdir().unwrap();

    // The default run: the flawed mode under partitions loses acknowledged writes.
    let (code, results, output) = run(&["--seed", "7"], dir.path());
    let lw = lost_writes(&results);
    assert_eq!(code, 1, "exit code must say invalid\n{output}");
    assert_eq!(results["valid"], "invalid", "{output}");
    assert!(
        lw["lost_count"].as_u64().unwrap() >= 1,
        "expected lost writes: {lw}\n{output}"
    );
    assert!(
        lw["acknowledged"].as_u64().unwrap() > 100,
        "too few acknowledged writes: {lw}"
    );
    assert!(
        !results["faults"].as_array().unwrap().is_empty(),
        "the nemesis must have partitioned"
    );
    assert!(results["heal_errors"].as_array().unwrap().is_empty());
    assert!(
        output.contains("lost writes"),
        "summary table printed:\n{output}"
    );
    // The run folder holds what DESIGN.md says.
    let run_dir = std::fs::canonicalize(dir.path().join("latest")).unwrap();
    for f in [
        "test.json",
        "history.jsonl",
        "results.json",
        "harness.log",
        "nodes/n1/zoo.log",
    ] {
        assert!(
            run_dir.join(f).is_file(),
            "{f} missing in {}",
            run_dir.display()
        );
    }
    // Nothing of the partition is left on any node.
    for n in 1..=5 {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("sb-n{n}"), "iptables", "-S"])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&out.stdout);
        assert!(
            !rules.contains("SPLITBRAIN"),
            "n{n} still has rules:\n{rules}"
        );
    }

    // The same system with no faults loses nothing: no false positive.
    let (code, results, output) = run(
        &["--seed", "7", "--nemesis", "none", "--time-limit", "8s"],
        dir.path(),
    );
    assert_eq!(results["valid"], "valid", "{output}");
    assert_eq!(code, 0);
    assert_eq!(lost_writes(&results)["lost_count"], 0);
}
