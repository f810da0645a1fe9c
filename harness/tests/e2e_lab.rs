//! End to end on the local lab: `splitbrain test` with no arguments (the zoo's flawed
//! async-failover mode, the set workload, the partition nemesis) must find lost
//! writes; the same system without faults must not. Needs root and network
//! namespaces: not root and not CI, the tests print why and skip; `CI=true` and not
//! root, they fail. They hold the lab's exclusive-use lock and take the lab down at the
//! end, also when they fail.

mod lab_support;

use harness::lab;
use lab_support::{guard, our_rules, splitbrain, zoo_binary};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str], results: &Path) -> (i32, Value, String) {
    let out = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
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

    bad_credentials_fail_with_one_line(dir.path());
    interrupted_run_leaves_nothing_behind(dir.path());
}

/// The lab's nodes file with a key the nodes do not know, and with an empty
/// known_hosts: one error line each naming the node, exit 3, nothing started.
fn bad_credentials_fail_with_one_line(results: &Path) {
    let state = Path::new(lab::DEFAULT_STATE_DIR);
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("stranger");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let empty = scratch.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let nodes = state.join("nodes");
    let lab_known_hosts = state.join("known_hosts");
    let lab_key = state.join("id_ed25519");
    let cases: [(Vec<&str>, &str); 2] = [
        (
            vec![
                "--ssh-private-key",
                key.to_str().unwrap(),
                "--known-hosts",
                lab_known_hosts.to_str().unwrap(),
            ],
            "rejected",
        ),
        (
            vec![
                "--ssh-private-key",
                lab_key.to_str().unwrap(),
                "--known-hosts",
                empty.to_str().unwrap(),
            ],
            "is not in",
        ),
    ];
    for (extra, want) in cases {
        let out = Command::new(splitbrain())
            .env(lab::LOCK_HELD_ENV, "1")
            .arg("test")
            .arg("--nodes-file")
            .arg(&nodes)
            .args(&extra)
            .arg("--results-dir")
            .arg(results)
            .arg("--zoo-binary")
            .arg(zoo_binary())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("splitbrain: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(want) && errors[0].contains("n1"),
            "{want:?} not in {}",
            errors[0]
        );
    }
}

/// SIGINT in the middle of a partition: the run stops, heals, tears down and says
/// `unknown` (exit 2); no rule of ours and no zoo process is left.
fn interrupted_run_leaves_nothing_behind(results: &Path) {
    let child = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args([
            "test",
            "--seed",
            "3",
            "--time-limit",
            "60s",
            "--nemesis-interval",
            "20s",
        ])
        .arg("--results-dir")
        .arg(results)
        .arg("--zoo-binary")
        .arg(zoo_binary())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partition is in place (first fault starts 10 s into the run).
    let history = results.join("latest").join("history.jsonl");
    let t = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains("\"type\":\"info\",\"f\":\"start-partition\"") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "no partition started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!our_rules().is_empty(), "the partition should be in place");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "interrupted runs are unknown\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(our_rules().len(), 0, "rules left after SIGINT");
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
