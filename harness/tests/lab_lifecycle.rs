//! Integration tests of the lab (`harness::lab`): they build real namespaces, veths, a
//! bridge and sshds, so they need root. Not root and not CI: each test prints why and
//! skips. `CI=true` and not root: they fail.
//!
//! Namespace and link names are global to the machine, so tests that bring a lab up must
//! never overlap: each holds `lab::exclusive_use` (a file lock in /run/lock) for its whole
//! run, which serializes them across test threads, test binaries and processes. Running
//! these tests replaces whatever lab is up on the machine. Every test keeps its state in
//! its own temporary directory and a guard calls `lab::down` on drop, so a failing test
//! still cleans up.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::lab::{self, LabConfig, LabError, LabInfo, LabLock, LabState};

/// Brings nothing up itself; tears down on drop, then releases the lock.
struct Guard {
    cfg: LabConfig,
    _dir: tempfile::TempDir,
    _lock: LabLock,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = lab::down(&self.cfg) {
            eprintln!("cleanup: lab down failed: {e}");
        }
    }
}

/// The guard for a test with `nodes` nodes, or `None` (skip) when not root outside CI.
fn setup(nodes: usize, test: &str) -> Option<Guard> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !root {
        assert!(!ci, "{test}: CI=true but not root; the lab tests need root");
        // Written to the stderr handle, not with eprintln!, so libtest does not capture it.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: the lab tests need root (and network namespaces)"
        );
        return None;
    }
    let lock = lab::exclusive_use(Duration::from_secs(900)).expect("lab lock");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LabConfig {
        nodes,
        state_dir: dir.path().join("lab"),
    };
    // Start from nothing, whatever an earlier run left.
    lab::down(&cfg).expect("initial lab down");
    Some(Guard {
        cfg,
        _dir: dir,
        _lock: lock,
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh -F <ssh_config> NODE CMD`, optionally from inside a namespace.
fn ssh(info: &LabInfo, from_ns: Option<&str>, node: &str, cmd: &str) -> Output {
    let cfg = info.ssh_config.to_str().expect("utf-8 path");
    let mut args = vec!["-F", cfg, "-o", "ConnectTimeout=3", node, cmd];
    let mut c = match from_ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            let mut pre = vec!["netns", "exec", ns, "ssh"];
            pre.append(&mut args);
            c.args(pre);
            c
        }
        None => {
            let mut c = Command::new("ssh");
            c.args(args);
            c
        }
    };
    run(&mut c)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(out)
}

fn lab_namespaces() -> Vec<String> {
    stdout(&run(Command::new("ip").args(["netns", "list"])))
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("sb-"))
        .map(str::to_string)
        .collect()
}

fn lab_links() -> Vec<String> {
    stdout(&run(Command::new("ip").args(["-o", "link", "show"])))
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("sb-"))
        .collect()
}

/// Every pid in any of the lab's namespaces.
fn lab_pids() -> Vec<u32> {
    lab_namespaces()
        .iter()
        .flat_map(|ns| {
            stdout(&run(Command::new("ip").args(["netns", "pids", ns])))
                .split_whitespace()
                .map(|p| p.parse::<u32>().expect("pid"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn assert_nothing_left(state_dir: &Path, pids: &[u32]) {
    assert_eq!(lab_namespaces(), Vec::<String>::new(), "namespaces left");
    assert_eq!(lab_links(), Vec::<String>::new(), "links left");
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "processes left: {survivors:?}");
    assert!(
        !state_dir.exists(),
        "state dir {} left",
        state_dir.display()
    );
}

fn sshd_pids(cfg: &LabConfig) -> BTreeMap<String, u32> {
    lab::status(cfg)
        .expect("status")
        .nodes
        .into_iter()
        .map(|n| (n.name.clone(), n.sshd_pid.expect("sshd pid")))
        .collect()
}

fn mtimes(paths: &[PathBuf]) -> Vec<(PathBuf, i64, i64)> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.clone(), m.mtime(), m.mtime_nsec())
        })
        .collect()
}

fn ns_inode(ns: &str) -> u64 {
    std::fs::metadata(format!("/run/netns/{ns}"))
        .expect("netns")
        .ino()
}

#[test]
fn up_is_reachable_idempotent_and_down_removes_everything() {
    let Some(g) = setup(5, "lifecycle") else {
        return;
    };
    let info = lab::up(&g.cfg).expect("lab up");
    let names: Vec<&str> = info.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4", "n5"]);
    assert_eq!(info.controller_addr.to_string(), "10.77.77.1");
    let parsed = harness::nodes::read_nodes_file(&info.nodes_file).expect("nodes file");
    assert_eq!(parsed, info.nodes);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");

    for (i, node) in info.nodes.iter().enumerate() {
        assert_eq!(node.host, format!("10.77.77.{}", 11 + i));
        assert_eq!(node.user.as_deref(), Some("root"));
        assert!(Path::new(&node.workdir).is_dir(), "{}", node.workdir);
        let out = ok(&ssh(&info, None, &node.name, "hostname"), &node.name);
        assert_eq!(out.trim(), hostname.trim());
        let addr = ok(
            &ssh(&info, None, &node.name, "ip -4 -o addr show dev eth0"),
            &node.name,
        );
        assert!(addr.contains(&format!("inet {}/24", node.host)), "{addr}");
    }
    // Node to node across the bridge: n1 logs into n2.
    let out = ok(
        &ssh(&info, Some("sb-n1"), "n2", "ip -4 -o addr show dev eth0"),
        "n1 -> n2",
    );
    assert!(out.contains("inet 10.77.77.12/24"), "{out}");
    // iptables inside n1 acts on n1 only: n1 loses n2, this machine still reaches n2.
    let drop_rule = [
        "netns",
        "exec",
        "sb-n1",
        "iptables",
        "-A",
        "OUTPUT",
        "-d",
        "10.77.77.12",
        "-j",
        "DROP",
    ];
    ok(
        &run(Command::new("ip").args(drop_rule)),
        "iptables in sb-n1",
    );
    assert!(!ssh(&info, Some("sb-n1"), "n2", "true").status.success());
    ok(
        &ssh(&info, None, "n2", "true"),
        "controller -> n2 while n1 drops",
    );
    let mut heal = drop_rule;
    heal[4] = "-D";
    ok(&run(Command::new("ip").args(heal)), "iptables -D in sb-n1");
    ok(
        &ssh(&info, Some("sb-n1"), "n2", "true"),
        "n1 -> n2 after heal",
    );

    // A second `up` on a healthy lab changes nothing.
    let pids_before = sshd_pids(&g.cfg);
    let state = g.cfg.state_dir.clone();
    let files: Vec<PathBuf> = [
        "id_ed25519",
        "known_hosts",
        "nodes",
        "ssh_config",
        "authorized_keys",
        "n1/sshd_config",
        "n3/ssh_host_ed25519_key",
    ]
    .iter()
    .map(|f| state.join(f))
    .collect();
    let files_before = mtimes(&files);
    let inode_before = ns_inode("sb-n3");
    let again = lab::up(&g.cfg).expect("second lab up");
    assert_eq!(again, info);
    assert_eq!(sshd_pids(&g.cfg), pids_before);
    assert_eq!(mtimes(&files), files_before);
    assert_eq!(ns_inode("sb-n3"), inode_before);

    let status = lab::status(&g.cfg).expect("status");
    assert_eq!(status.state, LabState::Up);
    assert!(status.bridge && status.state_dir_present);
    assert!(status.nodes.iter().all(|n| n.healthy()), "{status}");
    assert!(status.to_string().starts_with("lab up"), "{status}");

    // What tests start on nodes goes too: a daemon started over ssh, and a process that
    // ignores SIGTERM.
    ok(
        &ssh(&info, None, "n4", "nohup sleep 600 >/dev/null 2>&1 &"),
        "daemon on n4",
    );
    let mut stubborn = Command::new("ip")
        .args([
            "netns",
            "exec",
            "sb-n3",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("stubborn process");
    std::thread::sleep(Duration::from_millis(200));
    let pids = lab_pids();
    assert!(
        pids.len() >= 7,
        "expected 5 sshds and 2 test processes, got {pids:?}"
    );

    lab::down(&g.cfg).expect("lab down");
    let _ = stubborn.wait();
    assert_nothing_left(&g.cfg.state_dir, &pids);
    assert_eq!(lab::status(&g.cfg).expect("status").state, LabState::Down);
    lab::down(&g.cfg).expect("down on no lab");
}

#[test]
fn up_repairs_a_half_built_lab_and_shrinks() {
    let Some(g) = setup(4, "repair") else { return };
    let info = lab::up(&g.cfg).expect("lab up");
    let pids = sshd_pids(&g.cfg);
    // Break it in several ways at once.
    let kill = |pid: u32| run(Command::new("kill").args(["-KILL", &pid.to_string()]));
    kill(pids["n2"]);
    kill(pids["n3"]);
    ok(
        &run(Command::new("ip").args(["netns", "del", "sb-n3"])),
        "netns del",
    );
    ok(
        &run(Command::new("ip").args(["link", "del", "sb-n1-h"])),
        "link del",
    );
    ok(
        &run(Command::new("ip").args(["addr", "flush", "dev", "sb-br0"])),
        "addr flush",
    );
    std::fs::remove_file(&info.known_hosts).expect("rm known_hosts");
    // A new host key for n1 must reach both known_hosts and n1's running sshd.
    let n1_key = g.cfg.state_dir.join("n1/ssh_host_ed25519_key");
    let old_n1_key = std::fs::read_to_string(&n1_key).expect("n1 host key");
    std::fs::remove_file(&n1_key).expect("rm n1 host key");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        lab::status(&g.cfg).expect("status").state,
        LabState::Degraded
    );

    let repaired = lab::up(&g.cfg).expect("repairing up");
    assert_eq!(repaired, info);
    assert_ne!(
        std::fs::read_to_string(&n1_key).expect("new key"),
        old_n1_key
    );
    for n in ["n1", "n2", "n3", "n4"] {
        ok(&ssh(&repaired, None, n, "true"), n);
    }
    ok(&ssh(&repaired, Some("sb-n3"), "n1", "true"), "n3 -> n1");
    let after = sshd_pids(&g.cfg);
    assert_eq!(after["n4"], pids["n4"], "a healthy sshd is kept");
    assert_ne!(
        after["n1"], pids["n1"],
        "n1's sshd restarted on its new host key"
    );
    assert_eq!(lab::status(&g.cfg).expect("status").state, LabState::Up);

    // Fewer nodes: n3 and n4 go, with their sshds, namespaces, veths and files.
    let small = LabConfig {
        nodes: 2,
        ..g.cfg.clone()
    };
    let info2 = lab::up(&small).expect("shrinking up");
    assert_eq!(info2.nodes.len(), 2);
    assert!(!alive(after["n3"]) && !alive(after["n4"]));
    assert_eq!(lab_namespaces().len(), 2);
    let mut links = lab_links();
    links.sort();
    assert_eq!(links, ["sb-br0", "sb-n1-h", "sb-n2-h"]);
    assert!(!g.cfg.state_dir.join("n3").exists() && !g.cfg.state_dir.join("work/n4").exists());
    let status = lab::status(&small).expect("status");
    assert_eq!((status.state, status.nodes.len()), (LabState::Up, 2));
}

#[test]
fn down_works_without_state_dir() {
    let Some(g) = setup(2, "no-state") else {
        return;
    };
    lab::up(&g.cfg).expect("lab up");
    // The sshds, plus any short-lived children forked for up's TCP probes.
    let pids = lab_pids();
    let sshds = sshd_pids(&g.cfg);
    assert!(
        sshds.values().all(|p| pids.contains(p)),
        "{sshds:?} not in {pids:?}"
    );
    std::fs::remove_dir_all(&g.cfg.state_dir).expect("rm state");
    lab::down(&g.cfg).expect("lab down");
    assert_nothing_left(&g.cfg.state_dir, &pids);
}

/// Deletes a test veth on drop.
struct TestLink(&'static str);
impl Drop for TestLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}

#[test]
fn up_refuses_a_subnet_in_use_and_a_foreign_state_dir() {
    let Some(g) = setup(2, "refusals") else {
        return;
    };
    ok(
        &run(Command::new("ip").args([
            "link", "add", "lt-sbc0", "type", "veth", "peer", "name", "lt-sbc1",
        ])),
        "veth",
    );
    let link = TestLink("lt-sbc0");
    ok(
        &run(Command::new("ip").args(["addr", "add", "10.77.77.200/24", "dev", "lt-sbc0"])),
        "addr",
    );
    let err = lab::up(&g.cfg).expect_err("subnet in use");
    assert!(matches!(err, LabError::SubnetInUse { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "10.77.77.0/24 is already in use by address 10.77.77.200/24 on interface lt-sbc0; the lab needs that subnet to itself"
    );
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert_eq!(lab_links(), Vec::<String>::new());
    drop(link);

    std::fs::create_dir_all(&g.cfg.state_dir).expect("mkdir");
    let precious = g.cfg.state_dir.join("precious");
    std::fs::write(&precious, "keep me").expect("write");
    for err in [
        lab::up(&g.cfg).expect_err("foreign dir"),
        lab::down(&g.cfg).expect_err("foreign dir"),
    ] {
        assert!(
            err.to_string().contains("has no .splitbrain-lab marker"),
            "{err}"
        );
    }
    assert!(precious.exists());
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    std::fs::remove_file(&precious).expect("rm");
}
