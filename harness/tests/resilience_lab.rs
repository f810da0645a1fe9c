//! A lab run surviving its own faults, then stopping cleanly on a full disk: the
//! results folder is a small tmpfs; mid-run the sshd processes serving the
//! controller's connection to n2 are killed (the run must reconnect, say so in
//! harness.log, and go on), then the tmpfs is filled. The run must stop with exit 3 and
//! one error line naming history.jsonl, leave no partition rule and no zoo process,
//! keep history.jsonl whole to its last line, and once space is freed `report` and
//! `check` must work on what was kept.
//!
//! A second test reboots a node that is not the master mid-run (`splitbrain lab
//! reboot`: every process in its namespace killed, its rules and qdiscs cleared, files
//! kept): the run must reconnect, restart that node's zoo in its final heal, end with a
//! verdict and leave nothing of ours behind. Then a node reboots while a partition is
//! in effect: its rules are gone but its marker stays, `fault status` says the marker
//! is not in effect, and `fault heal` removes it. Needs root; holds the lab lock.

mod lab_support;
mod tmpfs_support;

use harness::lab;
use lab_support::{guard, our_rules, splitbrain, zoo_binary};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tmpfs_support::Tmpfs;

/// The run under test, killed if the test fails before it ends (the lab guard then
/// heals what it left).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Every descendant of `pid` (for the lab's sshd: the processes serving its
/// connections).
fn descendants(pid: u32) -> Vec<u32> {
    let children = |p: u32| -> Vec<u32> {
        let out = Command::new("pgrep")
            .args(["-P", &p.to_string()])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let mut all = children(pid);
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// SIGKILLs the processes serving node `name`'s SSH connections, leaving its sshd
/// listening; returns how many.
fn kill_ssh_sessions(name: &str) -> usize {
    let status = lab::status(&lab::LabConfig::default()).expect("lab status");
    let node = status
        .nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no lab node {name}"));
    let listener = node.sshd_pid.expect("the node's sshd runs");
    let pids = descendants(listener);
    for p in &pids {
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    pids.len()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes zeros into `path` until the disk refuses.
fn fill_disk(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler file");
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            return;
        }
    }
    panic!("the tmpfs never filled");
}

fn run_splitbrain(args: &[&str]) -> (i32, String) {
    let out = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args(args)
        .output()
        .expect("run splitbrain");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_dropped_connection_is_survived_and_a_full_disk_stops_the_run_cleanly() {
    let Some(_g) = guard("resilience_lab") else {
        return;
    };
    let began = Instant::now();
    let disk = Tmpfs::mount("8m");
    let results = disk.path();
    // The run's stderr goes to a file off the tmpfs (a pipe nobody reads could block it).
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = KillOnDrop(
        Command::new(splitbrain())
            .env(lab::LOCK_HELD_ENV, "1")
            .args([
                "test",
                "--workload",
                "register",
                "--nemesis",
                "partition",
                "--nemesis-interval",
                "2s",
                "--time-limit",
                "40s",
                "--seed",
                "5",
                "--name",
                "resilience",
            ])
            .arg("--results-dir")
            .arg(results)
            .arg("--zoo-binary")
            .arg(zoo_binary())
            .stdout(Stdio::null())
            .stderr(stderr_file.reopen().unwrap())
            .spawn()
            .expect("start splitbrain test"),
    );
    let run = results.join("resilience").join("latest");
    let history = run.join("history.jsonl");
    let log = run.join("harness.log");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    // The nemesis is at work (its commands reach every node).
    wait_for("the first partition", Duration::from_secs(120), || {
        read(&history).contains("\"f\":\"start-partition\"")
    });
    let nemesis_ops = |text: &str| text.matches("\"process\":\"nemesis\"").count();
    let at_kill = nemesis_ops(&read(&history));
    assert!(kill_ssh_sessions("n2") >= 1, "no SSH session to n2 to kill");
    wait_for(
        "the reconnect to n2 in harness.log",
        Duration::from_secs(60),
        || {
            read(&log)
                .lines()
                .any(|l| l.contains("n2 (") && l.contains("reconnected at attempt"))
        },
    );
    // The run goes on: the nemesis keeps faulting and healing every node, n2 included.
    wait_for(
        "nemesis ops after the reconnect",
        Duration::from_secs(60),
        || nemesis_ops(&read(&history)) >= at_kill + 4,
    );
    let before_fill = read(&history).lines().count();
    fill_disk(&results.join("filler"));
    let mut status = None;
    wait_for("the run to stop", Duration::from_secs(180), || {
        status = child.0.try_wait().expect("wait for splitbrain");
        status.is_some()
    });
    let stderr = read(stderr_file.path());
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("splitbrain: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("history.jsonl")
            && errors[0].contains("No space left on device")
            && errors[0].contains("kept whole"),
        "{}",
        errors[0]
    );
    // Healed and torn down as usual.
    assert!(our_rules().is_empty(), "rules left: {:?}", our_rules());
    let ps = Command::new("pgrep")
        .args(["-f", "lab/work/n[0-9]+/zoo/bin/zoo"])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "zoo processes left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    // The history is whole to its last line, with everything before the fill.
    let text = read(&history);
    assert!(text.ends_with('\n'), "history ends inside a line");
    let ops = checkers::history::read_jsonl(text.as_bytes()).expect("kept history parses");
    assert!(ops.len() >= before_fill, "{} < {before_fill}", ops.len());
    let log_text = read(&log);
    assert!(
        log_text.contains("n2 (") && log_text.contains("connection lost; reconnecting"),
        "harness.log does not show the reconnect"
    );

    // Space freed: the kept history can be reported on and checked.
    std::fs::remove_file(results.join("filler")).unwrap();
    let run_dir = std::fs::canonicalize(&run).unwrap();
    let (code, text) = run_splitbrain(&["report", run_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "report: {text}");
    assert!(run_dir.join("results.json").is_file(), "report: {text}");
    let (code, text) = run_splitbrain(&["check", history.to_str().unwrap()]);
    assert!((0..=2).contains(&code), "check exit {code}: {text}");
    eprintln!(
        "resilience_lab: {} ops kept, {:.1}s with the lab lock held",
        ops.len(),
        began.elapsed().as_secs_f64()
    );
}

/// The lab's nodes, from its nodes file.
fn lab_nodes() -> Vec<harness::nodes::NodeSpec> {
    let file = Path::new(lab::DEFAULT_STATE_DIR).join("nodes");
    harness::nodes::read_nodes_file(&file).expect("the lab's nodes file")
}

/// A node other than n1 that no zoo claims is master now (asked over the zoo's own
/// protocol); the highest-numbered such node.
fn a_non_master() -> String {
    use harness::systems::System;
    let zoo = harness::systems::zoo::Zoo::with_binary("async-failover", zoo_binary()).unwrap();
    let nodes = lab_nodes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let roles = rt.block_on(zoo.roles(&nodes, Duration::from_secs(2)));
    let masters = harness::systems::current_masters(&roles);
    nodes
        .iter()
        .rev()
        .map(|n| n.name.clone())
        .find(|n| n != "n1" && !masters.contains(n))
        .unwrap_or_else(|| panic!("every node claims master: {roles:?}"))
}

/// Processes in the lab's namespaces other than their sshd (`node: pid comm`).
fn namespace_processes_besides_sshd() -> Vec<String> {
    let mut out = Vec::new();
    for i in 1..=lab_support::NODES {
        let o = Command::new("ip")
            .args(["netns", "pids", &format!("sb-n{i}")])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !comm.trim().is_empty() && comm.trim() != "sshd" {
                out.push(format!("n{i}: {pid} {}", comm.trim()));
            }
        }
    }
    out
}

fn marker_dirs() -> Vec<String> {
    (1..=lab_support::NODES)
        .map(|i| format!("{}/work/n{i}/faults", lab::DEFAULT_STATE_DIR))
        .filter(|d| Path::new(d).exists())
        .collect()
}

#[test]
fn a_node_rebooted_mid_run_is_reconnected_restarted_and_healed() {
    let Some(_g) = guard("resilience_lab") else {
        return;
    };
    let began = Instant::now();
    let results = tempfile::tempdir().unwrap();
    let stderr_file = results.path().join("stderr.txt");
    let mut child = KillOnDrop(
        Command::new(splitbrain())
            .env(lab::LOCK_HELD_ENV, "1")
            .args([
                "test",
                "--workload",
                "register",
                "--nemesis",
                "partition",
                "--nemesis-interval",
                "2s",
                "--time-limit",
                "10s",
                "--seed",
                "9",
                "--name",
                "reboot",
            ])
            .arg("--results-dir")
            .arg(results.path())
            .arg("--zoo-binary")
            .arg(zoo_binary())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .expect("start splitbrain test"),
    );
    let run = results.path().join("reboot").join("latest");
    let history = run.join("history.jsonl");
    let log = run.join("harness.log");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for("the first partition", Duration::from_secs(120), || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the run ended early: {}",
            read(&stderr_file)
        );
        read(&history).contains("\"f\":\"start-partition\"")
    });
    let node = a_non_master();
    let (code, text) = run_splitbrain(&["lab", "reboot", &node, "--down-for", "2s"]);
    assert_eq!(code, 0, "lab reboot: {text}");
    assert!(
        text.contains(&format!("{node} (")) && text.contains("rebooted"),
        "{text}"
    );
    let mut status = None;
    wait_for("the run to end", Duration::from_secs(240), || {
        status = child.0.try_wait().expect("wait for splitbrain");
        status.is_some()
    });
    let stderr = read(&stderr_file);
    let code = status.and_then(|s| s.code());
    assert!(
        matches!(code, Some(0..=2)),
        "the run must end with a verdict (exit {code:?}):\n{stderr}"
    );
    let log_text = read(&log);
    let reconnected = log_text
        .lines()
        .any(|l| l.contains(&format!("{node} (")) && l.contains("reconnected at attempt"));
    assert!(reconnected, "no reconnect to {node} in harness.log");
    assert!(
        log_text.lines().any(|l| l
            .contains(&format!("{node}: zoo async-failover was not running"))
            && l.contains("started it again")),
        "the final heal did not restart {node}'s zoo:\n{log_text}"
    );
    let results_json: serde_json::Value =
        serde_json::from_str(&read(&run.join("results.json"))).expect("results.json");
    assert!(
        ["valid", "invalid", "unknown"].contains(&results_json["valid"].as_str().unwrap_or("")),
        "{results_json}"
    );
    assert_eq!(
        results_json["heal_errors"],
        serde_json::json!([]),
        "the heal failed"
    );
    // The restarted zoo wrote a second start into the node's log (setup empties it).
    let zoo_log = read(&run.join("nodes").join(&node).join("zoo.log"));
    assert!(
        zoo_log.matches("listening").count() >= 2,
        "{node}'s zoo.log shows no second start:\n{zoo_log}"
    );
    let run_code = code;
    let text = read(&history);
    assert!(text.ends_with('\n'), "history ends inside a line");
    let ops = checkers::history::read_jsonl(text.as_bytes()).expect("history parses");
    let (code, out) = run_splitbrain(&["check", history.to_str().unwrap()]);
    assert!((0..=2).contains(&code), "check exit {code}: {out}");
    assert!(our_rules().is_empty(), "rules left: {:?}", our_rules());
    assert_eq!(namespace_processes_besides_sshd(), Vec::<String>::new());
    assert_eq!(marker_dirs(), Vec::<String>::new(), "markers left");

    // A reboot while a partition is in effect: the rules go, the marker stays.
    let (code, out, err) = lab_support::fault(&["partition", "isolate", &node]);
    assert_eq!(code, 0, "partition: {out}{err}");
    let (code, text) = run_splitbrain(&["lab", "reboot", &node, "--down-for", "0s"]);
    assert_eq!(code, 0, "lab reboot: {text}");
    assert!(
        !our_rules()
            .iter()
            .any(|r| r.starts_with(&format!("{node}:"))),
        "the reboot left rules on {node}"
    );
    let rows = lab_support::status();
    let row = rows.iter().find(|r| r["node"] == node.as_str()).unwrap();
    assert_eq!(
        row["stale_markers"],
        serde_json::json!(["partition"]),
        "{row}"
    );
    assert_eq!(row["cut_from"], serde_json::json!([]), "{row}");
    let other = rows.iter().find(|r| r["node"] != node.as_str()).unwrap();
    assert_eq!(other["cut_from"], serde_json::json!([node]), "{other}");
    assert_eq!(other["stale_markers"], serde_json::json!([]), "{other}");
    let (code, out, err) = lab_support::fault(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{node}: marker partition: not in effect")),
        "{out}"
    );
    let (code, out, err) = lab_support::fault(&["heal"]);
    assert_eq!(code, 0, "heal after the reboot: {out}{err}");
    assert!(
        out.contains(&format!("undone: {node}: partition ")),
        "{out}"
    );
    assert!(our_rules().is_empty(), "rules left: {:?}", our_rules());
    assert_eq!(
        marker_dirs(),
        Vec::<String>::new(),
        "markers left after heal"
    );
    let (code, out, err) = lab_support::fault(&["heal"]);
    assert_eq!(code, 0, "a second heal is a no-op: {out}{err}");
    eprintln!(
        "resilience_lab reboot: {node} rebooted, {} ops, exit {run_code:?}, {:.1}s with the lab lock held",
        ops.len(),
        began.elapsed().as_secs_f64()
    );
}
