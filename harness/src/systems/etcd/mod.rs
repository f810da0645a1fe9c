//! etcd (Raft) as a system under test: Debian's etcd-server (installed with apt-get
//! over SSH when missing), a static cluster of every node bootstrapped from one
//! config file per node with lab-sized Raft timers, one `etcd` process per node
//! started and stopped by the harness (never the Debian service), roles from each
//! member's Raft status, and a client over etcd 3.4's JSON gateway ([`client`]).
//! Every workload is served: set adds and list appends are one put per element
//! (`<key>/<element>`), registers are single keys with compare-and-set transactions.

pub mod api;
pub mod client;
pub mod http;

use super::{NodeHandle, RoleView, System, SystemOptions};
use crate::control::{sh_quote, Remote};
use crate::nodes::NodeSpec;
use anyhow::{bail, Context};
use client::{EtcdClient, SharedMembers};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client (and gateway) port.
pub const CLIENT_PORT: u16 = 2379;
/// Raft peer port.
pub const PEER_PORT: u16 = 2380;
/// The only mode: etcd is Raft.
pub const MODES: &[&str] = &["raft"];
/// Raft timers for a lab or a LAN (etcd's defaults are 100 ms and 1000 ms as well;
/// written out so that runs do not depend on the package's defaults).
pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MS: u64 = 1000;
/// Where data lives on VMs (the lab keeps it under each node's workdir).
pub const VM_DIR: &str = "/var/lib/splitbrain/etcd";
pub const VM_LOG: &str = "/var/log/splitbrain/etcd.log";

/// The warning a lab run under clock faults carries (stderr and every report).
pub const LAB_CLOCK_NOTE: &str = "clock faults do not reach etcd on the lab: the lab's nodes share one system clock and skew processes only through libfaketime, which Go programs such as etcd ignore (they read time through the vDSO); the clock nemesis ran but etcd saw no skew. On VMs clock faults set each node's clock and do reach etcd";

pub struct Etcd {
    /// Nodes are the local lab (files under each node's workdir).
    pub lab: bool,
    notes: Vec<String>,
    members: SharedMembers,
    addrs: Mutex<HashMap<String, SocketAddr>>,
    pub connect_timeout: Duration,
    /// This run's `initial-cluster-token`: a member set up fresh while an earlier
    /// cluster still runs on the other nodes (a run with `--leave-db-running`, a
    /// crashed controller) gets a new member id instead of being refused as
    /// "already bootstrapped" by the old peers.
    token: String,
}

impl Etcd {
    pub fn new(opts: &SystemOptions) -> anyhow::Result<Etcd> {
        if !MODES.contains(&opts.spec.mode.as_str()) {
            bail!(
                "unknown etcd mode {:?} (known: {})",
                opts.spec.mode,
                MODES.join(", ")
            );
        }
        let mut notes = Vec::new();
        if opts.lab && opts.clock_faults {
            notes.push(LAB_CLOCK_NOTE.to_string());
        }
        Ok(Etcd {
            lab: opts.lab,
            notes,
            members: SharedMembers::default(),
            addrs: Mutex::new(HashMap::new()),
            connect_timeout: Duration::from_secs(1),
            token: format!(
                "splitbrain-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        })
    }

    fn dir(&self, node: &NodeSpec) -> String {
        if self.lab {
            format!("{}/etcd", node.workdir.trim_end_matches('/'))
        } else {
            VM_DIR.to_string()
        }
    }

    fn log_file(&self, node: &NodeSpec) -> String {
        if self.lab {
            format!("{}/etcd.log", self.dir(node))
        } else {
            VM_LOG.to_string()
        }
    }

    /// The address clients use for `node`, resolved once.
    fn addr(&self, node: &NodeSpec) -> Result<SocketAddr, String> {
        let mut cache = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = cache.get(&node.name) {
            return Ok(*a);
        }
        let a = match node.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, CLIENT_PORT),
            Err(_) => (node.host.as_str(), CLIENT_PORT)
                .to_socket_addrs()
                .map_err(|e| format!("{}: resolving {}: {e}", node.name, node.host))?
                .next()
                .ok_or_else(|| format!("{}: {} has no address", node.name, node.host))?,
        };
        cache.insert(node.name.clone(), a);
        Ok(a)
    }

    /// The node's config file: a static bootstrap of every node.
    fn config(&self, node: &NodeSpec, all: &[NodeSpec], listen: IpAddr) -> String {
        let cluster = all
            .iter()
            .map(|n| format!("{}=http://{}:{PEER_PORT}", n.name, n.host))
            .collect::<Vec<_>>()
            .join(",");
        let listen = match listen {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let q = yaml_quote;
        format!(
            "# Written by splitbrain for one test run; started by the harness, not systemd.\n\
             name: {name}\n\
             data-dir: {data}\n\
             listen-peer-urls: {lpeer}\n\
             listen-client-urls: {lclient}\n\
             initial-advertise-peer-urls: {apeer}\n\
             advertise-client-urls: {aclient}\n\
             initial-cluster: {cluster}\n\
             initial-cluster-state: 'new'\n\
             initial-cluster-token: {token}\n\
             heartbeat-interval: {HEARTBEAT_MS}\n\
             election-timeout: {ELECTION_MS}\n\
             enable-v2: false\n\
             enable-grpc-gateway: true\n\
             logger: 'zap'\n\
             log-outputs: ['stderr']\n",
            name = q(&node.name),
            data = q(&format!("{}/data", self.dir(node))),
            lpeer = q(&format!("http://{listen}:{PEER_PORT}")),
            lclient = q(&format!("http://{listen}:{CLIENT_PORT}")),
            apeer = q(&format!("http://{}:{PEER_PORT}", node.host)),
            aclient = q(&format!("http://{}:{CLIENT_PORT}", node.host)),
            cluster = q(&cluster),
            token = q(&self.token),
        )
    }

    /// Starts etcd on `node` over its data directory (fails with the log's tail when
    /// the process is gone half a second later).
    fn start_script(&self, node: &NodeSpec) -> String {
        let dir = sh_quote(&self.dir(node));
        let conf = sh_quote(&format!("{}/etcd.conf.yml", self.dir(node)));
        let pid = sh_quote(&self.pid_file(node));
        let log = sh_quote(&self.log_file(node));
        // The message quoted whole: a quoted path inside a double-quoted string would
        // end that string at a `"` in the path.
        let exited = sh_quote(&format!(
            "etcd exited at once; last lines of {}:",
            self.log_file(node)
        ));
        format!(
            "cd {dir} || exit 3; nohup etcd --config-file {conf} >> {log} 2>&1 < /dev/null & echo $! > {pid}; \
             sleep 0.5; if ! kill -0 \"$(cat {pid})\" 2>/dev/null; then \
             echo {exited} >&2; tail -n 15 {log} >&2; exit 3; fi"
        )
    }

    async fn ensure_installed(&self, node: &NodeHandle) -> anyhow::Result<()> {
        let name = &node.spec.name;
        let found = node
            .remote
            .exec("command -v etcd", Duration::from_secs(15))
            .await
            .with_context(|| format!("{name}: looking for etcd"))?;
        if found.success() {
            return Ok(());
        }
        if self.lab {
            bail!(
                "{name}: etcd is not installed, and the lab's namespaces have no route to a package mirror: install it on this machine (apt-get install -y etcd-server etcd-client)"
            );
        }
        let install = "DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server 2>&1 | tail -n 5 && command -v etcd";
        let out = node
            .remote
            .exec(install, Duration::from_secs(300))
            .await
            .with_context(|| format!("{name}: installing etcd-server"))?;
        if !out.success() {
            bail!(
                "{name}: etcd-server is missing and `apt-get install -y etcd-server` failed: {}",
                out.stdout_str().trim()
            );
        }
        Ok(())
    }

    /// The member's Raft status, or why not.
    async fn status_of(
        &self,
        node: &NodeSpec,
        timeout: Duration,
    ) -> Result<api::RaftStatus, String> {
        self.client(node).raft_status(timeout).await
    }
}

/// A YAML double-quoted scalar that reads back as exactly `s` (a workdir may hold
/// quotes, `#`, `: `, a newline or other control characters): `"` and `\` escaped,
/// and everything outside YAML's printable set, or a line break to YAML 1.1 (NEL,
/// U+2028, U+2029), or a byte-order mark, as `\uXXXX` / `\UXXXXXXXX`.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\u{2028}' | '\u{2029}' | '\u{feff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'.. => out.push(c),
            // The rest are in the Basic Multilingual Plane: four hex digits.
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Shell text that stops the process whose pid file is `pid`: TERM, up to 5 s, KILL.
fn stop_script(pid: &str) -> String {
    let pid = sh_quote(pid);
    format!(
        "if [ -f {pid} ]; then p=$(cat {pid}); if kill -0 \"$p\" 2>/dev/null; then kill -TERM \"$p\"; \
         for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; \
         kill -KILL \"$p\" 2>/dev/null || true; fi; rm -f {pid}; fi"
    )
}

/// `etcd 3.4.23 (go1.19.8)` from the output of `etcd --version`.
pub fn parse_version(out: &str) -> Option<String> {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let v = field("etcd Version:")?;
    Some(match field("Go Version:") {
        Some(go) => format!("etcd {v} ({go})"),
        None => format!("etcd {v}"),
    })
}

impl System for Etcd {
    type Client = EtcdClient;

    fn describe(&self) -> String {
        "etcd raft".to_string()
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn version(&self, node: &NodeHandle) -> Option<String> {
        let out = node
            .remote
            .exec("etcd --version", Duration::from_secs(10))
            .await
            .ok()?;
        parse_version(&out.stdout_str())
    }

    async fn setup_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let spec = &node.spec;
        self.ensure_installed(node).await?;
        let listen = self.addr(spec).map_err(anyhow::Error::msg)?.ip();
        let dir = self.dir(spec);
        let conf = format!("{dir}/etcd.conf.yml");
        let log = self.log_file(spec);
        let log_dir = log.rsplit_once('/').map_or(".", |(d, _)| d).to_string();
        // A fresh cluster: stop an earlier etcd of ours, wipe its data and log.
        let prep = format!(
            "{}; rm -rf {data} && mkdir -p {data} {logdir} && chmod 700 {data} && : > {log} && printf %s {text} > {conf}",
            stop_script(&self.pid_file(spec)),
            data = sh_quote(&format!("{dir}/data")),
            logdir = sh_quote(&log_dir),
            log = sh_quote(&log),
            text = sh_quote(&self.config(spec, all, listen)),
            conf = sh_quote(&conf),
        );
        let t = node.remote.command_timeout();
        node.remote
            .exec_ok(&prep, t)
            .await
            .with_context(|| format!("{}: preparing {dir}", spec.name))?;
        node.remote
            .exec_ok(&self.start_script(spec), t)
            .await
            .with_context(|| format!("{}: starting etcd", spec.name))?;
        Ok(())
    }

    async fn await_ready(&self, nodes: &[NodeSpec], timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let mut views = Vec::new();
            for n in nodes {
                views.push((
                    n.name.clone(),
                    self.status_of(n, Duration::from_secs(1)).await,
                ));
            }
            let ok: Vec<&api::RaftStatus> =
                views.iter().filter_map(|(_, s)| s.as_ref().ok()).collect();
            let agreed = ok.len() == nodes.len()
                && ok
                    .iter()
                    .all(|s| s.lead != 0 && s.lead == ok[0].lead && s.term == ok[0].term)
                && ok.iter().filter(|s| s.is_leader).count() == 1;
            if agreed {
                // The gateway serves a linearizable read on every member.
                let mut all_read = true;
                for n in nodes {
                    let inv = workloads::Invocation {
                        f: workloads::OpFn::ReadRegister,
                        key: Some("splitbrain-ready".into()),
                        value: serde_json::Value::Null,
                        is_final: false,
                    };
                    let out = crate::systems::SystemClient::invoke(
                        &mut self.client(n),
                        &inv,
                        Duration::from_secs(2),
                    )
                    .await;
                    all_read &= matches!(out, crate::systems::Outcome::Ok { .. });
                }
                if all_read {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                let states: Vec<String> = views
                    .iter()
                    .map(|(n, s)| match s {
                        Ok(s) => format!(
                            "{n}: term {} {}",
                            s.term,
                            if s.is_leader {
                                "leader"
                            } else if s.lead == 0 {
                                "no leader"
                            } else {
                                "follower"
                            }
                        ),
                        Err(e) => format!("{n}: {e}"),
                    })
                    .collect();
                bail!(
                    "etcd not ready after {timeout:?} (every member must answer and follow one leader): {}; see each node's etcd.log",
                    states.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn teardown_node(&self, node: &NodeHandle) -> anyhow::Result<()> {
        node.remote
            .exec_ok(
                &stop_script(&self.pid_file(&node.spec)),
                Duration::from_secs(15),
            )
            .await
            .with_context(|| format!("{}: stopping etcd", node.spec.name))?;
        Ok(())
    }

    async fn roles(&self, nodes: &[NodeSpec], timeout: Duration) -> Vec<RoleView> {
        let mut set = tokio::task::JoinSet::new();
        for n in nodes {
            let mut c = self.client(n);
            let name = n.name.clone();
            set.spawn(async move { (name, c.raft_status(timeout).await) });
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok((node, Ok(s))) = r {
                got.push((node, s));
            }
        }
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<RoleView> = got
            .into_iter()
            .map(|(node, s)| RoleView {
                node,
                is_master: s.is_leader,
                epoch: Some(s.term),
                master: members.name(s.lead).map(str::to_string),
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn log_paths(&self, node: &NodeSpec) -> Vec<String> {
        vec![
            self.log_file(node),
            format!("{}/etcd.conf.yml", self.dir(node)),
        ]
    }

    fn client(&self, node: &NodeSpec) -> EtcdClient {
        EtcdClient::new(
            &node.name,
            self.addr(node),
            self.connect_timeout,
            self.members.clone(),
        )
    }

    fn pid_file(&self, node: &NodeSpec) -> String {
        format!("{}/etcd.pid", self.dir(node))
    }

    fn restart_script(&self, node: &NodeSpec, _all: &[NodeSpec]) -> Option<String> {
        let pid = sh_quote(&self.pid_file(node));
        // Only when no etcd of ours is alive: a restart never doubles a process.
        Some(format!(
            "if [ -f {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then echo 'etcd is still running' >&2; exit 3; fi; {}",
            self.start_script(node)
        ))
    }

    async fn restart_node(&self, node: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
        let cmd = self.restart_script(&node.spec, all).unwrap_or_default();
        node.remote
            .exec_ok(&cmd, node.remote.command_timeout())
            .await
            .with_context(|| format!("{}: restarting etcd", node.spec.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::{SystemKind, SystemSpec};

    fn opts(mode: &str, lab: bool, clock: bool) -> SystemOptions {
        SystemOptions {
            spec: SystemSpec {
                kind: SystemKind::Etcd,
                mode: mode.into(),
            },
            lab,
            clock_faults: clock,
            zoo_binary: Default::default(),
        }
    }

    fn node(name: &str, host: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            host: host.into(),
            port: 22,
            user: None,
            workdir: format!("/var/lib/splitbrain/lab/work/{name}"),
        }
    }

    #[test]
    fn config_bootstraps_every_node_with_lab_timers() {
        let e = Etcd::new(&opts("raft", true, false)).unwrap();
        let all = [node("n1", "10.77.77.11"), node("n2", "10.77.77.12")];
        let c = e.config(&all[1], &all, "10.77.77.12".parse().unwrap());
        assert!(c.contains("name: \"n2\"\n"), "{c}");
        assert!(c.contains("data-dir: \"/var/lib/splitbrain/lab/work/n2/etcd/data\"\n"));
        assert!(c.contains("listen-client-urls: \"http://10.77.77.12:2379\"\n"));
        assert!(c.contains(
            "initial-cluster: \"n1=http://10.77.77.11:2380,n2=http://10.77.77.12:2380\"\n"
        ));
        assert!(c.contains("heartbeat-interval: 100\n") && c.contains("election-timeout: 1000\n"));
        assert!(
            c.contains("enable-grpc-gateway: true\n"),
            "a config file turns the gateway off unless asked"
        );
        assert!(c.contains(&format!("initial-cluster-token: \"{}\"\n", e.token)));
        let again = Etcd::new(&opts("raft", true, false)).unwrap();
        assert_ne!(e.token, again.token, "each run bootstraps its own cluster");
        assert_eq!(
            e.pid_file(&all[0]),
            "/var/lib/splitbrain/lab/work/n1/etcd/etcd.pid"
        );
        let vm = Etcd::new(&opts("raft", false, false)).unwrap();
        assert_eq!(vm.pid_file(&all[0]), "/var/lib/splitbrain/etcd/etcd.pid");
        assert_eq!(vm.log_paths(&all[0])[0], VM_LOG);
    }

    #[test]
    fn clock_faults_on_the_lab_carry_a_note_and_bad_modes_fail() {
        assert_eq!(
            Etcd::new(&opts("raft", true, true)).unwrap().notes(),
            vec![LAB_CLOCK_NOTE]
        );
        assert!(Etcd::new(&opts("raft", false, true))
            .unwrap()
            .notes()
            .is_empty());
        assert!(Etcd::new(&opts("raft", true, false))
            .unwrap()
            .notes()
            .is_empty());
        let e = Etcd::new(&opts("paxos", true, false)).err().unwrap();
        assert_eq!(e.to_string(), "unknown etcd mode \"paxos\" (known: raft)");
    }

    #[test]
    fn yaml_quote_escapes_what_yaml_would_not_read_back() {
        assert_eq!(yaml_quote("/w/n1"), "\"/w/n1\"");
        assert_eq!(
            yaml_quote("a\"b\\c\nd\te\u{7f}f\u{85}g\u{2028}é☃"),
            "\"a\\\"b\\\\c\\u000ad\\u0009e\\u007ff\\u0085g\\u2028é☃\""
        );
        assert_eq!(yaml_quote("\u{fffe}"), "\"\\ufffe\"");
    }

    #[test]
    fn version_line() {
        let out = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\nGo OS/Arch: linux/amd64\n";
        assert_eq!(
            parse_version(out).as_deref(),
            Some("etcd 3.4.23 (go1.19.8)")
        );
        assert_eq!(parse_version("bash: etcd: command not found"), None);
    }
}
