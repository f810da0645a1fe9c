//! Redis + Sentinel as a system under test: one `redis-server` and one
//! `redis-sentinel` per node, asynchronous replication from the first node as the
//! initial master, Sentinel (majority quorum, short timeouts) failing over on its own.
//! Setup checks or installs the Debian packages and writes both config files fresh;
//! process faults (kill, pause, restart) act on `redis-server` only, Sentinel keeps
//! running. Clients find the master through Sentinel ([`client`]). Modes: `sentinel`
//! and `min-replicas-1` ([`config::Tuning`]).

pub mod client;
pub mod config;
pub mod resp;
pub mod view;

use super::{NodeHandle, RoleView, System};
use crate::control::Remote;
use crate::nodes::NodeSpec;
use anyhow::{bail, Context};
use client::{RedisClient, Shared};
use config::{Paths, Tuning, MASTER_NAME};
use resp::{Conn, Reply};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use view::{Cluster, Member};

/// The modes of `--system redis-sentinel:MODE`.
pub const MODES: &[&str] = &["sentinel", "min-replicas-1"];

pub struct RedisSentinel {
    pub mode: String,
    pub tuning: Tuning,
    /// Lab layout (files under each node's workdir) or standard locations.
    pub lab: bool,
    /// Start both daemons under libfaketime (clock faults on the lab).
    pub faketime: bool,
    shared: Arc<Shared>,
}

impl RedisSentinel {
    /// Redis + Sentinel in `opts.spec.mode`.
    pub fn new(opts: &super::SystemOptions) -> anyhow::Result<RedisSentinel> {
        let mut r = RedisSentinel::with_mode(&opts.spec.mode, opts.lab)?;
        r.faketime = opts.lab && opts.clock_faults;
        Ok(r)
    }

    pub fn with_mode(mode: &str, lab: bool) -> anyhow::Result<RedisSentinel> {
        let Some(tuning) = Tuning::for_mode(mode) else {
            bail!(
                "unknown redis-sentinel mode {mode:?} (known: {})",
                MODES.join(", ")
            );
        };
        Ok(RedisSentinel::with_tuning(mode, tuning, lab))
    }

    /// With explicit ports and timing (tests on loopback use other ports).
    pub fn with_tuning(mode: &str, tuning: Tuning, lab: bool) -> RedisSentinel {
        RedisSentinel {
            mode: mode.to_string(),
            tuning,
            lab,
            faketime: false,
            shared: Arc::new(Shared {
                tuning,
                connect_timeout: Duration::from_secs(1),
                cluster: RwLock::new(None),
            }),
        }
    }

    fn paths(&self, node: &NodeSpec) -> Paths {
        Paths::for_node(&node.workdir, self.lab)
    }

    /// Resolves every node's address once (an IP as given, else a DNS lookup here)
    /// and shares it with the clients.
    async fn cluster(&self, nodes: &[NodeSpec]) -> anyhow::Result<Arc<Cluster>> {
        if let Some(c) = self.shared.cluster() {
            if c.members.len() == nodes.len() && nodes.iter().all(|n| c.get(&n.name).is_some()) {
                return Ok(c);
            }
        }
        let mut members = Vec::new();
        for n in nodes {
            let ip = match n.host.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => tokio::net::lookup_host((n.host.as_str(), self.tuning.redis_port))
                    .await
                    .with_context(|| format!("{}: resolving {}", n.name, n.host))?
                    .next()
                    .with_context(|| format!("{}: {} has no address", n.name, n.host))?
                    .ip(),
            };
            members.push(Member {
                name: n.name.clone(),
                ip,
            });
        }
        let c = Arc::new(Cluster { members });
        *self
            .shared
            .cluster
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn faketime_dir<'a>(&self, node: &'a NodeSpec) -> Option<&'a str> {
        self.faketime.then_some(node.workdir.as_str())
    }

    /// One Sentinel's view of the master: its address, replicas and other Sentinels
    /// known, and its flags.
    async fn sentinel_status(&self, ip: IpAddr) -> Result<SentinelStatus, String> {
        let a = SocketAddr::new(ip, self.tuning.sentinel_port);
        let mut c = Conn::connect(a, Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
        let r = c
            .call(
                &[b"SENTINEL", b"master", MASTER_NAME.as_bytes()],
                Duration::from_secs(1),
            )
            .await
            .map_err(|e| e.to_string())?;
        SentinelStatus::parse(&r)
    }
}

/// Fields of `SENTINEL master` that readiness looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelStatus {
    pub ip: String,
    pub flags: String,
    pub replicas: u64,
    pub other_sentinels: u64,
}

impl SentinelStatus {
    pub fn parse(r: &Reply) -> Result<SentinelStatus, String> {
        if let Reply::Error(e) = r {
            return Err(e.clone());
        }
        let kv = r
            .items()
            .ok_or_else(|| format!("SENTINEL master: unexpected reply {r:?}"))?;
        let field = |name: &str| {
            kv.chunks(2)
                .find(|p| p[0].text().as_deref() == Some(name))
                .and_then(|p| p.get(1)?.text())
                .ok_or_else(|| format!("SENTINEL master: no {name}"))
        };
        let num = |name: &str| {
            field(name)?
                .parse::<u64>()
                .map_err(|_| format!("SENTINEL master: bad {name}"))
        };
        Ok(SentinelStatus {
            ip: field("ip")?,
            flags: field("flags")?,
            replicas: num("num-slaves")?,
            other_sentinels: num("num-other-sentinels")?,
        })
    }
}

impl System for RedisSentinel {
    type Client = RedisClient;

    fn describe(&self) -> String {
        format!("redis-sentinel {}", self.mode)
    }

    async fn setup_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let spec = &node.spec;
        let cluster = self.cluster(all).await?;
        let me = cluster
            .get(&spec.name)
            .with_context(|| format!("{} is not among the test's nodes", spec.name))?;
        let first = cluster
            .members
            .first()
            .context("redis-sentinel needs at least one node")?;
        let paths = self.paths(spec);
        paths.check(&spec.name).map_err(anyhow::Error::msg)?;
        let t = node.remote.command_timeout().max(Duration::from_secs(300));
        node.remote
            .exec_ok(
                &config::install_script(&spec.name, self.faketime, self.lab),
                t,
            )
            .await
            .with_context(|| {
                format!(
                    "{}: checking for redis-server and redis-sentinel",
                    spec.name
                )
            })?;
        let master = (first.name != me.name).then_some(first.ip);
        let redis_conf = config::redis_conf(&paths, &self.tuning, me.ip, master);
        let sentinel_conf =
            config::sentinel_conf(&paths, &self.tuning, me.ip, first.ip, cluster.members.len());
        let q = crate::control::sh_quote;
        // A fresh start: stop daemons of an earlier run, wipe data, configs and logs
        // (Sentinel rewrites its config as it learns: never reuse one).
        let prep = format!(
            "{}; {}; rm -f {} {} {} {}; rm -rf {} && mkdir -p {} {} && \
             printf '%s' {} > {} && printf '%s' {} > {}",
            config::stop_script(&paths.redis_pid()),
            config::stop_script(&paths.sentinel_pid()),
            q(&nemesis::clock::lab_offset_file(&spec.workdir)),
            q(&paths.redis_log()),
            q(&paths.sentinel_log()),
            q(&paths.sentinel_conf()),
            q(&paths.data),
            q(&paths.data),
            q(&paths.logs),
            q(&redis_conf),
            q(&paths.redis_conf()),
            q(&sentinel_conf),
            q(&paths.sentinel_conf()),
        );
        node.remote
            .exec_ok(&prep, node.remote.command_timeout())
            .await
            .with_context(|| format!("{}: preparing {}", spec.name, paths.base))?;
        let ft = self.faketime_dir(spec);
        let start = format!(
            "{} && {}",
            config::start_redis(&paths, ft),
            config::start_sentinel(&paths, ft)
        );
        node.remote
            .exec_ok(&start, node.remote.command_timeout())
            .await
            .with_context(|| format!("{}: starting redis-server and redis-sentinel", spec.name))?;
        Ok(())
    }

    async fn await_ready(&self, nodes: &[NodeSpec], timeout: Duration) -> anyhow::Result<()> {
        let cluster = self.cluster(nodes).await?;
        let start = Instant::now();
        let n = nodes.len() as u64;
        loop {
            let roles = self.roles(nodes, Duration::from_secs(1)).await;
            let masters: Vec<&RoleView> = roles.iter().filter(|r| r.is_master).collect();
            let mut problems = Vec::new();
            if roles.len() != nodes.len() {
                problems.push(format!(
                    "{} of {} redis-servers answer ROLE",
                    roles.len(),
                    n
                ));
            }
            match masters.as_slice() {
                [m] => {
                    let strays: Vec<&str> = roles
                        .iter()
                        .filter(|r| !r.is_master && r.master.as_deref() != Some(m.node.as_str()))
                        .map(|r| r.node.as_str())
                        .collect();
                    if !strays.is_empty() {
                        problems.push(format!(
                            "{} not yet replicas of {}",
                            strays.join(","),
                            m.node
                        ));
                    }
                    if let Some(mm) = cluster.get(&m.node) {
                        for member in &cluster.members {
                            match self.sentinel_status(member.ip).await {
                                Ok(s) if s.ip == mm.ip.to_string()
                                    && s.replicas + 1 >= n
                                    && s.other_sentinels + 1 >= n
                                    && !s.flags.contains("down") => {}
                                Ok(s) => problems.push(format!(
                                    "sentinel on {}: master {} ({}), {} replicas, {} other sentinels",
                                    member.name, s.ip, s.flags, s.replicas, s.other_sentinels
                                )),
                                Err(e) => problems.push(format!("sentinel on {}: {e}", member.name)),
                            }
                        }
                    }
                }
                ms => problems.push(format!(
                    "{} nodes claim master ({})",
                    ms.len(),
                    ms.iter()
                        .map(|r| r.node.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            }
            if problems.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "redis-sentinel not ready after {timeout:?}: {}",
                    problems.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn teardown_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        let paths = self.paths(&node.spec);
        let cmd = format!(
            "{}; {}",
            config::stop_script(&paths.sentinel_pid()),
            config::stop_script(&paths.redis_pid())
        );
        node.remote
            .exec_ok(&cmd, Duration::from_secs(20))
            .await
            .with_context(|| {
                format!(
                    "{}: stopping redis-server and redis-sentinel",
                    node.spec.name
                )
            })?;
        Ok(())
    }

    async fn roles(&self, nodes: &[NodeSpec], timeout: Duration) -> Vec<RoleView> {
        if self.cluster(nodes).await.is_err() {
            return Vec::new();
        }
        let mut set = tokio::task::JoinSet::new();
        for n in nodes {
            let mut c = self.client(n);
            set.spawn(async move { c.role_view(timeout).await.ok() });
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
        let p = self.paths(node);
        // The configs too: Sentinel rewrites both as it fails over (epochs, replicaof).
        vec![
            p.redis_log(),
            p.sentinel_log(),
            p.redis_conf(),
            p.sentinel_conf(),
        ]
    }

    fn client(&self, node: &NodeSpec) -> RedisClient {
        RedisClient::new(&node.name, self.shared.clone())
    }

    fn pid_file(&self, node: &NodeSpec) -> String {
        self.paths(node).redis_pid()
    }

    fn restart_script(&self, node: &NodeSpec, _all: &[NodeSpec]) -> Option<String> {
        let paths = self.paths(node);
        let ft = self.faketime_dir(node);
        let alive = |pid: &str| {
            let p = crate::control::sh_quote(pid);
            format!("[ -f {p} ] && kill -0 \"$(cat {p})\" 2>/dev/null")
        };
        // redis-server only when none of ours is alive (a restart never doubles a
        // process), over the config Sentinel may have rewritten; Sentinel too if it died.
        Some(format!(
            "if {}; then echo 'redis-server is still running' >&2; exit 3; fi; {}; \
             if ! {}; then {}; fi",
            alive(&paths.redis_pid()),
            config::start_redis(&paths, ft),
            alive(&paths.sentinel_pid()),
            config::start_sentinel(&paths, ft),
        ))
    }

    async fn restart_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let cmd = self.restart_script(&node.spec, all).unwrap_or_default();
        node.remote
            .exec_ok(&cmd, node.remote.command_timeout())
            .await
            .with_context(|| format!("{}: restarting redis-server", node.spec.name))?;
        Ok(())
    }

    async fn version(&self, node: &NodeHandle) -> Option<String> {
        let out = node
            .remote
            .exec_ok("redis-server --version", Duration::from_secs(10))
            .await
            .ok()?;
        let line = out.stdout_str().lines().next()?.trim().to_string();
        (!line.is_empty()).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn modes_and_sentinel_status() {
        assert!(RedisSentinel::with_mode("sentinel", true).is_ok());
        let e = RedisSentinel::with_mode("raft", true)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "unknown redis-sentinel mode \"raft\" (known: sentinel, min-replicas-1)"
        );
        let r = Reply::Array(Some(
            [
                "name",
                "splitbrain",
                "ip",
                "10.77.77.11",
                "flags",
                "master",
                "num-slaves",
                "4",
                "num-other-sentinels",
                "4",
            ]
            .iter()
            .map(|s| bulk(s))
            .collect(),
        ));
        assert_eq!(
            SentinelStatus::parse(&r),
            Ok(SentinelStatus {
                ip: "10.77.77.11".into(),
                flags: "master".into(),
                replicas: 4,
                other_sentinels: 4
            })
        );
        assert!(SentinelStatus::parse(&Reply::Error("ERR No such master".into())).is_err());
        let short = Reply::Array(Some(vec![bulk("ip"), bulk("x")]));
        assert!(SentinelStatus::parse(&short)
            .unwrap_err()
            .contains("no flags"));
    }
}
