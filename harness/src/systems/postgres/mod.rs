//! PostgreSQL 15 streaming replication as a system under test (`--system
//! postgres:async|sync-any-1|sync-all`): the first node is made primary with initdb,
//! the others standbys with `pg_basebackup -R`, each postmaster run by the `postgres`
//! user with the node's address and name; the three modes differ only in
//! `synchronous_standby_names`. Failover is driven by the harness ([`supervise`]), not
//! by Patroni. Role is `pg_is_in_recovery()`, epoch the timeline. Workloads: set and
//! register.

pub mod client;
pub mod conf;
pub mod node;
pub mod sql;
pub mod supervise;

use super::{NodeHandle, RoleView, System, SystemOptions};
use crate::control::Remote;
use crate::nodes::NodeSpec;
use crate::runner::stop::Stop;
use anyhow::{bail, Context};
use client::PgClient;
use conf::{plain_word, Mode};
use node::Layout;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use workloads::WorkloadKind;

pub struct Postgres {
    pub mode: Mode,
    lab: bool,
    faketime: bool,
    /// Every node, in nodes-file order (the first is the initial primary); known from
    /// setup on, so clients can look for the read-write node among them.
    nodes: RwLock<Vec<NodeSpec>>,
    pub connect_timeout: Duration,
}

impl Postgres {
    /// PostgreSQL in `opts.spec.mode`; refuses workloads it cannot serve.
    pub fn new(opts: &SystemOptions, workload: WorkloadKind) -> anyhow::Result<Postgres> {
        let mode = Mode::parse(&opts.spec.mode).map_err(anyhow::Error::msg)?;
        if !matches!(workload, WorkloadKind::Set | WorkloadKind::Register) {
            bail!("postgres does not support the {workload} workload yet (use set or register)");
        }
        Ok(Postgres {
            mode,
            lab: opts.lab,
            faketime: opts.lab && opts.clock_faults,
            nodes: RwLock::new(Vec::new()),
            connect_timeout: Duration::from_secs(1),
        })
    }

    fn layout(&self, node: &NodeSpec) -> Layout {
        Layout::new(node, self.lab, self.faketime)
    }

    fn remember(&self, all: &[NodeSpec]) {
        let mut n = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if n.as_slice() != all {
            *n = all.to_vec();
        }
    }

    fn check_words(&self, node: &NodeSpec) -> anyhow::Result<()> {
        let l = self.layout(node);
        for (what, v) in [
            ("address", node.host.as_str()),
            ("name", node.name.as_str()),
            ("data directory", l.base.as_str()),
        ] {
            if !plain_word(v) {
                bail!(
                    "{}: postgres needs a {what} of letters, digits and ._-/: only, got {v:?}",
                    node.name
                );
            }
        }
        Ok(())
    }
}

impl System for Postgres {
    type Client = PgClient;

    fn describe(&self) -> String {
        format!("postgres {}", self.mode.name())
    }

    async fn setup_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let spec = &node.spec;
        self.check_words(spec)?;
        self.remember(all);
        let Some(primary) = all.first() else {
            bail!("postgres needs at least one node");
        };
        let l = self.layout(spec);
        let t = Duration::from_secs(180);
        if spec.name == primary.name {
            let script = node::primary_script(&l, spec, all, self.mode, self.lab);
            node.remote
                .exec_ok(&script, t)
                .await
                .with_context(|| format!("{}: setting up the postgres primary", spec.name))?;
            // The workloads' tables, created once on the primary (standbys replicate).
            let c = sql::connect(&spec.host, "splitbrain-setup", Duration::from_secs(10))
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))?;
            tokio::time::timeout(Duration::from_secs(30), c.batch_execute(client::SCHEMA_SQL))
                .await
                .map_err(|_| anyhow::anyhow!("{}: creating the tables timed out", spec.name))?
                .with_context(|| format!("{}: creating the tables", spec.name))?;
        } else {
            let script = node::standby_script(&l, spec, &primary.host, self.lab);
            node.remote
                .exec_ok(&script, t)
                .await
                .with_context(|| format!("{}: setting up a postgres standby", spec.name))?;
        }
        Ok(())
    }

    async fn await_ready(&self, nodes: &[NodeSpec], timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let Some(primary) = nodes.first() else {
            bail!("postgres needs at least one node");
        };
        loop {
            let mut problems = Vec::new();
            for n in nodes {
                match sql::probe(&n.host, Duration::from_secs(1)).await {
                    Ok(s) if n.name == primary.name => {
                        if s.in_recovery {
                            problems.push(format!("{} is in recovery", n.name));
                        } else if s.streaming_standbys + 1 < nodes.len() as u64 {
                            problems.push(format!(
                                "{} has {} of {} standbys streaming",
                                n.name,
                                s.streaming_standbys,
                                nodes.len() - 1
                            ));
                        }
                    }
                    Ok(s) if !s.in_recovery => problems.push(format!("{} is a primary", n.name)),
                    Ok(s) if !s.streaming => problems.push(format!("{} is not streaming", n.name)),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{}: {e}", n.name)),
                }
            }
            if problems.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "postgres not ready after {timeout:?}: {}",
                    problems.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn teardown_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        node.remote
            .exec_ok(
                &node::stop_script(&self.layout(&node.spec)),
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("{}: stopping postgres", node.spec.name))?;
        Ok(())
    }

    async fn roles(&self, nodes: &[NodeSpec], timeout: Duration) -> Vec<RoleView> {
        let mut set = tokio::task::JoinSet::new();
        for n in nodes {
            let (name, host) = (n.name.clone(), n.host.clone());
            set.spawn(async move { (name, sql::probe(&host, timeout).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok((name, Ok(s))) = r {
                let master = if s.in_recovery {
                    s.sender_host
                        .and_then(|h| nodes.iter().find(|n| n.host == h))
                        .map(|n| n.name.clone())
                } else {
                    Some(name.clone())
                };
                out.push(RoleView {
                    node: name,
                    is_master: !s.in_recovery,
                    epoch: Some(s.timeline),
                    master,
                });
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn log_paths(&self, node: &NodeSpec) -> Vec<String> {
        vec![self.layout(node).log]
    }

    fn client(&self, node: &NodeSpec) -> PgClient {
        let all = self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut order: Vec<(String, String)> = Vec::new();
        if let Some(i) = all.iter().position(|n| n.name == node.name) {
            for n in all[i..].iter().chain(all[..i].iter()) {
                order.push((n.name.clone(), n.host.clone()));
            }
        } else {
            order.push((node.name.clone(), node.host.clone()));
        }
        PgClient::new(
            node.name.clone(),
            node.host.clone(),
            order,
            self.connect_timeout,
        )
    }

    fn pid_file(&self, node: &NodeSpec) -> String {
        self.layout(node).pid
    }

    fn restart_script(&self, node: &NodeSpec, _all: &[NodeSpec]) -> Option<String> {
        Some(node::restart_script(&self.layout(node), node))
    }

    async fn restart_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        self.remember(all);
        node.remote
            .exec_ok(
                &node::restart_script(&self.layout(&node.spec), &node.spec),
                Duration::from_secs(90),
            )
            .await
            .with_context(|| format!("{}: restarting postgres", node.spec.name))?;
        Ok(())
    }

    fn supervise(
        self: Arc<Self>,
        nodes: Vec<NodeHandle>,
        stop: Stop,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        supervise::run(self.mode, self.lab, self.faketime, nodes, stop)
    }

    async fn version(&self, node: &NodeHandle) -> Option<String> {
        let cmd = format!("{}/postgres --version", conf::BIN);
        let out = node
            .remote
            .exec_ok(&cmd, Duration::from_secs(10))
            .await
            .ok()?;
        let v = out.stdout_str().trim().to_string();
        (!v.is_empty()).then_some(v)
    }

    async fn kill_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        self.group_signal(node, "KILL").await
    }

    async fn pause_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        self.group_signal(node, "STOP").await
    }

    async fn resume_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        self.group_signal(node, "CONT").await
    }
}

impl Postgres {
    /// Signals the postmaster and all its children: pausing only the postmaster would
    /// leave every backend and WAL sender serving.
    async fn group_signal(&self, node: &NodeHandle, sig: &str) -> anyhow::Result<()> {
        node.remote
            .exec_ok(
                &node::signal_script(&self.layout(&node.spec), sig),
                Duration::from_secs(15),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}
