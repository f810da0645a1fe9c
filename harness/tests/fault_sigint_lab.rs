//! The exit paths that are not a normal end, each with a fault in effect:
//!
//! - SIGINT while a scheduled fault is active (`--nemesis partition,packet`, faults
//!   20 s long): the run stops, heals every node and tears down, exits 2 (unknown).
//! - A panic in the run body (the nemesis panics right after its first partition,
//!   through the test-only `SPLITBRAIN_TEST_PANIC_AFTER_FAULT=1`): the panic goes
//!   through the body to the catch around it, which heals and tears down; exit 3.
//!
//! - kill -9 of the controller while a scheduled pause is in effect: the paused node
//!   carries the runner's pause marker (system, pid file, the controller's pid), and
//!   `splitbrain fault heal` from a new process names that pause and resumes the
//!   process; no marker and no rule remain.
//!
//! - The same for Redis + Sentinel (a system the `fault` command does not know): the
//!   pause marker names redis-server's pid file, and `fault heal` from a new process
//!   resumes redis-server and every descendant of it; no process of the system on the
//!   node is left stopped, and no marker is left.
//!
//! After the first and the last, no rule of ours (partition or packet loss chain), no
//! zoo process and no fault marker is left on any node. Needs root (skips otherwise; fails under
//! `CI=true`); holds the lab lock and takes the lab down at the end, also on failure.

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
        // A file, not a pipe: nobody reads a pipe while the run goes on, and a
        // full one would block the run.
        .stderr(std::fs::File::create(results.path().join("stderr.txt")).unwrap())
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
        exited_early(&mut guard, results.path());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !our_rules().is_empty(),
        "the fault should be in place: {started}"
    );
    let child = guard.0.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut child = child;
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(results.path().join("stderr.txt")).unwrap_or_default();
    assert_eq!(
        status.code(),
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
    assert_nothing_left("after SIGINT");

    kill_9_during_a_pause_then_fault_heal_resumes_it();
    panic_in_the_run_body_still_heals_and_tears_down();
}

/// `/proc/PID/stat`'s state letter of the zoo on lab node `node`, with its pid.
fn zoo_state(node: &str) -> Option<(u32, String)> {
    let pid_file = format!("{}/work/{node}/zoo/zoo.pid", lab::DEFAULT_STATE_DIR);
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((pid, stat.rsplit_once(") ")?.1.get(..1)?.to_string()))
}

fn kill_9_during_a_pause_then_fault_heal_resumes_it() {
    let results = tempfile::tempdir().unwrap();
    let child = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args([
            "test",
            "--nemesis",
            "pause",
            "--nemesis-interval",
            "12s",
            "--time-limit",
            "60s",
            "--seed",
            "4",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .arg("--zoo-binary")
        .arg(splitbrain().with_file_name("zoo"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(results.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let controller = child.id();
    let mut guard = Child(Some(child));
    let markers = pause_markers(&mut guard, results.path());
    let targets: Vec<String> = markers.iter().map(|(n, _)| n.clone()).collect();
    for (n, m) in &markers {
        assert_eq!(m["fault"]["kind"], "pause", "{m}");
        assert_eq!(m["fault"]["system"], "zoo async-failover", "{m}");
        assert_eq!(
            m["fault"]["pid_file"],
            format!("{}/work/{n}/zoo/zoo.pid", lab::DEFAULT_STATE_DIR),
            "{m}"
        );
        assert_eq!(m["controller_pid"], controller, "{m}");
        let (_, state) = zoo_state(n).expect("a zoo process");
        assert_eq!(state, "T", "{n} paused");
    }
    let mut child = guard.0.take().unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let (code, out, err) = lab_support::fault(&["heal"]);
    assert_eq!(code, 0, "fault heal: {out}{err}");
    for n in &targets {
        assert!(
            out.contains(&format!(
                "undone: {n}: pause of zoo async-failover, applied at "
            )),
            "{out}"
        );
        let (_, state) = zoo_state(n).expect("the zoo still runs");
        assert_ne!(state, "T", "{n} resumed");
    }
    assert_eq!(
        our_rules(),
        Vec::<String>::new(),
        "rules left after kill -9 + heal"
    );
    for i in 1..=lab_support::NODES {
        let dir = format!("{}/work/n{i}/faults", lab::DEFAULT_STATE_DIR);
        assert!(
            !std::path::Path::new(&dir).exists(),
            "{dir} left after heal"
        );
    }
    // The killed controller could not tear the zoo down: stop it for the next run.
    for i in 1..=lab_support::NODES {
        if let Some((pid, _)) = zoo_state(&format!("n{i}")) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Fails with the run's stderr when it ended before its fault started.
/// Waits (bounded) for the run's first `start-pause` in its history and returns each
/// target with the pause marker the controller wrote on it. Fails the test if the run
/// exits first or no pause starts within 240 s.
fn pause_markers(guard: &mut Child, results: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let history = results.join("latest/history.jsonl");
    let t = Instant::now();
    let started: serde_json::Value = loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"start-pause\""))
        {
            break serde_json::from_str(l).unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(240), "no pause started");
        exited_early(guard, results);
        std::thread::sleep(Duration::from_millis(100));
    };
    let targets: Vec<String> = started["value"]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("targets in {started}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!targets.is_empty(), "{started}");
    targets
        .into_iter()
        .map(|n| {
            let file = format!("{}/work/{n}/faults/pause.json", lab::DEFAULT_STATE_DIR);
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}")),
            )
            .unwrap();
            (n, m)
        })
        .collect()
}

fn exited_early(guard: &mut Child, results: &std::path::Path) {
    let c = guard.0.as_mut().unwrap();
    if let Ok(Some(status)) = c.try_wait() {
        let err = std::fs::read_to_string(results.join("stderr.txt")).unwrap_or_default();
        panic!("the run ended ({status}) before its fault started:\n{err}");
    }
}

/// No rule, no zoo process, no fault marker on any node.
fn assert_nothing_left(what: &str) {
    assert_eq!(our_rules(), Vec::<String>::new(), "rules left {what}");
    let ps = Command::new("pgrep")
        .args(["-f", "lab/work/n[0-9]+/zoo/bin/zoo"])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "zoo processes left {what}: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    for i in 1..=lab_support::NODES {
        let dir = format!("{}/work/n{i}/faults", lab::DEFAULT_STATE_DIR);
        assert!(!std::path::Path::new(&dir).exists(), "{dir} left {what}");
    }
}

fn panic_in_the_run_body_still_heals_and_tears_down() {
    let results = tempfile::tempdir().unwrap();
    let child = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .env("SPLITBRAIN_TEST_PANIC_AFTER_FAULT", "1")
        .args([
            "test",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "2s",
            "--time-limit",
            "5s",
            "--seed",
            "3",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .arg("--zoo-binary")
        .arg(splitbrain().with_file_name("zoo"))
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads a pipe while the run goes on, and a
        // full one would block the run.
        .stderr(std::fs::File::create(results.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Child(Some(child));
    let history = results.path().join("latest/history.jsonl");
    let t = Instant::now();
    // The partition is in place once the nemesis records it (the panic follows it).
    loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains("\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"start-partition\"") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "no partition started"
        );
        exited_early(&mut guard, results.path());
        std::thread::sleep(Duration::from_millis(100));
    }
    let child = guard.0.take().unwrap();
    let mut child = child;
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(results.path().join("stderr.txt")).unwrap_or_default();
    assert!(
        stderr.contains("test-only panic with a fault in effect"),
        "the nemesis panicked: {stderr}"
    );
    assert!(stderr.contains("failed unexpectedly"), "{stderr}");
    assert_eq!(
        status.code(),
        Some(3),
        "a panic is a harness failure\n{stderr}"
    );
    assert!(
        !stderr.contains("warning: heal failed"),
        "heal after the panic: {stderr}"
    );
    assert_nothing_left("after a panic in the run body");
}

/// The state letters (`/proc/PID/stat`) of every process in lab node `node`'s network
/// namespace but its sshd: `(pid, comm, state)`.
fn namespace_states(node: &str) -> Vec<(u32, String, String)> {
    let out = Command::new("ip")
        .args(["netns", "pids", &format!("sb-{node}")])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, tail) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_string();
            let state = tail.get(..1)?.to_string();
            (comm != "sshd").then_some((pid, comm, state))
        })
        .collect()
}

#[test]
fn kill_9_during_a_redis_pause_then_fault_heal_resumes_every_process() {
    let Some(_g) = lab_support::guard("fault_sigint_lab redis") else {
        return;
    };
    let began = Instant::now();
    let results = tempfile::tempdir().unwrap();
    let child = Command::new(splitbrain())
        .env(lab::LOCK_HELD_ENV, "1")
        .args([
            "test",
            "--system",
            "redis-sentinel",
            "--workload",
            "set",
            "--nemesis",
            "pause",
            "--nemesis-interval",
            "8s",
            "--time-limit",
            "60s",
            "--seed",
            "4",
        ])
        .arg("--results-dir")
        .arg(results.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(results.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let controller = child.id();
    let mut guard = Child(Some(child));
    let markers = pause_markers(&mut guard, results.path());
    let targets: Vec<String> = markers.iter().map(|(n, _)| n.clone()).collect();
    for (n, m) in &markers {
        assert_eq!(m["fault"]["system"], "redis-sentinel sentinel", "{m}");
        let pid_file = format!("{}/work/{n}/redis/redis.pid", lab::DEFAULT_STATE_DIR);
        assert_eq!(m["fault"]["pid_file"], pid_file.as_str(), "{m}");
        assert_eq!(m["controller_pid"], controller, "{m}");
        // redis-server and its descendants are stopped; Sentinel is not paused (it
        // is the failover tooling, not the data process).
        let server: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // A stop takes effect when its target next runs: wait (bounded) for it.
        let t = Instant::now();
        let states = loop {
            let states = namespace_states(n);
            if states.iter().any(|(p, _, s)| *p == server && s == "T") {
                break states;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{n}: redis-server {server} not stopped: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stopped: Vec<&(u32, String, String)> =
            states.iter().filter(|(_, _, s)| s == "T").collect();
        // A save or sync fork may carry another name (redis-rdb-bgsave); Sentinel is
        // the one process of the system left running.
        assert!(
            stopped
                .iter()
                .all(|(_, c, _)| !c.starts_with("redis-sentinel")),
            "{n}: Sentinel must not be paused: {states:?}"
        );
    }
    let mut child = guard.0.take().unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let (code, out, err) = lab_support::fault(&["heal"]);
    assert_eq!(code, 0, "fault heal: {out}{err}");
    for n in &targets {
        assert!(
            out.contains(&format!(
                "undone: {n}: pause of redis-sentinel sentinel, applied at "
            )),
            "{out}"
        );
        let states = namespace_states(n);
        assert!(
            states.iter().any(|(_, c, _)| c.starts_with("redis-server"))
                && states
                    .iter()
                    .any(|(_, c, _)| c.starts_with("redis-sentinel")),
            "{n}: redis-server and redis-sentinel still run: {states:?}"
        );
        assert!(
            states.iter().all(|(_, _, s)| s != "T"),
            "{n}: a process is still stopped after the heal: {states:?}"
        );
    }
    for i in 1..=lab_support::NODES {
        let dir = format!("{}/work/n{i}/faults", lab::DEFAULT_STATE_DIR);
        assert!(
            !std::path::Path::new(&dir).exists(),
            "{dir} left after heal"
        );
    }
    assert_eq!(our_rules(), Vec::<String>::new(), "rules left");
    eprintln!(
        "fault_sigint_lab redis: paused {targets:?}, healed; {:.1}s with the lab lock held",
        began.elapsed().as_secs_f64()
    );
    // The killed controller could not tear Redis down: the guard's `lab down` stops
    // every process in the namespaces.
}
