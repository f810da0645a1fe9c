//! The local lab: N nodes on this machine, each a network namespace `sb-nX` on the bridge
//! `sb-br0` in 10.77.77.0/24 with its own sshd, plus the state directory (lab key pair,
//! `known_hosts`, nodes file, `ssh_config`). [`up`] builds or repairs it idempotently,
//! [`down`] removes every namespace, link, process and file of it, [`status`] reports it,
//! [`reboot`] models one node's hard reboot.
//!
//! Namespace and link names are global to the machine, so only one lab exists at a time
//! whatever the state directory; `up` and `down` serialize on a lock in `/run/lock`, and
//! code that needs the lab to stay as it left it (tests) holds [`exclusive_use`].

mod files;
mod net;
mod preflight;
mod reboot;
mod sshd;
mod status;
mod sys;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::nodes::NodeSpec;
use files::Layout;

pub use preflight::INSTALL_HINT;
pub use reboot::{reboot, RebootReport, MAX_DOWN};
pub use status::{LabState, LabStatus, NodeStatus};
pub use sys::LabLock;

/// The bridge in the root namespace.
pub const BRIDGE: &str = "sb-br0";
/// The controller's (this machine's) address on the bridge.
pub const CONTROLLER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 77, 1);
/// The lab's subnet, 10.77.77.0/[`PREFIX`]; node `nX` is 10.77.77.(10+X).
pub const SUBNET_BASE: Ipv4Addr = Ipv4Addr::new(10, 77, 77, 0);
pub const PREFIX: u8 = 24;
/// Where the lab keeps its files unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/splitbrain/lab";
pub const DEFAULT_NODES: usize = 5;
pub const MAX_NODES: usize = 9;

const OP_LOCK: &str = "/run/lock/splitbrain-lab.lock";
const USE_LOCK: &str = "/run/lock/splitbrain-lab-use.lock";
const OP_LOCK_WAIT: Duration = Duration::from_secs(120);
const SSHD_WAIT: Duration = Duration::from_secs(10);

/// What lab to build and where to keep its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabConfig {
    /// Number of nodes, 1..=[`MAX_NODES`].
    pub nodes: usize,
    pub state_dir: PathBuf,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nodes: DEFAULT_NODES,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// What a test needs to use a running lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabInfo {
    /// n1..nN, user root, workdir `<state>/work/nX`.
    pub nodes: Vec<NodeSpec>,
    pub nodes_file: PathBuf,
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
    /// OpenSSH client config: `ssh -F <ssh_config> n2`.
    pub ssh_config: PathBuf,
    pub controller_addr: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab config: {0}")]
    Config(String),
    #[error("the lab needs root (running as uid {euid}): run it as root or with sudo")]
    NotRoot { euid: u32 },
    #[error("the lab needs {} (not found): install with `{INSTALL_HINT}`", tools.join(", "))]
    MissingTools {
        tools: Vec<String>,
        packages: Vec<String>,
    },
    #[error("iptables does not work inside network namespace {ns} ({message}); the nemesis needs it: use a kernel with netfilter (nf_tables or ip_tables) for network namespaces")]
    NamespaceIptables { ns: String, message: String },
    #[error("10.77.77.0/24 is already in use by {by}; the lab needs that subnet to itself")]
    SubnetInUse { by: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("could not run `{command}`: {message}")]
    Spawn { command: String, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("could not parse {what}: {message}")]
    Parse { what: String, message: String },
    #[error("refusing to use {0} as the lab state directory: it is not empty and has no .splitbrain-lab marker")]
    NotLabDir(PathBuf),
    #[error(
        "sshd of {node} ({addr}:22) did not accept TCP within {waited:?} (its process {process})"
    )]
    SshdNotListening {
        node: String,
        addr: Ipv4Addr,
        waited: Duration,
        process: String,
    },
    #[error("{from} cannot reach {to} ({addr}:22) across the bridge though this machine can: check net.bridge.bridge-nf-call-iptables and the FORWARD policy of the root namespace")]
    NodeToNode {
        from: String,
        to: String,
        addr: Ipv4Addr,
    },
    #[error("the lab is busy: waited {waited:?} for the lock {lock}")]
    Busy { lock: PathBuf, waited: Duration },
    #[error("lab down left something behind: {0}")]
    Leftover(String),
}

/// One lab node's identity: name `nX`, namespace `sb-nX`, address 10.77.77.(10+X).
#[derive(Debug, Clone)]
pub(crate) struct LabNode {
    pub name: String,
    pub ns: String,
    pub addr: Ipv4Addr,
}

fn node(i: usize) -> LabNode {
    LabNode {
        name: format!("n{i}"),
        ns: net::ns_name(i),
        addr: net::node_addr(i),
    }
}

/// The validated, absolute state directory.
fn layout(cfg: &LabConfig) -> Result<Layout, LabError> {
    let root = if cfg.state_dir.is_absolute() {
        cfg.state_dir.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| LabError::Config(format!("resolving {}: {e}", cfg.state_dir.display())))?
            .join(&cfg.state_dir)
    };
    files::check_state_path(&root)?;
    Ok(Layout { root })
}

fn need_root() -> Result<(), LabError> {
    match sys::euid() {
        0 => Ok(()),
        euid => Err(LabError::NotRoot { euid }),
    }
}

/// Set (to `1`) in the environment of a `splitbrain` started by a process that already
/// holds [`exclusive_use`], so that the child does not wait for its own parent's lock.
pub const LOCK_HELD_ENV: &str = "SPLITBRAIN_LAB_LOCK_HELD";

/// Waits (at most `timeout`) for exclusive use of the lab. Hold the guard for as long as
/// the lab must stay as you left it: tests that bring a lab up hold it so that they never
/// run at once, across threads, test binaries and processes.
pub fn exclusive_use(timeout: Duration) -> Result<LabLock, LabError> {
    sys::lock(Path::new(USE_LOCK), timeout)
}

/// Builds the lab, or repairs whatever of it is missing or wrong; on a healthy lab it
/// changes nothing. Returns what a test needs to use it.
pub fn up(cfg: &LabConfig) -> Result<LabInfo, LabError> {
    if !(1..=MAX_NODES).contains(&cfg.nodes) {
        return Err(LabError::Config(format!(
            "node count must be 1..={MAX_NODES}, got {}",
            cfg.nodes
        )));
    }
    let layout = layout(cfg)?;
    preflight::check_host()?;
    files::check_ownership(&layout)?;
    let _op = sys::lock(Path::new(OP_LOCK), OP_LOCK_WAIT)?;
    let root_links = net::links(None)?;
    net::ensure_subnet_free(&root_links)?;

    files::make_dir(&layout.root, 0o700)?;
    files::write_if_changed(&layout.marker(), "splitbrain lab state directory\n", 0o644)?;
    let (lab_key, _) = files::ensure_key(&layout.private_key(), "splitbrain-lab")?;
    files::write_if_changed(&layout.authorized_keys(), &format!("{lab_key}\n"), 0o600)?;

    let nodes: Vec<_> = (1..=cfg.nodes).map(node).collect();
    net::ensure_bridge(&root_links)?;
    let namespaces = net::namespaces()?;
    remove_extra(&layout, &nodes, &namespaces, &root_links)?;
    for i in 1..=cfg.nodes {
        net::ensure_node(i, &namespaces, &root_links)?;
    }
    preflight::check_namespace_iptables(&nodes[0].ns)?;

    sshd::ensure_run_dir()?;
    let use_pam = preflight::root_locked();
    let mut host_keys = Vec::new();
    let mut specs = Vec::new();
    for LabNode { name, ns, addr } in &nodes {
        files::make_dir(&layout.node_dir(name), 0o700)?;
        let workdir = layout.workdir(name);
        files::make_dir(&workdir, 0o755)?;
        let (host_key, new_key) =
            files::ensure_key(&layout.host_key(name), &format!("splitbrain-lab-{name}"))?;
        host_keys.push((*addr, host_key));
        let text = files::sshd_config(&layout, name, *addr, use_pam);
        let changed = files::write_if_changed(&layout.sshd_config(name), &text, 0o600)?;
        // Restart on a new host key too, so the listener never serves a stale one.
        sshd::ensure(&layout, name, ns, changed || new_key)?;
        specs.push(NodeSpec {
            name: name.clone(),
            host: addr.to_string(),
            port: 22,
            user: Some("root".into()),
            workdir: workdir.display().to_string(),
        });
    }
    files::write_if_changed(
        &layout.known_hosts(),
        &files::known_hosts(&host_keys)?,
        0o644,
    )?;
    files::write_if_changed(&layout.nodes_file(), &files::nodes_file(&specs), 0o644)?;
    files::write_if_changed(
        &layout.ssh_config(),
        &files::ssh_config(&layout, &specs),
        0o644,
    )?;

    sshd::wait_listening(&layout, &nodes, SSHD_WAIT)?;
    check_node_to_node(&nodes)?;
    Ok(LabInfo {
        nodes: specs,
        nodes_file: layout.nodes_file(),
        private_key: layout.private_key(),
        known_hosts: layout.known_hosts(),
        ssh_config: layout.ssh_config(),
        controller_addr: CONTROLLER_ADDR,
    })
}

/// Removes namespaces and links with the lab's prefix that the wanted lab does not have
/// (a lab brought up with more nodes before, or leftovers of something half-built).
fn remove_extra(
    layout: &Layout,
    nodes: &[LabNode],
    namespaces: &[String],
    root_links: &[net::Link],
) -> Result<(), LabError> {
    let extra: Vec<&String> = namespaces
        .iter()
        .filter(|ns| ns.starts_with("sb-") && !nodes.iter().any(|n| &n.ns == *ns))
        .collect();
    for ns in extra {
        sys::terminate(ns, sshd::GRACE, || sys::pids_in_netns(ns))?;
        net::delete_namespace(ns)?;
    }
    for i in nodes.len() + 1..=MAX_NODES {
        remove_node_files(layout, &format!("n{i}"))?;
    }
    for link in root_links.iter().map(|l| l.ifname.as_str()) {
        let wanted = link == BRIDGE || (1..=nodes.len()).any(|i| net::host_veth(i) == link);
        if link.starts_with("sb-") && !wanted {
            net::delete_link(None, link)?;
        }
    }
    Ok(())
}

fn remove_node_files(layout: &Layout, name: &str) -> Result<(), LabError> {
    for dir in [layout.node_dir(name), layout.workdir(name)] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| sys::io_err(&dir, e))?;
        }
    }
    Ok(())
}

/// Proves that nodes reach each other across the bridge, not only the controller: n1
/// reaches every other node, and n2 reaches n1.
fn check_node_to_node(nodes: &[LabNode]) -> Result<(), LabError> {
    let Some(first) = nodes.first() else {
        return Ok(());
    };
    let mut pairs: Vec<(&LabNode, &LabNode)> = nodes.iter().skip(1).map(|to| (first, to)).collect();
    if let Some(second) = nodes.get(1) {
        pairs.push((second, first));
    }
    for (from, to) in pairs {
        let target = SocketAddr::from((to.addr, 22));
        if !sys::tcp_open_from(&from.ns, target, Duration::from_secs(2))? {
            return Err(LabError::NodeToNode {
                from: from.name.clone(),
                to: to.name.clone(),
                addr: to.addr,
            });
        }
    }
    Ok(())
}

/// Removes the lab: stops every process in every `sb-` namespace (SIGTERM, then SIGKILL),
/// deletes the namespaces, every `sb-` link and the state directory. Driven by what
/// exists (`ip netns`, `ip link`, pid files), so it works on a half-built lab and without
/// a state directory; on no lab it succeeds and does nothing.
pub fn down(cfg: &LabConfig) -> Result<(), LabError> {
    let layout = layout(cfg)?;
    need_root()?;
    let owned = files::check_ownership(&layout)?;
    let _op = sys::lock(Path::new(OP_LOCK), OP_LOCK_WAIT)?;

    if owned {
        // sshds whose namespace was deleted under them are found through their pid files.
        let orphans: Vec<u32> = (1..=MAX_NODES)
            .filter_map(|i| sshd::orphan(&layout, &format!("n{i}")))
            .collect();
        sys::terminate("the lab's sshds", sshd::GRACE, || orphans.clone())?;
    }
    let ours: Vec<String> = net::namespaces()?
        .into_iter()
        .filter(|n| n.starts_with("sb-"))
        .collect();
    sys::terminate("the lab's namespaces", sshd::GRACE, || {
        ours.iter().flat_map(|ns| sys::pids_in_netns(ns)).collect()
    })?;
    for ns in &ours {
        net::delete_namespace(ns)?;
    }
    let mut links = net::lab_links()?;
    links.sort_by_key(|l| l == BRIDGE);
    for link in &links {
        net::delete_link(None, link)?;
    }

    let left_ns: Vec<String> = net::namespaces()?
        .into_iter()
        .filter(|n| n.starts_with("sb-"))
        .collect();
    let left_links = net::lab_links()?;
    if !left_ns.is_empty() || !left_links.is_empty() {
        return Err(LabError::Leftover(format!(
            "namespaces {left_ns:?}, links {left_links:?}"
        )));
    }
    if owned && layout.root.exists() {
        std::fs::remove_dir_all(&layout.root).map_err(|e| sys::io_err(&layout.root, e))?;
    }
    Ok(())
}

/// Reports what exists of the lab. The node list is the nodes file's when there is one,
/// else `cfg.nodes`, plus any `sb-nX` namespace beyond it.
pub fn status(cfg: &LabConfig) -> Result<LabStatus, LabError> {
    let layout = layout(cfg)?;
    need_root()?;
    let state_dir_present = layout.marker().exists();
    let mut count = crate::nodes::read_nodes_file(&layout.nodes_file())
        .map(|n| n.len())
        .unwrap_or(cfg.nodes)
        .min(MAX_NODES);
    let namespaces = net::namespaces()?;
    for ns in &namespaces {
        if let Some(i) = ns
            .strip_prefix("sb-n")
            .and_then(|i| i.parse::<usize>().ok())
        {
            if (1..=MAX_NODES).contains(&i) {
                count = count.max(i);
            }
        }
    }
    let root_links = net::links(None)?;
    let bridge = root_links
        .iter()
        .any(|l| l.ifname == BRIDGE && l.is_up() && l.has_addr(CONTROLLER_ADDR));
    let mut nodes = Vec::new();
    for i in 1..=count {
        let LabNode { name, ns, addr } = node(i);
        let namespace = namespaces.contains(&ns);
        let address = namespace
            && net::links(Some(&ns))?
                .iter()
                .any(|l| l.ifname == "eth0" && l.is_up() && l.has_addr(addr));
        nodes.push(NodeStatus {
            sshd_pid: if namespace {
                sshd::running(&layout, &name, &ns)
            } else {
                None
            },
            name,
            addr,
            namespace,
            address,
            reachable: false,
        });
    }
    let targets: Vec<Option<Ipv4Addr>> =
        nodes.iter().map(|n| n.address.then_some(n.addr)).collect();
    for (n, open) in nodes.iter_mut().zip(status::probe_all(&targets)) {
        n.reachable = open;
    }
    Ok(LabStatus {
        state: LabStatus::overall(state_dir_present, bridge, &nodes),
        state_dir: layout.root,
        state_dir_present,
        bridge,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_one_clear_line() {
        let cfg = |nodes| LabConfig {
            nodes,
            state_dir: PathBuf::from("/tmp/x"),
        };
        for n in [0, 10] {
            let err = up(&cfg(n)).unwrap_err().to_string();
            assert!(err.contains("node count must be 1..=9"), "{err}");
        }
        let bad = LabConfig {
            nodes: 3,
            state_dir: PathBuf::from("/tmp/with space"),
        };
        let err = up(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("lab config: state directory /tmp/with space"),
            "{err}"
        );
        assert!(down(&bad).is_err() && status(&bad).is_err());
        assert_eq!(LabConfig::default().nodes, 5);
        assert_eq!(
            LabConfig::default().state_dir,
            PathBuf::from(DEFAULT_STATE_DIR)
        );
    }
}
