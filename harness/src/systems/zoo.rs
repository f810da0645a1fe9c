//! The zoo as a system under test: puts the `zoo` binary on every node (uploaded only
//! where no byte-identical copy is there already), starts one
//! daemon per node under `<workdir>/zoo/`, asks nodes for their roles, and maps the
//! zoo protocol's answers onto `ok` / `fail` / `info`. The ring modes are masterless:
//! every node accepts writes by design, so no node is reported as master (the
//! nemesis then aims "the master" faults at a seeded node), readiness is every node
//! answering, and role observations say `peer` and `masterless`, which makes the
//! dual-master analysis "not applicable" rather than a false positive.

use super::{FailKind, NodeHandle, Outcome, RoleView, System, SystemClient};
use crate::control::{sh_quote, Remote};
use crate::nodes::NodeSpec;
use anyhow::{bail, Context};
use nemesis::clock;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::{Invocation, OpFn};
use zoo::client::{CallError, Client};
use zoo::proto::{ErrorCode, Outcome as ZooOutcome, Request, Response, RoleKind};

#[path = "zoo_spares.rs"]
pub mod spares;
#[path = "zoo_stop.rs"]
mod stop;
use spares::Spares;
use stop::stop_script;

/// The port every zoo node listens on, for clients and peers.
pub const PORT: u16 = 7070;

/// The zoo modes the harness can deploy.
pub const MODES: &[&str] = &[
    "async-failover",
    "fixed-master",
    "semi-sync",
    "sync",
    "raft",
    "lww-ring",
    "vclock-ring",
    "metadata-master",
];

/// The modes in which every node accepts writes (no master by design).
pub const MASTERLESS: &[&str] = &["lww-ring", "vclock-ring"];

/// How often the readiness wait asks every node for its role: a role query is one
/// local round trip, and each 50 ms saved here is saved on every run.
const READY_POLL: Duration = Duration::from_millis(50);

pub struct Zoo {
    pub mode: String,
    /// The zoo binary on the controller, uploaded to every node.
    pub binary: PathBuf,
    pub connect_timeout: Duration,
    /// Start each daemon under libfaketime reading the node's offset file
    /// ([`nemesis::clock::lab_offset_file`]): how clock faults reach the zoo in the
    /// lab, where all nodes share one system clock.
    pub faketime: bool,
}

impl Zoo {
    /// The zoo in `opts.spec.mode`; under clock faults on the lab, every daemon starts
    /// under libfaketime (lab nodes share one clock).
    pub fn new(opts: &super::SystemOptions) -> anyhow::Result<Zoo> {
        let mut zoo = Zoo::with_binary(&opts.spec.mode, opts.zoo_binary.clone())?;
        zoo.faketime = opts.lab && opts.clock_faults;
        Ok(zoo)
    }

    pub fn with_binary(mode: &str, binary: PathBuf) -> anyhow::Result<Zoo> {
        if !MODES.contains(&mode) {
            bail!("unknown zoo mode {mode:?} (known: {})", MODES.join(", "));
        }
        if !binary.is_file() {
            bail!(
                "zoo binary not found at {}: build it with `cargo build -p zoo` (same profile as splitbrain) or pass --zoo-binary",
                binary.display()
            );
        }
        Ok(Zoo {
            mode: mode.to_string(),
            binary,
            connect_timeout: Duration::from_secs(2),
            faketime: false,
        })
    }

    /// Whether every node accepts writes by design (no master to find or follow).
    pub fn masterless(&self) -> bool {
        MASTERLESS.contains(&self.mode.as_str())
    }

    fn dir(node: &NodeSpec) -> String {
        format!("{}/zoo", node.workdir.trim_end_matches('/'))
    }

    /// The command that starts the daemon on `spec` over its existing data directory.
    fn start_command(&self, spec: &NodeSpec, all: &[NodeSpec]) -> String {
        let dir = Zoo::dir(spec);
        let words = [
            sh_quote(&format!("{dir}/bin/zoo")),
            "--mode".into(),
            sh_quote(&self.mode),
            "--node".into(),
            sh_quote(&spec.name),
            "--listen".into(),
            sh_quote(&format!("{}:{PORT}", spec.host)),
            "--peers".into(),
            sh_quote(&peers_flag(all)),
            "--data-dir".into(),
            sh_quote(&format!("{dir}/data")),
            "--log".into(),
            sh_quote(&format!("{dir}/zoo.log")),
            "--pid-file".into(),
            sh_quote(&format!("{dir}/zoo.pid")),
            "--daemon".into(),
        ]
        .join(" ");
        if self.faketime {
            let file = clock::lab_offset_file(&spec.workdir);
            format!("{} {words}", clock::faketime_env(&file))
        } else {
            words
        }
    }
}

fn peers_flag(all: &[NodeSpec]) -> String {
    all.iter()
        .map(|n| format!("{}={}:{PORT}", n.name, n.host))
        .collect::<Vec<_>>()
        .join(",")
}

impl System for Zoo {
    async fn version(&self, _node: &NodeHandle) -> Option<String> {
        Some(format!(
            "zoo {} (built with the harness)",
            env!("CARGO_PKG_VERSION")
        ))
    }

    type Client = ZooClient;

    fn describe(&self) -> String {
        format!("zoo {}", self.mode)
    }

    async fn setup_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let spec = &node.spec;
        let dir = Zoo::dir(spec);
        let bin = format!("{dir}/bin/zoo");
        let pid = format!("{dir}/zoo.pid");
        let t = node.remote.command_timeout();
        // A fresh start: stop any earlier daemon of ours, wipe its data, its log (the
        // run collects the log, which would otherwise hold every earlier run on the
        // node) and any clock offset an earlier run left.
        let prep = format!(
            "{}; rm -f {} {}; rm -rf {} && mkdir -p {} {}",
            stop_script(&pid),
            sh_quote(&clock::lab_offset_file(&spec.workdir)),
            sh_quote(&format!("{dir}/zoo.log")),
            sh_quote(&format!("{dir}/data")),
            sh_quote(&format!("{dir}/data")),
            sh_quote(&format!("{dir}/bin"))
        );
        node.remote
            .exec_ok(&prep, t)
            .await
            .with_context(|| format!("{}: preparing {dir}", spec.name))?;
        // Most runs find the binary of the run before: a debug build is ~75 MB,
        // seconds over SSH, so only a node whose copy differs gets it.
        let sent = crate::control::upload_unless_identical(
            node.remote.as_ref(),
            &self.binary,
            &bin,
            0o755,
        )
        .await
        .with_context(|| format!("{}: uploading the zoo binary to {bin}", spec.name))?;
        tracing::info!(node = %spec.name, upload = ?sent, "zoo binary in place");
        let cmd = self.start_command(spec, all);
        node.remote
            .exec_ok(&cmd, t)
            .await
            .with_context(|| format!("{}: starting zoo", spec.name))?;
        Ok(())
    }

    async fn await_ready(&self, nodes: &[NodeSpec], timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let roles = self.roles(nodes, Duration::from_secs(1)).await;
            if self.masterless() {
                // No master to agree on: ready once every node answers.
                if roles.len() == nodes.len() {
                    return Ok(());
                }
                if start.elapsed() > timeout {
                    let answered: Vec<&str> = roles.iter().map(|r| r.node.as_str()).collect();
                    bail!(
                        "zoo not ready after {timeout:?}: {} of {} nodes answered ({})",
                        roles.len(),
                        nodes.len(),
                        answered.join(",")
                    );
                }
                tokio::time::sleep(READY_POLL).await;
                continue;
            }
            let masters = super::current_masters(&roles);
            // Ready means one node claims master and every other node follows it: a
            // node that started late may have promoted itself meanwhile, and a test
            // begun with two masters would lose writes before any fault.
            let claimants: Vec<&str> = roles
                .iter()
                .filter(|r| r.is_master)
                .map(|r| r.node.as_str())
                .collect();
            let agreed = claimants.len() == 1
                && roles
                    .iter()
                    .all(|r| r.is_master || r.master.as_deref() == Some(claimants[0]));
            if roles.len() == nodes.len() && agreed {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let answered: Vec<&str> = roles.iter().map(|r| r.node.as_str()).collect();
                bail!(
                    "zoo not ready after {timeout:?}: {} of {} nodes answered ({}), nodes claiming master: {:?}, newest: {:?}",
                    roles.len(),
                    nodes.len(),
                    answered.join(","),
                    claimants,
                    masters
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    async fn teardown_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        let pid = format!("{}/zoo.pid", Zoo::dir(&node.spec));
        node.remote
            .exec_ok(&stop_script(&pid), Duration::from_secs(15))
            .await
            .with_context(|| format!("{}: stopping zoo", node.spec.name))?;
        Ok(())
    }

    async fn roles(&self, nodes: &[NodeSpec], timeout: Duration) -> Vec<RoleView> {
        let mut set = tokio::task::JoinSet::new();
        for n in nodes {
            let mut c = self.client(n);
            set.spawn(async move { c.role(timeout).await });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(v)) = r {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn log_paths(&self, node: &NodeSpec) -> Vec<String> {
        vec![format!("{}/zoo.log", Zoo::dir(node))]
    }

    fn pid_file(&self, node: &NodeSpec) -> String {
        format!("{}/zoo.pid", Zoo::dir(node))
    }

    fn restart_script(&self, node: &NodeSpec, all: &[NodeSpec]) -> Option<String> {
        // Only when no daemon of ours is alive: a restart never doubles a process.
        Some(format!(
            "if [ -f {p} ] && kill -0 \"$(cat {p})\" 2>/dev/null; then echo 'zoo is still running' >&2; exit 3; fi; {}",
            self.start_command(node, all),
            p = sh_quote(&self.pid_file(node))
        ))
    }

    async fn restart_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let cmd = self.restart_script(&node.spec, all).unwrap_or_default();
        node.remote
            .exec_ok(&cmd, node.remote.command_timeout())
            .await
            .with_context(|| format!("{}: restarting zoo", node.spec.name))?;
        Ok(())
    }

    fn client(&self, node: &NodeSpec) -> ZooClient {
        ZooClient {
            host: node.host.clone(),
            node: node.name.clone(),
            conn: None,
            connect_timeout: self.connect_timeout,
            masterless: self.masterless(),
            spares: None,
        }
    }
}

/// A client bound to one node; connects on first use and after any failure.
pub struct ZooClient {
    host: String,
    node: String,
    conn: Option<Client>,
    connect_timeout: Duration,
    /// A ring mode: the node's `master` role is not a master claim.
    masterless: bool,
    /// Where a new connection comes from first ([`spares::SparingZoo`]).
    spares: Option<Arc<Spares>>,
}

fn classify(e: &CallError) -> Outcome {
    let error = e.to_string();
    let kind = match e {
        CallError::Server(reply) => fail_kind(reply.code),
        CallError::Transport(_) | CallError::Unexpected(_) => FailKind::Unavailable,
    };
    match e.outcome() {
        ZooOutcome::NotApplied => Outcome::Fail { error, kind },
        ZooOutcome::Indeterminate => Outcome::Info { error },
    }
}

/// Whether a zoo error code declines the op on its merits or says the node cannot
/// serve it now (matters only for the codes that are `not_applied`).
fn fail_kind(code: ErrorCode) -> FailKind {
    match code {
        ErrorCode::CasMismatch
        | ErrorCode::WrongType
        | ErrorCode::BadRequest
        | ErrorCode::Unsupported => FailKind::Rejected,
        ErrorCode::NoMaster
        | ErrorCode::NotMaster
        | ErrorCode::MasterUnreachable
        | ErrorCode::ForwardLost
        | ErrorCode::Storage
        | ErrorCode::ShuttingDown
        | ErrorCode::Redirect
        | ErrorCode::NotReplicated => FailKind::Unavailable,
    }
}

impl ZooClient {
    /// This client, taking each new connection from `spares` when one is ready.
    pub fn with_spares(mut self, spares: Arc<Spares>) -> ZooClient {
        self.spares = Some(spares);
        self
    }

    async fn resolve(&self) -> Result<SocketAddr, String> {
        let target = format!("{}:{PORT}", self.host);
        let mut addrs = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|e| format!("resolving {target}: {e}"))?;
        addrs
            .next()
            .ok_or_else(|| format!("resolving {target}: no address"))
    }

    async fn connected(&mut self) -> Result<&mut Client, String> {
        if self.conn.as_ref().is_none_or(Client::is_poisoned) {
            let addr = self.resolve().await?;
            let spare = self.spares.as_ref().and_then(|s| s.take(addr));
            let c = match spare {
                Some(c) => c,
                None => Client::connect(addr, self.connect_timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    /// This node's role, or `None` if it does not answer in time.
    pub async fn role(&mut self, timeout: Duration) -> Option<RoleView> {
        let c = tokio::time::timeout(timeout, self.connected())
            .await
            .ok()?
            .ok()?;
        match c.call(&Request::Role, timeout).await {
            Ok(Response::Role(r)) => Some(RoleView {
                node: r.node,
                is_master: !self.masterless && r.role == RoleKind::Master,
                epoch: Some(r.epoch),
                master: if self.masterless { None } else { r.master },
            }),
            _ => None,
        }
    }
}

/// `acked_by` and `epoch` of an acknowledged write: who accepted it as master.
fn attribution(master: &str, epoch: u64) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("acked_by".into(), json!(master));
    extra.insert("epoch".into(), json!(epoch));
    extra
}

/// Which node answered a read, in which role and epoch.
fn served(node: &str, role: RoleKind, epoch: u64) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("served_by".into(), json!(node));
    extra.insert("role".into(), json!(role.to_string()));
    extra.insert("epoch".into(), json!(epoch));
    extra
}

impl SystemClient for ZooClient {
    async fn invoke(&mut self, inv: &Invocation, timeout: Duration) -> Outcome {
        let key = inv.key.clone().unwrap_or_default();
        let masterless = self.masterless;
        let deadline = Instant::now() + timeout;
        let c = match tokio::time::timeout(timeout, self.connected()).await {
            Ok(Ok(c)) => c,
            // Nothing was sent: the operation did not happen.
            Ok(Err(error)) => return Outcome::unavailable(error),
            Err(_) => return Outcome::unavailable(format!("connect to {}: timed out", self.node)),
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        match inv.f {
            OpFn::Add => {
                let Some(value) = inv.value.as_i64() else {
                    return Outcome::rejected(format!("add of a non-integer {}", inv.value));
                };
                match c.add(&key, value, left).await {
                    Ok(ack) => Outcome::Ok {
                        value: json!(value),
                        extra: attribution(&ack.master, ack.epoch),
                    },
                    Err(e) => classify(&e),
                }
            }
            OpFn::Write | OpFn::Append => {
                let Some(value) = inv.value.as_i64() else {
                    return Outcome::rejected(format!(
                        "{} of a non-integer {}",
                        inv.f.as_str(),
                        inv.value
                    ));
                };
                let r = if inv.f == OpFn::Write {
                    c.write(&key, value, left).await
                } else {
                    c.append(&key, value, left).await
                };
                match r {
                    Ok(ack) => Outcome::Ok {
                        value: json!(value),
                        extra: attribution(&ack.master, ack.epoch),
                    },
                    Err(e) => classify(&e),
                }
            }
            OpFn::Cas => {
                let pair = inv.value.as_array().and_then(|p| match p.as_slice() {
                    [a, b] => Some((a.as_i64()?, b.as_i64()?)),
                    _ => None,
                });
                let Some((from, to)) = pair else {
                    return Outcome::rejected(format!(
                        "cas needs [from, to] integers, got {}",
                        inv.value
                    ));
                };
                match c.cas(&key, from, to, left).await {
                    Ok(ack) => Outcome::Ok {
                        value: json!([from, to]),
                        extra: attribution(&ack.master, ack.epoch),
                    },
                    Err(e) => classify(&e),
                }
            }
            OpFn::ReadRegister => match c.get(&key, inv.is_final, left).await {
                Ok(r) => {
                    let mut extra = served(&r.node, r.role, r.epoch);
                    if !r.siblings.is_empty() {
                        extra.insert("siblings".into(), json!(r.siblings));
                    }
                    Outcome::Ok {
                        value: json!(r.value),
                        extra,
                    }
                }
                Err(e) => classify(&e),
            },
            OpFn::ReadList => match c.read_list(&key, inv.is_final, left).await {
                Ok(r) => Outcome::Ok {
                    value: Value::from(r.values),
                    extra: served(&r.node, r.role, r.epoch),
                },
                Err(e) => classify(&e),
            },
            OpFn::Role if masterless => match c.role(left).await {
                // Every ring node says `master`; that is its design, not a claim.
                Ok(r) => Outcome::Ok {
                    value: json!({"role": "peer", "epoch": r.epoch, "masterless": true}),
                    extra: Map::new(),
                },
                Err(e) => classify(&e),
            },
            OpFn::Role => match c.role(left).await {
                Ok(r) => Outcome::Ok {
                    value: json!({
                        "role": r.role.to_string(),
                        "epoch": r.epoch,
                        "master": r.master,
                    }),
                    extra: Map::new(),
                },
                Err(e) => classify(&e),
            },
            OpFn::Read => {
                // Final reads ask each node for its own copy; others go to the master.
                match c.read(&key, inv.is_final, left).await {
                    Ok(r) => Outcome::Ok {
                        value: Value::from(r.values),
                        extra: served(&r.node, r.role, r.epoch),
                    },
                    Err(e) => classify(&e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoo::client::ClientError;
    use zoo::proto::ErrorReply;

    fn kind_of(e: CallError) -> Option<FailKind> {
        match classify(&e) {
            Outcome::Fail { kind, .. } => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn a_declined_op_is_rejected_and_an_unserved_one_unavailable() {
        let server = |code| CallError::Server(ErrorReply::not_applied(code, "x"));
        assert_eq!(
            kind_of(server(ErrorCode::CasMismatch)),
            Some(FailKind::Rejected)
        );
        assert_eq!(
            kind_of(server(ErrorCode::WrongType)),
            Some(FailKind::Rejected)
        );
        for code in [
            ErrorCode::NoMaster,
            ErrorCode::NotMaster,
            ErrorCode::MasterUnreachable,
            ErrorCode::ShuttingDown,
            ErrorCode::Redirect,
        ] {
            assert_eq!(
                kind_of(server(code)),
                Some(FailKind::Unavailable),
                "{code:?}"
            );
        }
        let addr = "127.0.0.1:1".parse().unwrap();
        let refused = CallError::Transport(ClientError::Connect {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        assert_eq!(kind_of(refused), Some(FailKind::Unavailable));
        // Sent and unanswered: not a fail at all.
        let lost = CallError::Transport(ClientError::Closed { addr });
        assert!(matches!(classify(&lost), Outcome::Info { .. }));
        let forward = CallError::Server(ErrorReply::indeterminate(ErrorCode::ForwardLost, "x"));
        assert!(matches!(classify(&forward), Outcome::Info { .. }));
    }
}
