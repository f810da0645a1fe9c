//! Each node's own sshd: finding the one the lab started (pid file, process name, and
//! namespace must all agree), starting it inside the namespace, replacing a stale one,
//! and waiting until every node accepts TCP on port 22.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::files::{make_dir, Layout};
use super::sys::{alive, cmdline, comm, in_netns, pids_in_netns, run, tcp_open, terminate};
use super::{LabError, LabNode};

/// How long a node's processes get between SIGTERM and SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// The pid of the sshd the lab started for node `name` in namespace `ns`, if it runs.
pub(crate) fn running(layout: &Layout, name: &str, ns: &str) -> Option<u32> {
    let text = std::fs::read_to_string(layout.pid_file(name)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    (alive(pid) && comm(pid).as_deref() == Some("sshd") && in_netns(pid, ns)).then_some(pid)
}

/// The pid from node `name`'s pid file if it is still an sshd started with this lab's
/// config, wherever its namespace went (used by `down` when a namespace vanished).
pub(crate) fn orphan(layout: &Layout, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(layout.pid_file(name)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let config = layout.sshd_config(name);
    let ours = cmdline(pid).is_some_and(|c| c.contains(&config.display().to_string()));
    (alive(pid) && comm(pid).as_deref() == Some("sshd") && ours).then_some(pid)
}

/// Makes sure node `name`'s sshd runs with its current config: keeps a running one unless
/// the config changed, stops stale sshds in the namespace, and starts a new one.
pub(crate) fn ensure(
    layout: &Layout,
    name: &str,
    ns: &str,
    config_changed: bool,
) -> Result<(), LabError> {
    if let Some(pid) = running(layout, name, ns) {
        if !config_changed {
            return Ok(());
        }
        terminate(&format!("{ns} (sshd)"), GRACE, || vec![pid])?;
    }
    // An sshd left from another state directory would hold port 22 on this address.
    terminate(&format!("{ns} (stale sshd)"), GRACE, || {
        pids_in_netns(ns)
            .into_iter()
            .filter(|p| comm(*p).as_deref() == Some("sshd"))
            .collect()
    })?;
    let config = layout.sshd_config(name);
    let config = config.to_str().unwrap_or_default();
    run("ip", &["netns", "exec", ns, "/usr/sbin/sshd", "-f", config])?;
    Ok(())
}

/// sshd's privilege-separation directory.
pub(crate) fn ensure_run_dir() -> Result<(), LabError> {
    make_dir(Path::new("/run/sshd"), 0o755)
}

/// Waits until every `(name, addr)` accepts TCP on port 22 from the root namespace.
pub(crate) fn wait_listening(
    layout: &Layout,
    nodes: &[LabNode],
    limit: Duration,
) -> Result<(), LabError> {
    let start = Instant::now();
    let mut pending: Vec<&LabNode> = nodes.iter().collect();
    loop {
        pending.retain(|n| !tcp_open(SocketAddr::from((n.addr, 22)), Duration::from_millis(200)));
        let Some(LabNode { name, ns, addr }) = pending.first() else {
            return Ok(());
        };
        if start.elapsed() >= limit {
            let process = match running(layout, name, ns) {
                Some(pid) => format!("{pid} is running"),
                None => "is not running".to_string(),
            };
            return Err(LabError::SshdNotListening {
                node: name.clone(),
                addr: *addr,
                waited: limit,
                process,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
