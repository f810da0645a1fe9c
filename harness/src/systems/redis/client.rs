//! The Redis client of one logical process, bound to one node, finding the master as
//! Redis's Sentinel client guidelines say: ask the Sentinels in order (the bound
//! node's own first, as for an application co-located with it) for
//! `get-master-addr-by-name`, verify the answer with `ROLE`, move a Sentinel that
//! answered to the head of the list, drop the connection on `-READONLY`, `-MOVED`,
//! `-MASTERDOWN`, `-LOADING` or a lost connection. Like the clients that follow
//! `+switch-master` (Jedis, Lettuce), it re-asks its Sentinel at most once a second
//! and switches when the answer changes. Also each node's role view (`ROLE` plus the
//! node's own Sentinel) for leader observation.

use super::config::{Tuning, MASTER_NAME};
use super::resp::{CallError, Conn, Reply};
use super::view::{
    attribution, list_ints, lost_master, parse_role, parse_sentinel, refused, register, served,
    sorted_ints, Cluster, ParseFn, SentinelView,
};
use crate::systems::{Outcome, RoleView, SystemClient};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use workloads::{Invocation, OpFn};

/// How often a client re-asks its Sentinel who the master is.
pub const REVALIDATE: Duration = Duration::from_secs(1);

/// Compare-and-set of a register in one script: 1 when it swapped, 0 when not.
const CAS_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// One node of the cluster: its name and the address its servers bind.
/// What the system and its clients share: ports, timeouts, and the resolved cluster
/// (known from the first setup or role query on).
pub struct Shared {
    pub tuning: Tuning,
    pub connect_timeout: Duration,
    pub cluster: RwLock<Option<Arc<Cluster>>>,
}

impl Shared {
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The master a client writes to: verified by `ROLE` when connected.
struct Master {
    node: String,
    /// The Sentinel configuration epoch that named it.
    epoch: Option<u64>,
    conn: Conn,
    checked: Instant,
}

pub struct RedisClient {
    node: String,
    shared: Arc<Shared>,
    /// Sentinels to ask, by node name; the head answered last.
    sentinels: Vec<String>,
    master: Option<Master>,
    sentinel: Option<(String, Conn)>,
    local: Option<Conn>,
    local_sentinel: Option<Conn>,
}

fn addr(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

impl RedisClient {
    pub fn new(node: &str, shared: Arc<Shared>) -> RedisClient {
        let mut sentinels: Vec<String> = shared
            .cluster()
            .map(|c| c.members.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        // The bound node's own Sentinel first, then the others in order.
        sentinels.retain(|n| n != node);
        sentinels.insert(0, node.to_string());
        RedisClient {
            node: node.to_string(),
            shared,
            sentinels,
            master: None,
            sentinel: None,
            local: None,
            local_sentinel: None,
        }
    }

    fn cluster(&self) -> Result<Arc<Cluster>, String> {
        self.shared
            .cluster()
            .ok_or_else(|| "redis: node addresses unknown (the system was not set up)".into())
    }

    fn member(&self, cluster: &Cluster, name: &str) -> Result<IpAddr, String> {
        cluster
            .get(name)
            .map(|m| m.ip)
            .ok_or_else(|| format!("{name} is no node of this test"))
    }

    fn connect_timeout(&self, deadline: Instant) -> Duration {
        self.shared
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    }

    /// Asks one Sentinel who the master is, keeping its connection.
    async fn ask(&mut self, name: &str, deadline: Instant) -> Result<SentinelView, String> {
        let cluster = self.cluster()?;
        let ip = self.member(&cluster, name)?;
        if self.sentinel.as_ref().is_none_or(|(n, _)| n != name) {
            let c = Conn::connect(
                addr(ip, self.shared.tuning.sentinel_port),
                self.connect_timeout(deadline),
            )
            .await
            .map_err(|e| e.to_string())?;
            self.sentinel = Some((name.to_string(), c));
        }
        let Some((_, conn)) = self.sentinel.as_mut() else {
            return Err("no sentinel connection".into());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let r = sentinel_master(conn, left).await;
        match r {
            Ok(replies) => parse_sentinel(&replies, &cluster).map_err(|e| format!("{name}: {e}")),
            Err(e) => {
                self.sentinel = None;
                Err(format!("sentinel on {name}: {e}"))
            }
        }
    }

    /// Connects to `view.master` and keeps it when `ROLE` says master.
    async fn verify(&mut self, view: &SentinelView, deadline: Instant) -> Result<Master, String> {
        let cluster = self.cluster()?;
        let ip = self.member(&cluster, &view.master)?;
        let mut conn = Conn::connect(
            addr(ip, self.shared.tuning.redis_port),
            self.connect_timeout(deadline),
        )
        .await
        .map_err(|e| e.to_string())?;
        let left = deadline.saturating_duration_since(Instant::now());
        let role = conn
            .call(&[b"ROLE"], left)
            .await
            .map_err(|e| format!("ROLE on {}: {e}", view.master))?;
        let role = parse_role(&role, &view.master, &cluster)?;
        if !role.is_master {
            return Err(format!(
                "sentinel named {} but its ROLE is replica",
                view.master
            ));
        }
        Ok(Master {
            node: view.master.clone(),
            epoch: view.epoch,
            conn,
            checked: Instant::now(),
        })
    }

    /// Finds the master through the Sentinels, in order.
    async fn discover(&mut self, deadline: Instant) -> Result<(), String> {
        let mut reasons = Vec::new();
        for i in 0..self.sentinels.len() {
            if Instant::now() >= deadline {
                reasons.push("out of time".to_string());
                break;
            }
            let name = self.sentinels[i].clone();
            let found = match self.ask(&name, deadline).await {
                Ok(view) => self.verify(&view, deadline).await,
                Err(e) => Err(e),
            };
            match found {
                Ok(m) => {
                    let s = self.sentinels.remove(i);
                    self.sentinels.insert(0, s);
                    self.master = Some(m);
                    return Ok(());
                }
                Err(e) => reasons.push(e),
            }
        }
        Err(format!("no master found: {}", reasons.join("; ")))
    }

    /// A verified master, re-asking the head Sentinel when the last check is older
    /// than [`REVALIDATE`]; nothing has been sent when this fails.
    async fn master(&mut self, deadline: Instant) -> Result<&mut Master, String> {
        let stale = self
            .master
            .as_ref()
            .is_some_and(|m| m.checked.elapsed() >= REVALIDATE);
        if stale {
            let head = self.sentinels[0].clone();
            let current = self.master.as_ref().map(|m| (m.node.clone(), m.epoch));
            match self.ask(&head, deadline).await {
                Ok(v) if current == Some((v.master.clone(), v.epoch)) => {
                    if let Some(m) = self.master.as_mut() {
                        m.checked = Instant::now();
                    }
                }
                // A new answer, or the Sentinel is gone: find the master afresh,
                // keeping the old one only if no Sentinel answers at all.
                _ => {
                    let old = self.master.take();
                    if self.discover(deadline).await.is_err() {
                        self.master = old.map(|mut m| {
                            m.checked = Instant::now();
                            m
                        });
                    }
                }
            }
        }
        if self.master.is_none() {
            self.discover(deadline).await?;
        }
        self.master.as_mut().ok_or_else(|| "no master".to_string())
    }

    /// This node's `ROLE` and its own Sentinel's view.
    pub async fn role_view(&mut self, timeout: Duration) -> Result<RoleView, String> {
        let deadline = Instant::now() + timeout;
        let cluster = self.cluster()?;
        let ip = self.member(&cluster, &self.node)?;
        let t = self.shared.tuning;
        if self.local.is_none() {
            self.local = Some(
                Conn::connect(addr(ip, t.redis_port), self.connect_timeout(deadline))
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(conn) = self.local.as_mut() else {
            return Err("no connection".into());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let role = match conn.call(&[b"ROLE"], left).await {
            Ok(r) => parse_role(&r, &self.node, &cluster)?,
            Err(e) => {
                self.local = None;
                return Err(e.to_string());
            }
        };
        let view = self.local_sentinel_view(ip, deadline, &cluster).await.ok();
        // The epoch is the node's own Sentinel's configuration epoch, and only while
        // that Sentinel agrees about who the master is.
        let epoch = view
            .as_ref()
            .filter(|v| role.master.as_deref() == Some(v.master.as_str()))
            .and_then(|v| v.epoch);
        Ok(RoleView {
            node: self.node.clone(),
            is_master: role.is_master,
            epoch,
            master: role.master,
        })
    }

    async fn local_sentinel_view(
        &mut self,
        ip: IpAddr,
        deadline: Instant,
        cluster: &Cluster,
    ) -> Result<SentinelView, String> {
        if self.local_sentinel.is_none() {
            let c = Conn::connect(
                addr(ip, self.shared.tuning.sentinel_port),
                self.connect_timeout(deadline),
            )
            .await
            .map_err(|e| e.to_string())?;
            self.local_sentinel = Some(c);
        }
        let Some(conn) = self.local_sentinel.as_mut() else {
            return Err("no connection".into());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match sentinel_master(conn, left).await {
            Ok(r) => parse_sentinel(&r, cluster),
            Err(e) => {
                self.local_sentinel = None;
                Err(e.to_string())
            }
        }
    }

    /// A final read: this node's own copy, whatever its role.
    async fn final_read(&mut self, cmd: &[&[u8]], timeout: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + timeout;
        let cluster = self.cluster()?;
        let ip = self.member(&cluster, &self.node)?;
        if self.local.is_none() {
            self.local = Some(
                Conn::connect(
                    addr(ip, self.shared.tuning.redis_port),
                    self.connect_timeout(deadline),
                )
                .await
                .map_err(|e| e.to_string())?,
            );
        }
        let Some(conn) = self.local.as_mut() else {
            return Err("no connection".into());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.call(cmd, left).await {
            Ok(Reply::Error(e)) => Err(e),
            Ok(r) => Ok(r),
            Err(e) => {
                self.local = None;
                Err(e.to_string())
            }
        }
    }

    /// Sends `cmd` to the master; `Ok` with the reply and the master's node and epoch.
    async fn on_master(
        &mut self,
        cmd: &[&[u8]],
        timeout: Duration,
    ) -> Result<(Reply, String, Option<u64>), Outcome> {
        let deadline = Instant::now() + timeout;
        let m = match self.master(deadline).await {
            Ok(m) => m,
            Err(error) => return Err(Outcome::unavailable(error)),
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (node, epoch) = (m.node.clone(), m.epoch);
        match m.conn.call(cmd, left).await {
            Ok(Reply::Error(e)) => {
                if lost_master(&e) {
                    self.master = None;
                }
                let error = format!("{node}: {e}");
                Err(match refused(&e) {
                    Some(kind) => Outcome::Fail { error, kind },
                    None => Outcome::Info { error },
                })
            }
            Ok(r) => Ok((r, node, epoch)),
            Err(e) => {
                self.master = None;
                let error = format!("{node}: {e}");
                Err(match e {
                    CallError::NotSent(_) => Outcome::unavailable(error),
                    CallError::Unknown(_) => Outcome::Info { error },
                })
            }
        }
    }

    async fn write(&mut self, cmd: &[&[u8]], value: Value, timeout: Duration) -> Outcome {
        match self.on_master(cmd, timeout).await {
            Ok((Reply::Int(_) | Reply::Status(_), node, epoch)) => Outcome::Ok {
                value,
                extra: attribution(&node, epoch),
            },
            Ok((r, node, _)) => Outcome::Info {
                error: format!("{node}: unexpected reply {r:?}"),
            },
            Err(o) => o,
        }
    }

    /// A read on the master; any failure is `fail` (a read changes nothing): a reply
    /// that is not what the op reads is `rejected`, no usable answer `unavailable`.
    async fn read(&mut self, cmd: &[&[u8]], timeout: Duration, parse: ParseFn) -> Outcome {
        match self.on_master(cmd, timeout).await {
            Ok((r, node, epoch)) => match parse(&r) {
                Ok(value) => Outcome::Ok {
                    value,
                    extra: served(&node, "master", epoch),
                },
                Err(error) => Outcome::rejected(error),
            },
            Err(Outcome::Info { error }) => Outcome::unavailable(error),
            Err(o) => o,
        }
    }
}

impl SystemClient for RedisClient {
    async fn invoke(&mut self, inv: &Invocation, timeout: Duration) -> Outcome {
        let key = inv.key.clone().unwrap_or_default();
        let k = key.as_bytes();
        let int = |v: &Value| v.as_i64().map(|i| i.to_string());
        if inv.is_final {
            let (cmd, parse): (Vec<&[u8]>, ParseFn) = match inv.f {
                OpFn::Read => (vec![b"SMEMBERS", k], sorted_ints),
                OpFn::ReadList => (vec![b"LRANGE", k, b"0", b"-1"], list_ints),
                OpFn::ReadRegister => (vec![b"GET", k], register),
                other => {
                    return Outcome::rejected(format!("{} cannot be a final read", other.as_str()))
                }
            };
            return match self.final_read(&cmd, timeout).await {
                Ok(r) => match parse(&r) {
                    Ok(value) => Outcome::Ok {
                        value,
                        extra: served(&self.node, "local", None),
                    },
                    Err(error) => Outcome::rejected(error),
                },
                Err(error) => Outcome::unavailable(format!("{}: {error}", self.node)),
            };
        }
        match inv.f {
            OpFn::Role => match self.role_view(timeout).await {
                Ok(v) => Outcome::Ok {
                    value: json!({
                        "role": if v.is_master { "master" } else { "replica" },
                        "epoch": v.epoch,
                        "master": v.master,
                    }),
                    extra: Map::new(),
                },
                Err(error) => Outcome::unavailable(error),
            },
            OpFn::Add | OpFn::Write | OpFn::Append => {
                let Some(v) = int(&inv.value) else {
                    return Outcome::rejected(format!(
                        "{} of a non-integer {}",
                        inv.f.as_str(),
                        inv.value
                    ));
                };
                let verb: &[u8] = match inv.f {
                    OpFn::Add => b"SADD",
                    OpFn::Append => b"RPUSH",
                    _ => b"SET",
                };
                self.write(&[verb, k, v.as_bytes()], inv.value.clone(), timeout)
                    .await
            }
            OpFn::Cas => {
                let pair = inv.value.as_array().and_then(|p| match p.as_slice() {
                    [a, b] => Some((int(a)?, int(b)?)),
                    _ => None,
                });
                let Some((from, to)) = pair else {
                    return Outcome::rejected(format!(
                        "cas needs [from, to] integers, got {}",
                        inv.value
                    ));
                };
                let cmd: [&[u8]; 6] = [
                    b"EVAL",
                    CAS_SCRIPT.as_bytes(),
                    b"1",
                    k,
                    from.as_bytes(),
                    to.as_bytes(),
                ];
                match self.on_master(&cmd, timeout).await {
                    Ok((Reply::Int(1), node, epoch)) => Outcome::Ok {
                        value: inv.value.clone(),
                        extra: attribution(&node, epoch),
                    },
                    Ok((Reply::Int(0), node, _)) => {
                        Outcome::rejected(format!("{node}: cas: the register does not hold {from}"))
                    }
                    Ok((r, node, _)) => Outcome::Info {
                        error: format!("{node}: unexpected cas reply {r:?}"),
                    },
                    Err(o) => o,
                }
            }
            OpFn::Read => self.read(&[b"SMEMBERS", k], timeout, sorted_ints).await,
            OpFn::ReadList => {
                self.read(&[b"LRANGE", k, b"0", b"-1"], timeout, list_ints)
                    .await
            }
            OpFn::ReadRegister => self.read(&[b"GET", k], timeout, register).await,
        }
    }
}

/// Asks a Sentinel for the master's address (`get-master-addr-by-name`) and its
/// record (`SENTINEL master`, with the config epoch), in one round trip.
async fn sentinel_master(conn: &mut Conn, timeout: Duration) -> Result<Vec<Reply>, CallError> {
    let cmds: [&[&[u8]]; 2] = [
        &[
            b"SENTINEL",
            b"get-master-addr-by-name",
            MASTER_NAME.as_bytes(),
        ],
        &[b"SENTINEL", b"master", MASTER_NAME.as_bytes()],
    ];
    conn.pipeline(&cmds, timeout).await
}
