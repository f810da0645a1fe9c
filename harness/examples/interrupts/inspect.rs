//! What an interrupted run left on the lab, read from the host with `ip netns exec`
//! and `/proc` — independent of the harness's own read-back — per node: rules of
//! ours, qdiscs of ours, a clock offset, stopped processes and fault markers; plus
//! the faults in effect at a moment (from the history) and whether the history is
//! whole to its last line.

use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// The lab's per-node directories.
const WORK: &str = "/var/lib/splitbrain/lab/work";

/// One node as found after a run.
#[derive(Debug, Default, Serialize)]
pub struct NodeInspection {
    pub node: String,
    /// `iptables-save` lines naming a SPLITBRAIN chain.
    pub rules: Vec<String>,
    /// Our qdiscs (handles 5b..:, or netem) and the netem probe link.
    pub qdiscs: Vec<String>,
    /// A non-zero libfaketime offset, or a live strobe.
    pub clock: Vec<String>,
    /// `pid state cmdline` of processes in the node's namespace that are stopped.
    pub paused: Vec<String>,
    /// Files under the node's fault marker folder.
    pub markers: Vec<String>,
    /// What could not be read.
    pub errors: Vec<String>,
}

/// Nodes with each kind of leftover, over one run.
#[derive(Debug, Default, Serialize)]
pub struct Leftovers {
    pub rules: usize,
    pub qdiscs: usize,
    pub clock: usize,
    pub paused: usize,
    pub markers: usize,
    pub unreadable: usize,
}

impl Leftovers {
    pub fn of(nodes: &[NodeInspection]) -> Leftovers {
        let count = |f: fn(&NodeInspection) -> bool| nodes.iter().filter(|n| f(n)).count();
        Leftovers {
            rules: count(|n| !n.rules.is_empty()),
            qdiscs: count(|n| !n.qdiscs.is_empty()),
            clock: count(|n| !n.clock.is_empty()),
            paused: count(|n| !n.paused.is_empty()),
            markers: count(|n| !n.markers.is_empty()),
            unreadable: count(|n| !n.errors.is_empty()),
        }
    }

    /// One phrase per kind found.
    pub fn found(&self) -> Vec<String> {
        [
            (self.rules, "nodes with our rules"),
            (self.qdiscs, "nodes with our qdiscs"),
            (self.clock, "nodes with a clock offset"),
            (self.paused, "nodes with paused processes"),
            (self.markers, "nodes with fault markers"),
            (self.unreadable, "nodes that could not be read"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
    }
}

fn netns(node: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("sb-{node}")])
        .args(args)
        .output()
        .map_err(|e| format!("{node}: {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{node}: {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pids in node `node`'s network namespace.
fn pids(node: &str) -> Result<Vec<u32>, String> {
    let out = Command::new("ip")
        .args(["netns", "pids", &format!("sb-{node}")])
        .output()
        .map_err(|e| format!("{node}: ip netns pids: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// `(state letter, cmdline)` of a process, `None` once it is gone.
fn proc_state(pid: u32) -> Option<(String, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.split(' ').next()?.to_string();
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
    Some((state, cmd.trim().to_string()))
}

fn alive(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    proc_state(pid).filter(|(s, _)| s != "Z").map(|_| pid)
}

/// Inspects node `n{i}`.
pub fn node(i: usize) -> NodeInspection {
    let name = format!("n{i}");
    let work = Path::new(WORK).join(&name);
    let mut n = NodeInspection {
        node: name.clone(),
        ..NodeInspection::default()
    };
    match netns(&name, &["iptables-save"]) {
        Ok(t) => {
            n.rules = t
                .lines()
                .filter(|l| l.contains("SPLITBRAIN"))
                .map(String::from)
                .collect()
        }
        Err(e) => n.errors.push(e),
    }
    match netns(&name, &["tc", "qdisc", "show"]) {
        Ok(t) => {
            n.qdiscs = t
                .lines()
                .filter(|l| l.contains(" 5b") || l.contains("netem"))
                .map(String::from)
                .collect()
        }
        Err(e) => n.errors.push(e),
    }
    if netns(&name, &["ip", "link", "show", "sbprobe0"]).is_ok() {
        n.qdiscs.push("probe link sbprobe0".into());
    }
    if let Ok(t) = std::fs::read_to_string(work.join("faketime.rc")) {
        let off: f64 = t.trim().parse().unwrap_or(f64::NAN);
        if off != 0.0 {
            n.clock.push(format!("faketime.rc {:?}", t.trim()));
        }
    }
    if let Some(p) = alive(&work.join("clock-strobe.pid")) {
        n.clock.push(format!("strobe pid {p} alive"));
    }
    match pids(&name) {
        Ok(ps) => {
            for p in ps {
                if let Some((s, cmd)) = proc_state(p) {
                    if s == "T" || s == "t" {
                        n.paused.push(format!("{p} {s} {cmd}"));
                    }
                }
            }
        }
        Err(e) => n.errors.push(e),
    }
    if let Ok(d) = std::fs::read_dir(work.join("faults")) {
        n.markers = d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        n.markers.sort();
    }
    n
}

/// Whether every lab namespace exists.
pub fn namespaces_present(count: usize) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (1..=count).all(|i| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(&format!("sb-n{i}")))
    })
}

pub fn all_nodes(count: usize) -> Vec<NodeInspection> {
    (1..=count).map(node).collect()
}

/// SIGKILLs every zoo process in the lab's namespaces (what a killed controller
/// left running); returns how many there were.
pub fn stop_zoo(count: usize) -> usize {
    let mut n = 0;
    for i in 1..=count {
        for p in pids(&format!("n{i}")).unwrap_or_default() {
            if proc_state(p).is_some_and(|(s, cmd)| s != "Z" && cmd.contains("/zoo/bin/zoo")) {
                unsafe {
                    libc::kill(p as i32, libc::SIGCONT);
                    libc::kill(p as i32, libc::SIGKILL);
                }
                n += 1;
            }
        }
    }
    n
}

/// Faults started and not yet healed in `history`: a `start-X` invoke opens one,
/// the `stop-X` info (its heal done) closes it.
pub fn faults_in_effect(history: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    for line in history.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["process"] != "nemesis" {
            continue;
        }
        let f = v["f"].as_str().unwrap_or("");
        match (v["type"].as_str(), f.split_once('-')) {
            (Some("invoke"), Some(("start", k))) => open.push(k.to_string()),
            (Some("info"), Some(("stop", k))) => {
                if let Some(i) = open.iter().position(|o| o == k) {
                    open.remove(i);
                }
            }
            _ => {}
        }
    }
    open
}

/// Lines in the history when it ends with a newline and every line is JSON.
pub fn history_whole(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.is_empty() {
        return Ok(0);
    }
    if !text.ends_with('\n') {
        return Err(format!("{} does not end with a newline", path.display()));
    }
    for (i, l) in text.lines().enumerate() {
        serde_json::from_str::<serde_json::Value>(l)
            .map_err(|e| format!("line {} is not JSON: {e}", i + 1))?;
    }
    Ok(text.lines().count())
}
