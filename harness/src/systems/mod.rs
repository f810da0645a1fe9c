//! Systems under test. Each system is one file here implementing [`System`]: how to
//! install, configure, start, stop and kill it on a node, which node is master, which
//! logs to collect, and a [`SystemClient`] that turns workload invocations into
//! requests and classifies every answer as `ok`, `fail` or `info`.

pub mod etcd;
pub mod kind;
pub mod postgres;
pub mod redis;
pub mod zoo;

pub use kind::{SystemKind, SystemOptions, SystemSpec};

use crate::control::{Remote, Target};
use crate::nodes::NodeSpec;
use crate::runner::stop::Stop;
use nemesis::process::{signal_script, status_script, ProcessState, Signal};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use workloads::Invocation;

/// How one operation ended, in Jepsen's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It happened; `value` is the result, `extra` goes into the history line
    /// (e.g. `acked_by`).
    Ok {
        value: Value,
        extra: Map<String, Value>,
    },
    /// It definitely did not happen; `kind` says whether the system declined it or
    /// could not serve it.
    Fail { error: String, kind: FailKind },
    /// It may or may not have happened (timeout, lost connection).
    Info { error: String },
}

/// Why an operation definitely did not happen. The runner backs off before a
/// client's next operation only after [`FailKind::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The system answered and declined the operation on its merits — a `cas` that
    /// found another value, a value of the wrong type, a conflict — or the invocation
    /// itself was invalid. A normal completed operation: asking again at once is fine.
    Rejected,
    /// The system could not serve the operation now: no master or leader, a node down,
    /// read-only or still loading, the connection refused, a read with no answer.
    Unavailable,
}

impl FailKind {
    /// The name written into the history line (`fail_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::Rejected => "rejected",
            FailKind::Unavailable => "unavailable",
        }
    }
}

impl Outcome {
    /// `Fail` of kind [`FailKind::Rejected`].
    pub fn rejected(error: impl Into<String>) -> Outcome {
        Outcome::Fail {
            error: error.into(),
            kind: FailKind::Rejected,
        }
    }

    /// `Fail` of kind [`FailKind::Unavailable`].
    pub fn unavailable(error: impl Into<String>) -> Outcome {
        Outcome::Fail {
            error: error.into(),
            kind: FailKind::Unavailable,
        }
    }
}

/// A node as the runner hands it to a system: its spec and a way to run commands.
#[derive(Clone)]
pub struct NodeHandle {
    pub spec: NodeSpec,
    pub remote: Arc<Target>,
}

/// What a system claims about roles, for the nemesis and the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleView {
    pub node: String,
    pub is_master: bool,
    /// Term or epoch of that belief, when the system has one.
    pub epoch: Option<u64>,
    /// The master this node believes in.
    pub master: Option<String>,
}

pub trait SystemClient: Send + 'static {
    /// Performs `inv`, taking at most `timeout`; a timeout is `Info`.
    fn invoke(
        &mut self,
        inv: &Invocation,
        timeout: Duration,
    ) -> impl Future<Output = Outcome> + Send;
}

pub trait System: Send + Sync + 'static {
    type Client: SystemClient;

    /// Name and mode, e.g. `zoo async-failover`.
    fn describe(&self) -> String;

    /// Installs, configures and starts the system on one node (fresh data), without
    /// waiting for the cluster to be healthy.
    fn setup_node(
        &self,
        node: &NodeHandle,
        all: &[NodeSpec],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Waits until the cluster serves requests (bounded by `timeout`).
    fn await_ready(
        &self,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Stops the system on one node and leaves no process of it behind.
    fn teardown_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Each node's view of roles; nodes that do not answer are left out.
    fn roles(
        &self,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> impl Future<Output = Vec<RoleView>> + Send;

    /// Remote paths of the logs worth collecting from `node`.
    fn log_paths(&self, node: &NodeSpec) -> Vec<String>;

    /// A client bound to `node` (connects lazily).
    fn client(&self, node: &NodeSpec) -> Self::Client;

    /// The file holding the pid of the system's process on `node`; process faults
    /// (kill, pause, resume) and `fault status` act on it.
    fn pid_file(&self, node: &NodeSpec) -> String;

    /// The shell text [`System::restart_node`] runs on `node`, when a restart is that one
    /// self-contained command (it must start nothing while the system's process still
    /// runs). A kill marker carries it, so `splitbrain fault heal` from another
    /// controller process starts the system again as the run would have. `None`: the
    /// restart needs the controller (then the heal says what to run instead).
    fn restart_script(&self, node: &NodeSpec, all: &[NodeSpec]) -> Option<String> {
        let _ = (node, all);
        None
    }

    /// Starts the system again on `node` after a kill, keeping its data.
    fn restart_node(
        &self,
        node: &NodeHandle,
        all: &[NodeSpec],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// A task the runner keeps beside the clients from readiness until the final reads
    /// are done, then stops through `stop` (and aborts if it does not end): for systems
    /// whose failover the harness drives, as an operator's tooling would. The default
    /// does nothing.
    fn supervise(
        self: Arc<Self>,
        nodes: Vec<NodeHandle>,
        stop: Stop,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = (nodes, stop);
        async {}
    }

    /// Warnings about this run the reader must see (e.g. a fault that cannot reach
    /// the system here): printed at the start and kept in results.json's
    /// `environment.notes`, which every report shows. The default has none.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The version of the software under test on `node`, for results.json (e.g. the
    /// output of `redis-server --version`); `None` when the system cannot tell.
    fn version(&self, node: &NodeHandle) -> impl Future<Output = Option<String>> + Send {
        let _ = node;
        async { None }
    }

    /// SIGKILLs the system's process (and its descendants) on `node` and waits until
    /// it is gone.
    fn kill_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        signal(node, self.pid_file(&node.spec), Signal::Kill)
    }

    /// SIGSTOPs the system's process on `node` and every descendant of it: stopping
    /// only a parent would leave its workers serving.
    fn pause_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        signal(node, self.pid_file(&node.spec), Signal::Stop)
    }

    /// SIGCONTs the system's process on `node` and its descendants; succeeds when
    /// there is none (part of every heal).
    fn resume_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        signal(node, self.pid_file(&node.spec), Signal::Cont)
    }

    /// The system's process on `node` as `/proc` shows it.
    fn process_state(
        &self,
        node: &NodeHandle,
    ) -> impl Future<Output = anyhow::Result<ProcessState>> + Send {
        let (remote, script) = (
            node.remote.clone(),
            status_script(&self.pid_file(&node.spec)),
        );
        async move {
            let out = remote.exec_ok(&script, FAULT_TIMEOUT).await?.stdout_str();
            ProcessState::parse(&out).map_err(|e| anyhow::anyhow!("{}: {e}", remote.node().name))
        }
    }
}

/// Bound on one process-fault command.
const FAULT_TIMEOUT: Duration = Duration::from_secs(15);

async fn signal(node: &NodeHandle, pid_file: String, sig: Signal) -> anyhow::Result<()> {
    node.remote
        .exec_ok(&signal_script(&pid_file, sig), FAULT_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The current masters by the highest epoch claimed: every node claiming master at
/// that epoch (several means a same-epoch split brain), else every claimant.
pub fn current_masters(roles: &[RoleView]) -> Vec<String> {
    let claims: Vec<&RoleView> = roles.iter().filter(|r| r.is_master).collect();
    let top = claims.iter().filter_map(|r| r.epoch).max();
    let mut out: Vec<String> = claims
        .iter()
        .filter(|r| top.is_none() || r.epoch == top)
        .map(|r| r.node.clone())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(node: &str, m: bool, e: u64) -> RoleView {
        RoleView {
            node: node.into(),
            is_master: m,
            epoch: Some(e),
            master: None,
        }
    }

    #[test]
    fn masters_by_highest_epoch() {
        assert_eq!(
            current_masters(&[v("n1", true, 1), v("n2", true, 2), v("n3", false, 2)]),
            vec!["n2"]
        );
        assert_eq!(current_masters(&[v("n1", false, 1)]), Vec::<String>::new());
        assert_eq!(
            current_masters(&[v("n3", true, 4), v("n1", true, 4)]),
            vec!["n1", "n3"]
        );
    }
}
