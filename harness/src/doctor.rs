//! `splitbrain doctor`: preflight of the controller and every node before a test —
//! credentials and results directory on the controller; per node TCP reachability,
//! host key, login, sudo, iptables, tc and netem, clock-setting rights, time sync,
//! free disk and clock offset. One table (or `--json`), each failure with the exact
//! command that fixes it; exit 0 when nothing failed (warnings allowed), 3 otherwise.
//! It changes nothing on the nodes (the netem probe adds and removes a throw-away
//! qdisc, as the nemesis does; the clock is only read).

mod node;
pub mod probe;

use crate::cli::EXIT_HARNESS;
use crate::cluster_args::{ClusterArgs, LabUse};
use crate::control::{ControlError, Credentials, SshOptions};
use crate::lab;
use crate::nodes::NodeSpec;
use anyhow::Context;
use clap::Args;
use probe::Place;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Which nodes and how to log in.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The lab's state directory (when no nodes are given).
    #[arg(long, default_value = lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Where test runs will be stored (checked for space and write access).
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One thing doctor checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Credentials,
    ResultsDir,
    Reachable,
    HostKey,
    Auth,
    Sudo,
    Iptables,
    Tc,
    Netem,
    ClockRights,
    TimeSync,
    Disk,
    ClockOffset,
}

/// The node checks in table order, after reachable/host key/auth.
const NODE_CHECKS: [Check; 11] = [
    Check::Reachable,
    Check::HostKey,
    Check::Auth,
    Check::Sudo,
    Check::Iptables,
    Check::Tc,
    Check::Netem,
    Check::ClockRights,
    Check::TimeSync,
    Check::Disk,
    Check::ClockOffset,
];

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Credentials => "credentials",
            Check::ResultsDir => "results dir",
            Check::Reachable => "reachable",
            Check::HostKey => "host key",
            Check::Auth => "auth",
            Check::Sudo => "sudo",
            Check::Iptables => "iptables",
            Check::Tc => "tc",
            Check::Netem => "netem",
            Check::ClockRights => "clock rights",
            Check::TimeSync => "time sync",
            Check::Disk => "free disk",
            Check::ClockOffset => "clock offset",
        })
    }
}

/// A check's outcome. Warnings do not fail the doctor; skipped checks follow a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
        })
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// A node's name, or `controller`.
    pub node: String,
    pub check: Check,
    pub status: Status,
    pub detail: String,
    /// The command (or step) that fixes a failure or warning.
    pub fix: Option<String>,
}

fn row(node: &str, check: Check, status: Status, detail: String, fix: Option<String>) -> Row {
    Row {
        node: node.to_string(),
        check,
        status,
        detail,
        fix,
    }
}

/// Runs `splitbrain doctor`: prints the table; 0 when nothing failed, else 3 with one
/// line on stderr naming the failed checks.
pub fn run(args: DoctorArgs) -> anyhow::Result<u8> {
    let r = args.cluster.resolve(LabUse::Existing(&args.state_dir))?;
    let (nodes, ssh) = (r.nodes, r.ssh);
    let place = if r.lab { Place::Lab } else { Place::Remote };
    let rt = crate::cli::runtime()?;
    let rows = rt.block_on(diagnose(&nodes, place, &ssh, &args.results_dir));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).context("rendering JSON")?
        );
    } else {
        println!("{}", render(&rows));
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| format!("{} {}", r.node, r.check))
        .collect();
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "splitbrain: doctor: {} check(s) failed: {} (fixes in the table)",
        failed.len(),
        failed.join(", ")
    );
    Ok(EXIT_HARNESS)
}

/// The table, then a count line.
pub fn render(rows: &[Row]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["node", "check", "result", "detail", "fix"]);
    for r in rows {
        b.push_record([
            r.node.clone(),
            r.check.to_string(),
            r.status.to_string(),
            r.detail.clone(),
            r.fix.clone().unwrap_or_default(),
        ]);
    }
    let mut table = b.build();
    table.with(tabled::settings::Style::sharp());
    let count = |s| rows.iter().filter(|r| r.status == s).count();
    format!(
        "{table}\n{} ok, {} warnings, {} failed, {} skipped",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skipped)
    )
}

/// Every row: the controller's first, then each node's in nodes-file order.
pub async fn diagnose(
    nodes: &[NodeSpec],
    place: Place,
    ssh: &SshOptions,
    results_dir: &Path,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let creds = match Credentials::load(ssh) {
        Ok(c) => {
            rows.push(row(
                "controller",
                Check::Credentials,
                Status::Ok,
                describe_credentials(ssh),
                None,
            ));
            Some(Arc::new(c))
        }
        Err(e) => {
            let fix = match &e {
                ControlError::KeyFile { .. } => {
                    "pass a readable OpenSSH private key: `--ssh-private-key ~/.ssh/id_ed25519` (create one with `ssh-keygen -t ed25519`)"
                }
                _ => "`ssh-keygen -t ed25519` and install ~/.ssh/id_ed25519.pub on the nodes, or pass --ssh-private-key",
            };
            rows.push(row(
                "controller",
                Check::Credentials,
                Status::Fail,
                e.to_string(),
                Some(fix.into()),
            ));
            None
        }
    };
    rows.push(results_dir_row(results_dir));
    let tasks: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, ssh, creds) = (n.clone(), ssh.clone(), creds.clone());
            tokio::spawn(async move { node::diagnose_node(&n, place, &ssh, creds).await })
        })
        .collect();
    for (task, node) in tasks.into_iter().zip(nodes) {
        match task.await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(row(
                &node.name,
                Check::Reachable,
                Status::Fail,
                format!("doctor task failed: {e}"),
                None,
            )),
        }
    }
    rows
}

fn describe_credentials(ssh: &SshOptions) -> String {
    let mut what = Vec::new();
    match &ssh.private_key {
        Some(k) => what.push(format!("key {}", k.display())),
        None => what.push("default keys in ~/.ssh".to_string()),
    }
    if ssh.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
        what.push("ssh-agent".into());
    }
    if ssh.password.is_some() {
        what.push("password (SPLITBRAIN_SSH_PASSWORD)".into());
    }
    format!("will try {}", what.join(", "))
}

fn results_dir_row(dir: &Path) -> Row {
    let mut d = dir.to_path_buf();
    while !d.is_dir() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p.to_path_buf(),
            _ => {
                d = PathBuf::from(".");
                break;
            }
        }
    }
    let bad = |detail: String, fix: String| {
        row(
            "controller",
            Check::ResultsDir,
            Status::Fail,
            detail,
            Some(fix),
        )
    };
    let Ok(c) = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()) else {
        return bad(
            format!("{}: path has a NUL byte", dir.display()),
            "pass another --results-dir".into(),
        );
    };
    // SAFETY: `c` is a valid NUL-terminated path; `st` is plain old data we own.
    let (writable, avail_kb) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let free = (libc::statvfs(c.as_ptr(), &mut st) == 0)
            .then(|| st.f_bavail as u64 * st.f_frsize as u64 / 1024);
        (libc::access(c.as_ptr(), libc::W_OK) == 0, free)
    };
    let Some(kb) = avail_kb else {
        return bad(
            format!("cannot stat {}", d.display()),
            "pass another --results-dir".into(),
        );
    };
    let free = format!("{:.1} GiB free in {}", kb as f64 / 1048576.0, d.display());
    if !writable {
        return bad(
            format!("{} is not writable ({free})", d.display()),
            format!(
                "`chown $(id -u) {}`, or pass another --results-dir",
                d.display()
            ),
        );
    }
    let fix = format!(
        "free space under {} or pass --results-dir on a larger filesystem",
        d.display()
    );
    if kb < probe::DISK_FAIL_KB {
        bad(format!("only {free}"), fix)
    } else if kb < probe::DISK_WARN_KB {
        row(
            "controller",
            Check::ResultsDir,
            Status::Warn,
            format!("only {free}"),
            Some(fix),
        )
    } else {
        row("controller", Check::ResultsDir, Status::Ok, free, None)
    }
}

#[cfg(test)]
mod tests;
