//! Command-line flags of the `zoo` binary and their validation into a [`Config`]
//! shared by every mode.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::modes::ModeName;
use crate::store::FsyncPolicy;

/// `zoo`: a reference server for splitbrain, one architecture per `--mode`.
#[derive(Debug, Clone, Parser)]
#[command(name = "zoo", version, about, args_override_self = true)]
pub struct Args {
    /// A TOML file of flags (keys are the flags' names: `mode = "raft"`,
    /// `heartbeat_ms = 200`, `daemon = true`); flags on the command line override it.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Which architecture to run.
    #[arg(long, value_enum)]
    pub mode: ModeName,
    /// This node's name; must appear in --peers.
    #[arg(long)]
    pub node: String,
    /// Address to listen on for clients and peers, e.g. 10.77.77.11:7070.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Every node of the cluster including this one: n1=ADDR:PORT,n2=ADDR:PORT,...
    #[arg(long)]
    pub peers: String,
    /// Directory for this node's data (created when absent).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Log file (appended to); stderr when absent.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// File to write the server's pid to once it listens; removed on clean shutdown.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Detach: start the server in a new session and exit 0 once it listens.
    #[arg(long)]
    pub daemon: bool,
    /// The node that is master when the cluster starts fresh (default: first peer).
    #[arg(long)]
    pub initial_master: Option<String>,
    /// Interval between heartbeats to each peer.
    #[arg(long, default_value_t = 200)]
    pub heartbeat_ms: u64,
    /// How long a replica goes without hearing from its master before failing over.
    #[arg(long, default_value_t = 1500)]
    pub failover_timeout_ms: u64,
    /// Timeout of each peer connect and each peer request.
    #[arg(long, default_value_t = 500)]
    pub peer_timeout_ms: u64,
    /// When appends to the data log are fsynced.
    #[arg(long, value_enum, default_value_t = FsyncPolicy::Always)]
    pub fsync: FsyncPolicy,
    /// How long --daemon waits for the server to listen before giving up.
    #[arg(long, default_value_t = 10_000)]
    pub daemon_ready_timeout_ms: u64,
    /// What a non-master does with a client operation: forward it to the master it
    /// believes in, or answer with a `redirect` error naming the master.
    #[arg(long, value_enum, default_value_t = ClientRouting::Forward)]
    pub client_routing: ClientRouting,
    /// semi-sync: how long the master waits for a replica's acknowledgement before
    /// it degrades to asynchronous replication (MySQL's rpl_semi_sync_master_timeout).
    #[arg(long, default_value_t = 2000)]
    pub semi_sync_timeout_ms: u64,
    /// Test-only: add this many milliseconds (may be negative) to the wall clock
    /// `lww-ring` stamps writes with, modelling clock skew without libfaketime.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,
    /// metadata-master: the standby coordinator, which takes over when it loses
    /// the primary (`--initial-master`); default: the next node in --peers.
    #[arg(long)]
    pub standby: Option<String>,
    /// metadata-master: how many data groups the keys are spread over (1 to 64).
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Accept the test-only `debug_block_peers` request (simulated partitions).
    /// Never use against a system under test: it is for the zoo's own tests.
    #[arg(long)]
    pub debug_fault_injection: bool,
}

/// `--client-routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientRouting {
    /// A non-master relays the operation to the master and returns its answer.
    Forward,
    /// A non-master answers `redirect` with the master's name and address.
    Redirect,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: ModeName,
    pub node: String,
    pub listen: SocketAddr,
    /// All nodes, by name, including this one.
    pub nodes: BTreeMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    pub log: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub initial_master: String,
    pub heartbeat: Duration,
    pub failover_timeout: Duration,
    pub peer_timeout: Duration,
    pub fsync: FsyncPolicy,
    pub client_routing: ClientRouting,
    pub semi_sync_timeout: Duration,
    pub clock_offset_ms: i64,
    /// metadata-master: the standby coordinator (`None` on a one-node cluster).
    pub standby: Option<String>,
    /// metadata-master: the number of data groups.
    pub groups: usize,
    pub debug_fault_injection: bool,
}

impl Config {
    /// The other nodes.
    pub fn peers(&self) -> impl Iterator<Item = (&String, &SocketAddr)> {
        self.nodes.iter().filter(move |(n, _)| **n != self.node)
    }
}

/// Parses `n1=ADDR:PORT,n2=ADDR:PORT`, keeping the order of appearance.
pub fn parse_peers(text: &str) -> Result<Vec<(String, SocketAddr)>, String> {
    let mut out: Vec<(String, SocketAddr)> = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        let Some((name, addr)) = item.split_once('=') else {
            return Err(format!(
                "--peers entry {} `{item}`: expected NAME=ADDR:PORT",
                i + 1
            ));
        };
        check_name(name).map_err(|e| format!("--peers entry {} `{item}`: {e}", i + 1))?;
        let addr: SocketAddr = addr.parse().map_err(|e| {
            format!(
                "--peers entry {} `{item}`: `{addr}` is not an IP:PORT address ({e})",
                i + 1
            )
        })?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("--peers: node `{name}` is listed twice"));
        }
        out.push((name.to_string(), addr));
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("node names are 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!(
            "node name `{name}` may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

impl TryFrom<Args> for Config {
    type Error = String;

    fn try_from(a: Args) -> Result<Config, String> {
        let order = parse_peers(&a.peers)?;
        let first = order
            .first()
            .map(|(n, _)| n.clone())
            .ok_or("--peers is empty")?;
        let nodes: BTreeMap<String, SocketAddr> = order.iter().cloned().collect();
        if !nodes.contains_key(&a.node) {
            return Err(format!(
                "--node `{}` is not one of --peers ({})",
                a.node,
                names(&nodes)
            ));
        }
        let initial_master = a.initial_master.unwrap_or(first);
        if !nodes.contains_key(&initial_master) {
            return Err(format!(
                "--initial-master `{initial_master}` is not one of --peers ({})",
                names(&nodes)
            ));
        }
        let standby = match a.standby {
            Some(s) if s == initial_master => {
                return Err(format!(
                    "--standby `{s}` is the primary coordinator (--initial-master)"
                ))
            }
            Some(s) if !nodes.contains_key(&s) => {
                return Err(format!(
                    "--standby `{s}` is not one of --peers ({})",
                    names(&nodes)
                ))
            }
            Some(s) => Some(s),
            None => {
                let at = order.iter().position(|(n, _)| *n == initial_master);
                let after = at.map_or(0, |i| i + 1);
                order
                    .iter()
                    .cycle()
                    .skip(after)
                    .take(order.len())
                    .map(|(n, _)| n.clone())
                    .find(|n| *n != initial_master)
            }
        };
        if !(1..=64).contains(&a.groups) {
            return Err(format!("--groups {} is not between 1 and 64", a.groups));
        }
        if a.heartbeat_ms == 0 || a.peer_timeout_ms == 0 {
            return Err("--heartbeat-ms and --peer-timeout-ms must be positive".into());
        }
        if a.failover_timeout_ms <= a.heartbeat_ms {
            return Err(format!(
                "--failover-timeout-ms ({}) must exceed --heartbeat-ms ({})",
                a.failover_timeout_ms, a.heartbeat_ms
            ));
        }
        Ok(Config {
            mode: a.mode,
            node: a.node,
            listen: a.listen,
            nodes,
            data_dir: a.data_dir,
            log: a.log,
            pid_file: a.pid_file,
            initial_master,
            heartbeat: Duration::from_millis(a.heartbeat_ms),
            failover_timeout: Duration::from_millis(a.failover_timeout_ms),
            peer_timeout: Duration::from_millis(a.peer_timeout_ms),
            fsync: a.fsync,
            client_routing: a.client_routing,
            semi_sync_timeout: Duration::from_millis(a.semi_sync_timeout_ms),
            clock_offset_ms: a.clock_offset_ms,
            standby,
            groups: a.groups,
            debug_fault_injection: a.debug_fault_injection,
        })
    }
}

fn names(nodes: &BTreeMap<String, SocketAddr>) -> String {
    nodes.keys().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec![
            "zoo",
            "--mode",
            "async-failover",
            "--listen",
            "127.0.0.1:7000",
            "--data-dir",
            "/tmp/x",
        ];
        argv.extend_from_slice(extra);
        let a = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(a)
    }

    #[test]
    fn validates_peers_and_names() {
        let ok = args(&[
            "--node",
            "n2",
            "--peers",
            "n2=127.0.0.1:7001, n1=127.0.0.1:7000",
        ])
        .unwrap();
        assert_eq!(ok.initial_master, "n2", "first listed peer");
        assert_eq!(ok.peers().count(), 1);
        for (peers, node, want) in [
            (
                "n1=127.0.0.1:1",
                "n9",
                "--node `n9` is not one of --peers (n1)",
            ),
            ("n1=localhost:1", "n1", "entry 1 `n1=localhost:1`"),
            ("n1", "n1", "expected NAME=ADDR:PORT"),
            ("n1=127.0.0.1:1,n1=127.0.0.1:2", "n1", "listed twice"),
            ("n 1=127.0.0.1:1", "n 1", "may only contain"),
        ] {
            let err = args(&["--node", node, "--peers", peers]).unwrap_err();
            assert!(err.contains(want), "{peers}: {err}");
        }
        let err = args(&[
            "--node",
            "n1",
            "--peers",
            "n1=127.0.0.1:1",
            "--initial-master",
            "n3",
        ])
        .unwrap_err();
        assert!(err.contains("--initial-master `n3`"), "{err}");
        let err = args(&[
            "--node",
            "n1",
            "--peers",
            "n1=127.0.0.1:1",
            "--failover-timeout-ms",
            "100",
        ])
        .unwrap_err();
        assert!(err.contains("must exceed"), "{err}");
        let three = "n1=127.0.0.1:1,n2=127.0.0.1:2,n3=127.0.0.1:3";
        let c = args(&["--node", "n1", "--peers", three, "--initial-master", "n3"]).unwrap();
        assert_eq!(c.standby.as_deref(), Some("n1"), "wraps around --peers");
        let c = args(&["--node", "n1", "--peers", three]).unwrap();
        assert_eq!((c.standby.as_deref(), c.groups), (Some("n2"), 1));
        let err = args(&["--node", "n1", "--peers", three, "--standby", "n1"]).unwrap_err();
        assert!(err.contains("is the primary coordinator"), "{err}");
        let err = args(&["--node", "n1", "--peers", three, "--standby", "n9"]).unwrap_err();
        assert!(
            err.contains("--standby `n9` is not one of --peers"),
            "{err}"
        );
        let err = args(&["--node", "n1", "--peers", three, "--groups", "0"]).unwrap_err();
        assert!(err.contains("--groups 0"), "{err}");
        let c = args(&["--node", "n1", "--peers", "n1=127.0.0.1:1"]).unwrap();
        assert_eq!(c.standby, None, "one node: no standby");
    }
}
