//! `splitbrain lab status`: what exists of the lab right now, per node and overall, and
//! its rendering as a small table.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The lab as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabState {
    /// Bridge, state directory and every node fully working.
    Up,
    /// Nothing of the lab exists.
    Down,
    /// Some of it exists; `lab up` repairs it, `lab down` removes it.
    Degraded,
}

impl fmt::Display for LabState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabState::Up => "up",
            LabState::Down => "down",
            LabState::Degraded => "degraded",
        })
    }
}

/// One node's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub addr: Ipv4Addr,
    /// Its network namespace `sb-nX` exists.
    pub namespace: bool,
    /// `eth0` in the namespace carries the node's address.
    pub address: bool,
    /// The pid of the lab's sshd for this node, when that process is alive in the namespace.
    pub sshd_pid: Option<u32>,
    /// A TCP connection to the node's port 22 succeeds from the root namespace.
    pub reachable: bool,
}

impl NodeStatus {
    pub fn healthy(&self) -> bool {
        self.namespace && self.address && self.sshd_pid.is_some() && self.reachable
    }
}

/// The whole lab's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabStatus {
    pub state: LabState,
    pub state_dir: PathBuf,
    /// The state directory exists and carries the lab's marker.
    pub state_dir_present: bool,
    /// The bridge exists, is up and has the controller's address.
    pub bridge: bool,
    pub nodes: Vec<NodeStatus>,
}

impl LabStatus {
    pub(crate) fn overall(state_dir_present: bool, bridge: bool, nodes: &[NodeStatus]) -> LabState {
        if state_dir_present && bridge && !nodes.is_empty() && nodes.iter().all(NodeStatus::healthy)
        {
            LabState::Up
        } else if !state_dir_present
            && !bridge
            && !nodes.iter().any(|n| n.namespace || n.sshd_pid.is_some())
        {
            LabState::Down
        } else {
            LabState::Degraded
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {} (bridge {}: {}, state {}: {})",
            self.state,
            super::BRIDGE,
            if self.bridge { "ok" } else { "missing" },
            self.state_dir.display(),
            if self.state_dir_present {
                "present"
            } else {
                "missing"
            },
        )?;
        writeln!(
            f,
            "{:<5} {:<12} {:<9} {:<7} {:<8} tcp/22",
            "node", "address", "namespace", "addr", "sshd"
        )?;
        for n in &self.nodes {
            let pid = n
                .sshd_pid
                .map_or_else(|| "-".to_string(), |p| p.to_string());
            writeln!(
                f,
                "{:<5} {:<12} {:<9} {:<7} {:<8} {}",
                n.name,
                n.addr.to_string(),
                yes(n.namespace),
                yes(n.address),
                pid,
                if n.reachable { "open" } else { "closed" },
            )?;
        }
        Ok(())
    }
}

/// Probes every address's port 22 from the root namespace in parallel.
pub(crate) fn probe_all(addrs: &[Option<Ipv4Addr>]) -> Vec<bool> {
    std::thread::scope(|s| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|a| {
                s.spawn(move || {
                    a.is_some_and(|a| {
                        super::sys::tcp_open(SocketAddr::from((a, 22)), Duration::from_millis(500))
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8, ok: bool) -> NodeStatus {
        NodeStatus {
            name: format!("n{i}"),
            addr: Ipv4Addr::new(10, 77, 77, 10 + i),
            namespace: ok,
            address: ok,
            sshd_pid: ok.then_some(100 + u32::from(i)),
            reachable: ok,
        }
    }

    #[test]
    fn overall_state_and_table() {
        let all = [node(1, true), node(2, true)];
        assert_eq!(LabStatus::overall(true, true, &all), LabState::Up);
        assert_eq!(LabStatus::overall(true, false, &all), LabState::Degraded);
        let half = [node(1, true), node(2, false)];
        assert_eq!(LabStatus::overall(true, true, &half), LabState::Degraded);
        let none = [node(1, false), node(2, false)];
        assert_eq!(LabStatus::overall(false, false, &none), LabState::Down);
        assert_eq!(LabStatus::overall(true, false, &none), LabState::Degraded);
        let s = LabStatus {
            state: LabState::Degraded,
            state_dir: PathBuf::from("/s"),
            state_dir_present: true,
            bridge: true,
            nodes: half.to_vec(),
        };
        let text = s.to_string();
        assert!(
            text.starts_with("lab degraded (bridge sb-br0: ok, state /s: present)"),
            "{text}"
        );
        assert!(
            text.contains("n1    10.77.77.11  yes       yes     101      open"),
            "{text}"
        );
        assert!(
            text.contains("n2    10.77.77.12  no        no      -        closed"),
            "{text}"
        );
    }
}
