//! The masterless ring modes: any node accepts any write. It reads its own copy of
//! the key, computes the whole new value (the set with the element added, the list
//! with it appended, the register's new value), stamps it, keeps it when it survives
//! against the versions held, acknowledges at once and pushes it to every peer in
//! the background ([`store`] decides what survives).
//!
//! - `lww-ring` (Cassandra-like, flawed): the stamp is the wall clock (plus
//!   `--clock-offset-ms`) and the node name; the larger wins everywhere. Concurrent
//!   writes to a key on two nodes lose one, and a node whose clock is behind has its
//!   acknowledged writes silently discarded — even locally.
//! - `vclock-ring` (Dynamo/Riak-like): the stamp is a vector clock; a write replaces
//!   the versions it has seen, concurrent ones are kept as siblings and merged on
//!   read (sets and lists by union, registers report every sibling and the largest).
//!   No acknowledged add or append is lost; register writes are not linearizable.
//!
//! Reads are always this node's own copy.

mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::Config;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::modes::Mode;
use crate::peers::PeerPool;
use crate::proto::{
    CasAck, Element, ErrorCode, ErrorReply, Lineage, ObjectKind, ReadReply, RegisterReply, Request,
    Response, RoleInfo, RoleKind, VersionedWrite, WriteAck,
};
use crate::server::{stopped, Handler, Reply};

use self::store::{Policy, RingStore};

/// Most writes pushed in one gossip message.
const MAX_BATCH: usize = 500;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One node of a ring mode.
pub struct RingNode {
    policy: Policy,
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    peers: PeerPool,
    ring: Mutex<RingStore>,
    kick: watch::Sender<u64>,
    stopping: AtomicBool,
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

impl RingNode {
    fn open(policy: Policy, cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
        let (ring, records, torn) = RingStore::open(&cfg, policy)?;
        log_event!(
            log,
            "start",
            "mode={} data_dir={} records={records} torn_bytes={torn} keys={} own_writes={} clock_offset_ms={}",
            policy_name(policy),
            cfg.data_dir.display(),
            ring.keys(),
            ring.own.len(),
            cfg.clock_offset_ms
        );
        let (kick, _) = watch::channel(0);
        Ok(Arc::new(RingNode {
            policy,
            peers: PeerPool::new(cfg.peers(), cfg.peer_timeout),
            cfg,
            log,
            ring: Mutex::new(ring),
            kick,
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        for peer in self.peers.names() {
            tokio::spawn(self.clone().push_loop(peer.clone(), shutdown.clone()));
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let ring = lock(&self.ring);
        match ring.sync() {
            Ok(()) => log_event!(self.log, "stop", "data synced keys={}", ring.keys()),
            Err(e) => log_event!(self.log, "stop", "final fsync failed: {e}"),
        }
    }

    /// This node's wall clock plus `--clock-offset-ms`, in ms since the Unix epoch.
    fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        real.saturating_add(self.cfg.clock_offset_ms).max(0) as u64
    }

    fn role_info(&self) -> RoleInfo {
        let ring = lock(&self.ring);
        RoleInfo {
            node: self.cfg.node.clone(),
            // Every node accepts writes: each is a master of the ring.
            role: RoleKind::Master,
            epoch: 0,
            master: Some(self.cfg.node.clone()),
            lineage: Lineage {
                epoch: 0,
                node: self.cfg.node.clone(),
            },
            offset: ring.own.len() as u64,
            commit: None,
            control: None,
        }
    }

    /// Accepts a client write: new whole value from the local copy, stamped now.
    fn write(&self, request: &Request) -> Response {
        let mut ring = lock(&self.ring);
        let (key, kind) = match request {
            Request::Add { key, .. } => (key, ObjectKind::Set),
            Request::Append { key, .. } => (key, ObjectKind::List),
            Request::Write { key, .. } | Request::Cas { key, .. } => (key, ObjectKind::Register),
            other => {
                return error(
                    ErrorCode::BadRequest,
                    format!("{} is not a write", other.op_name()),
                )
            }
        };
        let current = match ring.current(key, kind) {
            Ok(c) => c,
            Err(e) => return error(ErrorCode::WrongType, e),
        };
        let mut values = current.values;
        match request {
            Request::Add { value, .. } => {
                if let Err(pos) = values.binary_search(value) {
                    values.insert(pos, *value);
                }
            }
            Request::Append { value, .. } => values.push(*value),
            Request::Write { value, .. } => values = vec![*value],
            Request::Cas { from, to, .. } => {
                if values.first() != Some(from) || !current.siblings.is_empty() {
                    return error(
                        ErrorCode::CasMismatch,
                        format!("cas on `{key}`: expected {from}, found {values:?}"),
                    );
                }
                values = vec![*to];
            }
            _ => {}
        }
        let w = VersionedWrite {
            key: key.clone(),
            kind,
            values,
            ts_ms: self.now_ms(),
            origin: self.cfg.node.clone(),
            vclock: match self.policy {
                Policy::LastWriteWins => Default::default(),
                Policy::VectorClock => {
                    let mut c = current.clock;
                    let n = c.entry(self.cfg.node.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    c
                }
            },
        };
        match ring.offer(w.clone()) {
            Ok(kept) => {
                if !kept {
                    // lww: the copy carries a later stamp (another node's clock is
                    // ahead), so this write is dropped although it is acknowledged.
                    log_event!(
                        self.log,
                        "lww-discard",
                        "own write to {key} at ts={} loses to a later stamp",
                        w.ts_ms
                    );
                } else {
                    ring.own.push(w);
                }
            }
            Err(e) => {
                log_event!(self.log, "storage-error", "write {key}: {e}");
                return Response::Error(ErrorReply::indeterminate(
                    ErrorCode::Storage,
                    format!("{}: {e}", self.cfg.node),
                ));
            }
        }
        drop(ring);
        self.kick.send_modify(|k| *k += 1);
        let ack = |value: Element| WriteAck {
            key: key.clone(),
            value,
            master: self.cfg.node.clone(),
            epoch: 0,
        };
        match request {
            Request::Add { value, .. } => Response::Added(ack(*value)),
            Request::Append { value, .. } => Response::Appended(ack(*value)),
            Request::Write { value, .. } => Response::Written(ack(*value)),
            Request::Cas { from, to, .. } => Response::CasOk(CasAck {
                key: key.clone(),
                from: *from,
                to: *to,
                master: self.cfg.node.clone(),
                epoch: 0,
            }),
            _ => error(ErrorCode::BadRequest, "not a write".into()),
        }
    }

    fn read(&self, request: &Request) -> Response {
        let ring = lock(&self.ring);
        let node = self.cfg.node.clone();
        let reply = |key: &String, values| ReadReply {
            key: key.clone(),
            values,
            node: node.clone(),
            role: RoleKind::Master,
            epoch: 0,
        };
        let result = match request {
            Request::Read { key, .. } => ring
                .current(key, ObjectKind::Set)
                .map(|c| Response::Values(reply(key, c.values))),
            Request::ReadList { key, .. } => ring
                .current(key, ObjectKind::List)
                .map(|c| Response::List(reply(key, c.values))),
            Request::Get { key, .. } => ring.current(key, ObjectKind::Register).map(|c| {
                Response::Register(RegisterReply {
                    key: key.clone(),
                    value: c.values.first().copied(),
                    siblings: c.siblings,
                    node: node.clone(),
                    role: RoleKind::Master,
                    epoch: 0,
                })
            }),
            other => {
                return error(
                    ErrorCode::BadRequest,
                    format!("{} is not a read", other.op_name()),
                )
            }
        };
        result.unwrap_or_else(|e| error(ErrorCode::WrongType, e))
    }

    fn on_gossip(&self, from: &str, writes: Vec<VersionedWrite>) -> Response {
        let mut ring = lock(&self.ring);
        let mut applied = 0;
        for w in writes {
            if w.origin != from {
                return error(
                    ErrorCode::BadRequest,
                    format!("gossip from {from} carries a write of {}", w.origin),
                );
            }
            match ring.offer(w) {
                Ok(kept) => applied += usize::from(kept),
                Err(e) => {
                    log_event!(self.log, "storage-error", "gossip from {from}: {e}");
                    return Response::Error(ErrorReply::indeterminate(
                        ErrorCode::Storage,
                        format!("{}: {e}", self.cfg.node),
                    ));
                }
            }
        }
        Response::Gossiped { applied }
    }

    /// Pushes this node's writes to `peer`, in order, retrying until it answers.
    async fn push_loop(self: Arc<Self>, peer: String, mut shutdown: watch::Receiver<bool>) {
        let mut kicks = self.kick.subscribe();
        loop {
            let batch = {
                let ring = lock(&self.ring);
                let from = ring.pushed.get(&peer).copied().unwrap_or(0);
                let to = ring.own.len().min(from + MAX_BATCH);
                (from < to).then(|| (from, ring.own[from..to].to_vec()))
            };
            let mut sent = false;
            if let Some((from, writes)) = batch {
                let n = writes.len();
                let request = Request::Gossip {
                    from: self.cfg.node.clone(),
                    writes,
                };
                if let Ok(Response::Gossiped { .. }) = self
                    .peers
                    .call(&peer, &request, self.cfg.peer_timeout)
                    .await
                {
                    lock(&self.ring).pushed.insert(peer.clone(), from + n);
                    sent = true;
                }
            }
            if sent {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat) => {}
                _ = kicks.changed() => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    fn debug_block(&self, peers: &[String]) -> Response {
        super::gate::debug_block(&self.cfg, &self.peers, &self.log, peers)
    }
}

impl Handler for RingNode {
    async fn handle(&self, request: Request) -> Reply {
        if let Err(reply) =
            super::gate::admit(&self.cfg, &self.peers, &self.stopping, &request).await
        {
            return reply;
        }
        Reply::Send(match request {
            Request::Role => Response::Role(self.role_info()),
            Request::Add { .. }
            | Request::Append { .. }
            | Request::Write { .. }
            | Request::Cas { .. } => self.write(&request),
            Request::Read { .. } | Request::ReadList { .. } | Request::Get { .. } => {
                self.read(&request)
            }
            Request::Gossip { from, writes } => self.on_gossip(&from, writes),
            Request::DebugBlockPeers { peers } => self.debug_block(&peers),
            other => error(
                ErrorCode::Unsupported,
                format!(
                    "mode {} does not serve {}",
                    policy_name(self.policy),
                    other.op_name()
                ),
            ),
        })
    }
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::LastWriteWins => "lww-ring",
        Policy::VectorClock => "vclock-ring",
    }
}

macro_rules! ring_mode {
    ($name:ident, $policy:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(Arc<RingNode>);

        impl Mode for $name {
            fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
                Ok(Arc::new($name(RingNode::open($policy, cfg, log)?)))
            }
            fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
                self.0.start(shutdown);
            }
            fn stop(&self) {
                self.0.stop();
            }
        }

        impl Handler for $name {
            async fn handle(&self, request: Request) -> Reply {
                self.0.handle(request).await
            }
        }
    };
}

ring_mode!(
    LwwRing,
    Policy::LastWriteWins,
    "Mode `lww-ring`: wall-clock last-write-wins."
);
ring_mode!(
    VClockRing,
    Policy::VectorClock,
    "Mode `vclock-ring`: vector clocks, siblings merged on read."
);
