//! Mode `lww-ring`: a masterless ring with last-write-wins (Cassandra-like,
//! deliberately flawed). Any node accepts any write: it reads its own copy of the
//! key, computes the whole new value (the set with the element added, the list with
//! it appended, the register's new value), stamps it with its wall clock (plus
//! `--clock-offset-ms`) and its name, keeps it when that stamp beats the copy's,
//! acknowledges at once and pushes it to every peer in the background. Everywhere
//! the larger (timestamp, node) wins. So concurrent adds on two nodes lose one of
//! them, and a node whose clock is behind has its acknowledged writes silently
//! discarded — even locally. Reads are always this node's own copy.
//!
//! Data: `DATA_DIR/ring.log`, one [`VersionedWrite`] JSON line per write kept.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
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
use crate::store::{FsyncPolicy, StoreError};

/// Most writes pushed in one gossip message.
const MAX_BATCH: usize = 500;

struct Ring {
    path: PathBuf,
    file: File,
    _lock: File,
    fsync: FsyncPolicy,
    /// The winning write per key.
    objects: BTreeMap<String, VersionedWrite>,
    /// The writes this node accepted, in order, and per peer how many were pushed.
    own: Vec<VersionedWrite>,
    pushed: BTreeMap<String, usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn newer(a: &VersionedWrite, b: &VersionedWrite) -> bool {
    (a.ts_ms, &a.origin) > (b.ts_ms, &b.origin)
}

impl Ring {
    fn open(cfg: &Config) -> Result<(Ring, usize, usize), StoreError> {
        let dir = &cfg.data_dir;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("zoo.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked {
                dir: dir.clone(),
                lock: lock_path,
            });
        }
        let path = dir.join("ring.log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = bytes.len() - complete;
        let mut ring = Ring {
            path: path.clone(),
            file,
            _lock: lock,
            fsync: cfg.fsync,
            objects: BTreeMap::new(),
            own: Vec::new(),
            pushed: BTreeMap::new(),
        };
        let mut records = 0;
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let w: VersionedWrite =
                serde_json::from_slice(line).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    line: i + 1,
                    detail: e.to_string(),
                })?;
            if w.origin == cfg.node {
                ring.own.push(w.clone());
            }
            ring.keep(w);
            records += 1;
        }
        if torn > 0 {
            ring.file
                .set_len(complete as u64)
                .map_err(io_err(&ring.path))?;
        }
        Ok((ring, records, torn))
    }

    /// Keeps `w` in memory when it beats the current version; returns whether it did.
    fn keep(&mut self, w: VersionedWrite) -> bool {
        match self.objects.get(&w.key) {
            Some(cur) if !newer(&w, cur) => false,
            _ => {
                self.objects.insert(w.key.clone(), w);
                true
            }
        }
    }

    /// Persists and keeps `w` if it wins; returns whether it did.
    fn offer(&mut self, w: VersionedWrite) -> Result<bool, StoreError> {
        if self.objects.get(&w.key).is_some_and(|cur| !newer(&w, cur)) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(&w).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        if self.fsync == FsyncPolicy::Always {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(self.keep(w))
    }

    fn values(&self, key: &str, kind: ObjectKind) -> Result<Vec<Element>, String> {
        match self.objects.get(key) {
            None => Ok(Vec::new()),
            Some(w) if w.kind == kind => Ok(w.values.clone()),
            Some(w) => Err(format!("key `{key}` holds a {:?}, not a {kind:?}", w.kind)),
        }
    }
}

/// One node of `lww-ring`.
pub struct LwwRing {
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    peers: PeerPool,
    ring: Mutex<Ring>,
    kick: watch::Sender<u64>,
    stopping: AtomicBool,
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

impl Mode for LwwRing {
    fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
        let (ring, records, torn) = Ring::open(&cfg)?;
        log_event!(
            log,
            "start",
            "mode=lww-ring data_dir={} records={records} torn_bytes={torn} keys={} own_writes={} clock_offset_ms={}",
            cfg.data_dir.display(),
            ring.objects.len(),
            ring.own.len(),
            cfg.clock_offset_ms
        );
        let (kick, _) = watch::channel(0);
        Ok(Arc::new(LwwRing {
            peers: PeerPool::new(cfg.peers(), cfg.peer_timeout),
            cfg,
            log,
            ring: Mutex::new(ring),
            kick,
            stopping: AtomicBool::new(false),
        }))
    }

    fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        for peer in self.peers.names() {
            tokio::spawn(self.clone().push_loop(peer.clone(), shutdown.clone()));
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let ring = lock(&self.ring);
        match ring.file.sync_data() {
            Ok(()) => log_event!(self.log, "stop", "data synced keys={}", ring.objects.len()),
            Err(e) => log_event!(self.log, "stop", "final fsync failed: {e}"),
        }
    }
}

impl LwwRing {
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
        let mut values = match ring.values(key, kind) {
            Ok(v) => v,
            Err(e) => return error(ErrorCode::WrongType, e),
        };
        match request {
            Request::Add { value, .. } => {
                if let Err(pos) = values.binary_search(value) {
                    values.insert(pos, *value);
                }
            }
            Request::Append { value, .. } => values.push(*value),
            Request::Write { value, .. } => values = vec![*value],
            Request::Cas { from, to, .. } => {
                if values.first() != Some(from) {
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
        };
        match ring.offer(w.clone()) {
            Ok(kept) => {
                if !kept {
                    // The copy carries a later stamp (another node's clock is ahead):
                    // last-write-wins drops this write although it is acknowledged.
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
                .values(key, ObjectKind::Set)
                .map(|v| Response::Values(reply(key, v))),
            Request::ReadList { key, .. } => ring
                .values(key, ObjectKind::List)
                .map(|v| Response::List(reply(key, v))),
            Request::Get { key, .. } => ring.values(key, ObjectKind::Register).map(|v| {
                Response::Register(RegisterReply {
                    key: key.clone(),
                    value: v.first().copied(),
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
        if !self.cfg.debug_fault_injection {
            return error(
                ErrorCode::Unsupported,
                format!(
                    "{}: debug_block_peers needs --debug-fault-injection",
                    self.cfg.node
                ),
            );
        }
        match self.peers.set_blocked(peers) {
            Ok(blocked) => {
                log_event!(
                    self.log,
                    "debug-block-peers",
                    "simulated partition: blocking [{}]",
                    blocked.join(",")
                );
                Response::DebugBlocked { peers: blocked }
            }
            Err(e) => error(ErrorCode::BadRequest, format!("debug_block_peers: {e}")),
        }
    }
}

impl Handler for LwwRing {
    async fn handle(&self, request: Request) -> Reply {
        let sender = request.peer_sender().map(str::to_string);
        if let Some(from) = &sender {
            if !self.cfg.nodes.contains_key(from) || *from == self.cfg.node {
                return Reply::Send(error(
                    ErrorCode::BadRequest,
                    format!("`{from}` is not a peer of {}", self.cfg.node),
                ));
            }
            if self.peers.is_blocked(from) {
                tokio::time::sleep(self.cfg.peer_timeout * 4).await;
                return Reply::Drop;
            }
        }
        if self.stopping.load(Ordering::SeqCst) && !matches!(request, Request::Role) {
            return Reply::Send(error(
                ErrorCode::ShuttingDown,
                format!("{} is shutting down", self.cfg.node),
            ));
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
                format!("mode lww-ring does not serve {}", other.op_name()),
            ),
        })
    }
}
