//! `splitbrain lab reboot NODE`: a node's hard reboot as far as a namespace can model
//! one. Everything that lives in memory goes; everything on disk stays:
//!
//! - the node drops off the network (its `eth0` goes down, so connections to it time
//!   out instead of being refused);
//! - every process in the node's network namespace is SIGKILLed at once — sshd, its
//!   sessions, the system under test, a clock strober — as a power cut or a watchdog
//!   reset would (a graceful reboot's SIGTERM would let the system flush first, the
//!   weaker test);
//! - the namespace's own iptables and ip6tables tables are reset to empty ACCEPT
//!   tables and its qdiscs removed, since neither survives a reboot (the root
//!   namespace's are never touched);
//! - after `down_for` the link comes up and sshd starts, as boot would start it; the
//!   system's processes stay dead until the harness starts them again;
//! - files (data directories, pid files, fault markers under the workdir) are kept.
//!
//! Not modelled: the kernel's own state outside the namespace (conntrack, page cache,
//! the clock), and a node whose disk loses unsynced writes.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sys::{self, ip, pids_in_netns, run, which};
use super::{files, layout, need_root, net, sshd, LabConfig, LabError, LabNode};

/// The longest down time accepted (lab runs are short).
pub const MAX_DOWN: Duration = Duration::from_secs(600);
/// How long the killed processes get to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What a reboot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootReport {
    pub node: String,
    pub addr: Ipv4Addr,
    /// The processes killed (sshd among them).
    pub killed: Vec<u32>,
    /// Rules (`-A` lines) removed from the namespace's iptables and ip6tables tables.
    pub rules_flushed: usize,
    /// Qdiscs removed (`dev kind`).
    pub qdiscs_removed: Vec<String>,
    /// How long the node was off the network.
    pub down: Duration,
    /// The new sshd.
    pub sshd_pid: Option<u32>,
}

/// Reboots lab node `name` (`nX`), keeping it off the network for `down_for`.
pub fn reboot(cfg: &LabConfig, name: &str, down_for: Duration) -> Result<RebootReport, LabError> {
    if down_for > MAX_DOWN {
        return Err(LabError::Config(format!(
            "--down-for {down_for:?} is longer than the {MAX_DOWN:?} a lab reboot allows"
        )));
    }
    let layout = layout(cfg)?;
    need_root()?;
    let namespaces = net::namespaces()?;
    let index = name
        .strip_prefix('n')
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| (1..=super::MAX_NODES).contains(i) && format!("n{i}") == name);
    let node = match index.map(super::node) {
        Some(n) if namespaces.contains(&n.ns) => n,
        _ => {
            let mut ours: Vec<&str> = namespaces
                .iter()
                .filter_map(|n| n.strip_prefix("sb-"))
                .collect();
            ours.sort_unstable();
            return Err(LabError::Config(format!(
                "no lab node {name:?} to reboot (the lab has: {})",
                if ours.is_empty() {
                    "no nodes; run `splitbrain lab up`".to_string()
                } else {
                    ours.join(", ")
                }
            )));
        }
    };
    if !files::check_ownership(&layout)? {
        return Err(LabError::Config(format!(
            "no lab state at {} (its sshd config is needed to boot {name}): run `splitbrain lab up`",
            layout.root.display()
        )));
    }
    // `up` (which would start sshd early) and `down` wait until the node is back.
    let _op = sys::lock(Path::new(super::OP_LOCK), super::OP_LOCK_WAIT)?;
    let LabNode { ns, addr, .. } = &node;
    let t = Instant::now();
    ip(&["-n", ns, "link", "set", "eth0", "down"])?;
    let killed = kill_all(ns)?;
    let rules_flushed = flush_tables(ns)?;
    let qdiscs_removed = remove_qdiscs(ns)?;
    if let Some(rest) = down_for.checked_sub(t.elapsed()) {
        std::thread::sleep(rest);
    }
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    let down = t.elapsed();
    sshd::ensure_run_dir()?;
    sshd::ensure(&layout, name, ns, false)?;
    sshd::wait_listening(&layout, std::slice::from_ref(&node), super::SSHD_WAIT)?;
    Ok(RebootReport {
        node: name.to_string(),
        addr: *addr,
        killed,
        rules_flushed,
        qdiscs_removed,
        down,
        sshd_pid: sshd::running(&layout, name, ns),
    })
}

/// SIGKILLs every process in namespace `ns` (and any that appear meanwhile) until none
/// is left; returns the pids killed.
fn kill_all(ns: &str) -> Result<Vec<u32>, LabError> {
    let t = Instant::now();
    let mut killed: Vec<u32> = Vec::new();
    loop {
        let live: Vec<u32> = pids_in_netns(ns);
        if live.is_empty() {
            killed.sort_unstable();
            return Ok(killed);
        }
        if t.elapsed() > KILL_WAIT {
            return Err(LabError::Leftover(format!(
                "processes {live:?} in {ns} survived SIGKILL for {KILL_WAIT:?}"
            )));
        }
        for pid in live {
            sys::signal(pid, libc::SIGKILL);
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resets every table the namespace's iptables and ip6tables hold to an empty table
/// whose built-in chains accept: the state a node boots with. Returns the rules removed.
fn flush_tables(ns: &str) -> Result<usize, LabError> {
    let mut removed = 0;
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        if which(save).is_none() || which(restore).is_none() {
            continue;
        }
        let current = run("ip", &["netns", "exec", ns, save])?;
        let (empty, rules) = boot_tables(&current);
        removed += rules;
        if !empty.is_empty() {
            run_with_input("ip", &["netns", "exec", ns, restore], &empty)?;
        }
    }
    Ok(removed)
}

/// From `*-save` output: the restore input that empties each table present (built-in
/// chains with policy ACCEPT, user chains gone) and the number of rules it removes.
fn boot_tables(save: &str) -> (String, usize) {
    let mut out = String::new();
    let mut rules = 0;
    for line in save.lines().map(str::trim) {
        if line.starts_with('*') {
            out.push_str(line);
            out.push('\n');
        } else if let Some(chain) = line.strip_prefix(':') {
            let mut w = chain.split_whitespace();
            if let (Some(c), Some(policy)) = (w.next(), w.next()) {
                if policy != "-" {
                    out.push_str(&format!(":{c} ACCEPT [0:0]\n"));
                }
            }
        } else if line.starts_with("-A ") {
            rules += 1;
        } else if line == "COMMIT" {
            out.push_str("COMMIT\n");
        }
    }
    (out, rules)
}

/// Removes every qdisc configured in namespace `ns`: root qdiscs with a handle of their
/// own (the kernel's defaults have handle `0:`) and ingress/clsact qdiscs.
fn remove_qdiscs(ns: &str) -> Result<Vec<String>, LabError> {
    let text = run("ip", &["netns", "exec", ns, "tc", "qdisc", "show"])?;
    let mut removed = Vec::new();
    for q in configured_qdiscs(&text) {
        let (dev, kind, parent) = (&q.0, &q.1, q.2);
        run(
            "ip",
            &[
                "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, parent,
            ],
        )?;
        removed.push(format!("{dev} {kind}"));
    }
    Ok(removed)
}

/// `(dev, kind, what to delete)` of each qdisc in `tc qdisc show` output that a boot
/// would not have: `root` for a root qdisc with its own handle, `ingress` or `clsact`.
fn configured_qdiscs(text: &str) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(handle)) = (w.get(1), w.get(2)) else {
            continue;
        };
        let Some(dev) = w
            .iter()
            .position(|x| *x == "dev")
            .and_then(|i| w.get(i + 1))
        else {
            continue;
        };
        let what = match *kind {
            "ingress" => "ingress",
            "clsact" => "clsact",
            _ if w.contains(&"root") && *handle != "0:" => "root",
            _ => continue,
        };
        if !out
            .iter()
            .any(|(d, _, p): &(String, String, &str)| d == dev && *p == what)
        {
            out.push((dev.to_string(), kind.to_string(), what));
        }
    }
    out
}

/// Runs a command with `input` on its stdin; like [`run`] otherwise.
fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), LabError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_err = |e: std::io::Error| LabError::Spawn {
        command: command.clone(),
        message: e.to_string(),
    };
    let mut child = Command::new(which(program).unwrap_or_else(|| program.into()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            message: format!(
                "{} ({})",
                sys::one_line(&String::from_utf8_lossy(&out.stderr)),
                out.status
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_tables_empty_every_table_present() {
        let save = "# Generated by iptables-save\n*filter\n:INPUT DROP [3:120]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:SPLITBRAIN-IN - [0:0]\n-A INPUT -j SPLITBRAIN-IN\n-A SPLITBRAIN-IN -s 10.77.77.12/32 -j DROP\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j NOTRACK\nCOMMIT\n";
        let (text, rules) = boot_tables(save);
        assert_eq!(rules, 3);
        assert_eq!(
            text,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
        assert_eq!(boot_tables(""), (String::new(), 0));
    }

    #[test]
    fn only_configured_qdiscs_are_removed() {
        let show = "qdisc noqueue 0: dev lo root refcnt 2\n\
                    qdisc prio 5eb1: dev eth0 root refcnt 2 bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n\
                    qdisc netem 8001: dev eth0 parent 5eb1:4 limit 1000 loss 10%\n\
                    qdisc ingress ffff: dev eth0 parent ffff:fff1 ----------------\n\
                    qdisc noqueue 0: dev eth1 root refcnt 2\n";
        assert_eq!(
            configured_qdiscs(show),
            vec![
                ("eth0".to_string(), "prio".to_string(), "root"),
                ("eth0".to_string(), "ingress".to_string(), "ingress"),
            ]
        );
        assert!(configured_qdiscs("").is_empty());
    }

    #[test]
    fn bad_requests_are_one_line() {
        let cfg = LabConfig::default();
        let e = reboot(&cfg, "n1", Duration::from_secs(601))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("longer than the 600s a lab reboot allows"),
            "{e}"
        );
    }
}
