//! [`Cluster`]: one [`Session`] per node, connected concurrently, and the same (or a
//! per-node) command run on all of them in parallel.

use std::sync::Arc;
use std::time::Duration;

use super::{ControlError, Credentials, ExecOutput, Remote, Session, SshOptions};
use crate::nodes::NodeSpec;

/// One node's outcome of a cluster-wide operation.
#[derive(Debug)]
pub struct PerNode<T> {
    /// The node's name.
    pub node: String,
    pub result: Result<T, ControlError>,
}

/// Sessions to every node of a test, in nodes-file order.
#[derive(Debug)]
pub struct Cluster {
    sessions: Vec<Arc<Session>>,
}

impl Cluster {
    /// Connects to all nodes at once. Fails when any node fails, with every failure
    /// in one line ([`ControlError::Nodes`]); credentials are loaded once.
    pub async fn connect(nodes: &[NodeSpec], opts: &SshOptions) -> Result<Cluster, ControlError> {
        let creds = Arc::new(Credentials::load(opts)?);
        let tasks: Vec<_> = nodes
            .iter()
            .map(|n| {
                let (n, o, c) = (n.clone(), opts.clone(), creds.clone());
                tokio::spawn(async move { Session::connect_with(&n, &o, c).await })
            })
            .collect();
        let mut sessions = Vec::new();
        let mut failures = Vec::new();
        for (task, node) in tasks.into_iter().zip(nodes) {
            match task.await {
                Ok(Ok(s)) => sessions.push(Arc::new(s)),
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(ControlError::Channel {
                    node: node.to_string(),
                    reason: format!("connect task failed: {e}"),
                }),
            }
        }
        match failures.len() {
            0 => Ok(Cluster { sessions }),
            1 if nodes.len() == 1 => Err(failures.remove(0)),
            _ => Err(ControlError::Nodes {
                total: nodes.len(),
                failures,
            }),
        }
    }

    /// All sessions, in nodes-file order.
    pub fn sessions(&self) -> &[Arc<Session>] {
        &self.sessions
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> Vec<&NodeSpec> {
        self.sessions.iter().map(|s| s.node()).collect()
    }

    /// The session of the node named `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<Session>, ControlError> {
        self.sessions
            .iter()
            .find(|s| s.node().name == name)
            .ok_or_else(|| ControlError::UnknownNode {
                name: name.to_string(),
                known: self
                    .sessions
                    .iter()
                    .map(|s| s.node().name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Runs `cmd` on every node in parallel; results in node order.
    pub async fn exec_all(&self, cmd: &str, timeout: Duration) -> Vec<PerNode<ExecOutput>> {
        self.exec_each(|_| Some(cmd.to_string()), timeout).await
    }

    /// Runs the command `cmd_for` gives each node (`None`: skip the node) in parallel.
    pub async fn exec_each<F>(&self, cmd_for: F, timeout: Duration) -> Vec<PerNode<ExecOutput>>
    where
        F: Fn(&NodeSpec) -> Option<String>,
    {
        let tasks: Vec<_> = self
            .sessions
            .iter()
            .filter_map(|s| cmd_for(s.node()).map(|c| (s.clone(), c)))
            .map(|(s, cmd)| {
                let name = s.node().name.clone();
                let task = tokio::spawn(async move { s.exec(&cmd, timeout).await });
                (name, task)
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (node, task) in tasks {
            let result = task.await.unwrap_or_else(|e| {
                Err(ControlError::Channel {
                    node: node.clone(),
                    reason: format!("command task failed: {e}"),
                })
            });
            out.push(PerNode { node, result });
        }
        out
    }

    /// Closes every session.
    pub async fn close(&self) {
        for s in &self.sessions {
            s.close().await;
        }
    }
}
