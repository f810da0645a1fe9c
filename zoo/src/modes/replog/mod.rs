//! The log-based modes: one replicated-log engine ([`raft`]: terms, votes, append
//! entries, commit and apply) run in four flavors that differ only in when a write
//! counts as committed, whether masters are elected, and how the master serves reads:
//!
//! - `fixed-master`: the configured master commits on its own disk and replicates
//!   asynchronously; nobody is ever elected, so writes stop while it is down.
//! - `semi-sync`: the master waits for one replica before it acknowledges, but after
//!   `--semi-sync-timeout-ms` without one it degrades to asynchronous (as MySQL
//!   does). Elections: terms, majority vote, most up-to-date log wins. Reads are
//!   served by whoever believes it is master.
//! - `sync`: the master waits for every replica; no degradation. Elections as above.
//! - `raft`: the master waits for a majority, steps down when it loses the majority
//!   (check-quorum), and confirms its leadership with a majority heartbeat round
//!   before each read (read-index). The sound reference: linearizable.
//!
//! This file holds the node, request handling and client operations.

pub(crate) mod apply;
pub(crate) mod log;
mod raft;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::config::{ClientRouting, Config};
use crate::data::Data;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::modes::Mode;
use crate::peers::PeerPool;
use crate::proto::{Cmd, Entry, ErrorCode, ErrorReply, Lineage, Request, Response, RoleInfo};
use crate::server::{Handler, Reply};

use self::apply::{Applier, Waiter};
use self::log::RaftLog;
use super::ops::{ack, answer_read, apply_error, command_of, is_local_read};

/// Which behaviour the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    FixedMaster,
    SemiSync,
    Sync,
    Raft,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::FixedMaster => "fixed-master",
            Flavor::SemiSync => "semi-sync",
            Flavor::Sync => "sync",
            Flavor::Raft => "raft",
        }
    }

    fn elects(self) -> bool {
        self != Flavor::FixedMaster
    }
}

/// A node's role in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Follower,
    Candidate,
    Leader,
}

/// Everything guarded by one lock (never held across an `.await`).
pub(crate) struct Core {
    log: RaftLog,
    role: Role,
    leader: Option<String>,
    commit: u64,
    applied: u64,
    data: Data,
    waiters: BTreeMap<u64, Waiter>,
    /// When a follower last heard from a valid leader (or granted a vote).
    heard: Instant,
    election_timeout: Duration,
    /// Leader: per peer, the highest index known replicated and the next to send.
    matched: BTreeMap<String, u64>,
    next: BTreeMap<String, u64>,
    /// Leader: per peer, the highest heartbeat round it acknowledged in this term.
    acked_round: BTreeMap<String, u64>,
    /// Leader: when each peer last acknowledged anything in this term.
    acked_at: BTreeMap<String, Instant>,
    round: u64,
    /// semi-sync: acknowledging without a replica after a timeout.
    degraded: bool,
}

/// One node of a log-based mode.
pub struct RepLog {
    flavor: Flavor,
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    peers: PeerPool,
    core: Mutex<Core>,
    /// Bumped to make the peer loops send now (new entries, a read's round).
    kick: watch::Sender<u64>,
    /// Bumped whenever a peer acknowledges an append (read-index rounds wait on it).
    acks: watch::Sender<u64>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

impl RepLog {
    pub fn open(flavor: Flavor, cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
        let (mut rlog, recovery) = RaftLog::open(&cfg.data_dir, cfg.fsync)?;
        let fixed_master = flavor == Flavor::FixedMaster;
        let leads = fixed_master && cfg.node == cfg.initial_master;
        if fixed_master && rlog.term == 0 {
            rlog.set_state(1, Some(cfg.initial_master.clone()))?;
        }
        let mut core = Core {
            role: if leads { Role::Leader } else { Role::Follower },
            leader: fixed_master.then(|| cfg.initial_master.clone()),
            commit: 0,
            applied: 0,
            data: Data::default(),
            waiters: BTreeMap::new(),
            heard: Instant::now(),
            election_timeout: raft::election_timeout(&cfg),
            matched: BTreeMap::new(),
            next: BTreeMap::new(),
            acked_round: BTreeMap::new(),
            acked_at: BTreeMap::new(),
            round: 0,
            degraded: false,
            log: rlog,
        };
        if leads {
            // The fixed master's own log is committed by definition.
            core.reset_leader_state(cfg.peers().map(|(n, _)| n));
            let last = core.log.last_index();
            core.advance_commit(last);
        }
        log_event!(
            log,
            "start",
            "mode={} data_dir={} fresh={} records={} torn_bytes={} term={} last_index={} role={:?}",
            flavor.name(),
            cfg.data_dir.display(),
            recovery.fresh,
            recovery.records,
            recovery.torn_bytes,
            core.log.term,
            core.log.last_index(),
            core.role
        );
        let (kick, _) = watch::channel(0);
        let (acks, _) = watch::channel(0);
        Ok(Arc::new(RepLog {
            flavor,
            peers: PeerPool::new(cfg.peers(), cfg.peer_timeout),
            cfg,
            log,
            core: Mutex::new(core),
            kick,
            acks,
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        raft::spawn(self, shutdown);
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let core = lock(&self.core);
        match core.log.sync() {
            Ok(()) => log_event!(
                self.log,
                "stop",
                "data synced last_index={} commit={} keys={}",
                core.log.last_index(),
                core.commit,
                core.data.len()
            ),
            Err(e) => log_event!(self.log, "stop", "final fsync failed: {e}"),
        }
    }

    fn majority(&self) -> usize {
        self.cfg.nodes.len() / 2 + 1
    }

    fn role_info(&self) -> RoleInfo {
        let core = lock(&self.core);
        RoleInfo {
            node: self.cfg.node.clone(),
            role: core.role_kind(),
            epoch: core.log.term,
            master: core.leader.clone(),
            lineage: Lineage {
                epoch: core.log.last_term(),
                node: self.cfg.node.clone(),
            },
            offset: core.log.last_index(),
            commit: Some(core.commit),
            control: None,
        }
    }

    async fn dispatch(&self, request: Request) -> Response {
        match request {
            Request::Role => Response::Role(self.role_info()),
            Request::Vote {
                from,
                term,
                last_index,
                last_term,
            } => self.on_vote(&from, term, last_index, last_term),
            Request::AppendEntries {
                from,
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => self.on_append(&from, term, prev_index, prev_term, entries, commit),
            Request::Forward { from, request } => {
                if matches!(*request, Request::Forward { .. }) || request.peer_sender().is_some() {
                    return error(
                        ErrorCode::BadRequest,
                        format!("forward from {from} wraps a peer request"),
                    );
                }
                if lock(&self.core).role != Role::Leader {
                    return error(
                        ErrorCode::NotMaster,
                        format!(
                            "{} is not master (operation forwarded by {from})",
                            self.cfg.node
                        ),
                    );
                }
                self.client(*request).await
            }
            Request::DebugBlockPeers { peers } => self.debug_block(&peers),
            Request::Ping { .. }
            | Request::Fetch { .. }
            | Request::ForwardAdd { .. }
            | Request::ForwardRead { .. }
            | Request::Gossip { .. } => error(
                ErrorCode::Unsupported,
                format!(
                    "mode {} does not serve peer request {}",
                    self.flavor.name(),
                    request.op_name()
                ),
            ),
            client => self.client(client).await,
        }
    }

    /// A client operation: served here when it is local or this node is master,
    /// else forwarded or redirected.
    async fn client(&self, request: Request) -> Response {
        if is_local_read(&request) {
            return self.read_local(&request);
        }
        let leader = {
            let core = lock(&self.core);
            if core.role == Role::Leader {
                None
            } else {
                Some(core.leader.clone())
            }
        };
        match leader {
            None => match command_of(&request) {
                Some(cmd) => self.write(cmd).await,
                None => self.read_as_leader(&request).await,
            },
            Some(leader) => self.route(request, leader).await,
        }
    }

    async fn route(&self, request: Request, leader: Option<String>) -> Response {
        let Some(leader) = leader.filter(|l| *l != self.cfg.node) else {
            return error(
                ErrorCode::NoMaster,
                format!("{} is not master and knows no master", self.cfg.node),
            );
        };
        if self.cfg.client_routing == ClientRouting::Redirect {
            let Some(addr) = self.cfg.nodes.get(&leader) else {
                return error(
                    ErrorCode::NoMaster,
                    format!("{}: master {leader} is not in --peers", self.cfg.node),
                );
            };
            return Response::Error(ErrorReply::redirect(&self.cfg.node, &leader, *addr));
        }
        let forward = Request::Forward {
            from: self.cfg.node.clone(),
            request: Box::new(request),
        };
        // Long enough for the master to commit (or give up) before we do.
        let deadline = self.write_timeout() + self.cfg.peer_timeout;
        match self.peers.call(&leader, &forward, deadline).await {
            Ok(response) => response,
            Err(e) if !e.request_sent() => error(
                ErrorCode::MasterUnreachable,
                format!(
                    "{} could not reach master {leader}, nothing sent: {e}",
                    self.cfg.node
                ),
            ),
            Err(e) => Response::Error(ErrorReply::indeterminate(
                ErrorCode::ForwardLost,
                format!(
                    "{} forwarded to master {leader} but got no answer: {e}",
                    self.cfg.node
                ),
            )),
        }
    }

    fn write_timeout(&self) -> Duration {
        match self.flavor {
            Flavor::SemiSync => self.cfg.semi_sync_timeout,
            _ => self.cfg.failover_timeout,
        }
    }

    /// The master's write path: append, replicate, wait until applied.
    async fn write(&self, cmd: Cmd) -> Response {
        let (rx, index, term) = {
            let mut core = lock(&self.core);
            if core.role != Role::Leader {
                return error(
                    ErrorCode::NotMaster,
                    format!("{} stopped being master", self.cfg.node),
                );
            }
            let term = core.log.term;
            let index = match core.log.append(Entry {
                term,
                cmd: cmd.clone(),
            }) {
                Ok(i) => i,
                Err(e) => {
                    log_event!(self.log, "storage-error", "append: {e}");
                    return Response::Error(ErrorReply::indeterminate(
                        ErrorCode::Storage,
                        format!("{}: {e}", self.cfg.node),
                    ));
                }
            };
            let (tx, rx) = oneshot::channel();
            core.waiters.insert(index, Waiter { term, tx });
            if self.flavor == Flavor::FixedMaster || core.degraded {
                core.advance_commit(index);
            } else {
                self.advance_leader_commit(&mut core);
            }
            (rx, index, term)
        };
        self.kick.send_modify(|k| *k += 1);
        let mut rx = rx;
        let outcome = match tokio::time::timeout(self.write_timeout(), &mut rx).await {
            Ok(r) => r.ok(),
            Err(_) if self.flavor == Flavor::SemiSync => {
                // MySQL semi-sync: no replica answered in time, so stop waiting for
                // them and acknowledge on the master's word alone.
                {
                    let mut core = lock(&self.core);
                    if core.role == Role::Leader && core.log.term == term {
                        if !core.degraded {
                            log_event!(
                                self.log,
                                "semi-sync-degraded",
                                "no replica acknowledged index {index} within {:?}: replicating asynchronously",
                                self.cfg.semi_sync_timeout
                            );
                        }
                        core.degraded = true;
                        let last = core.log.last_index();
                        core.advance_commit(last);
                    }
                }
                match tokio::time::timeout(Duration::from_millis(10), rx).await {
                    Ok(r) => r.ok(),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        match outcome {
            Some(Ok(())) => ack(&cmd, &self.cfg.node, term),
            Some(Err(e)) => apply_error(e),
            None => Response::Error(ErrorReply::indeterminate(
                ErrorCode::NotReplicated,
                format!(
                    "{}: entry {index} of term {term} was not committed within {:?} (replicas unreachable, or mastership lost)",
                    self.cfg.node,
                    self.write_timeout()
                ),
            )),
        }
    }

    /// A non-local read on the master: raft first confirms it still leads a
    /// majority (read-index); the other flavors trust their own belief.
    async fn read_as_leader(&self, request: &Request) -> Response {
        if self.flavor == Flavor::Raft {
            if let Err(e) = self.confirm_leadership().await {
                return error(ErrorCode::NotMaster, format!("{}: {e}", self.cfg.node));
            }
        }
        self.read_local(request)
    }

    fn read_local(&self, request: &Request) -> Response {
        let core = lock(&self.core);
        answer_read(
            &core.data,
            request,
            &self.cfg.node,
            core.role_kind(),
            core.log.term,
        )
    }

    fn debug_block(&self, peers: &[String]) -> Response {
        super::gate::debug_block(&self.cfg, &self.peers, &self.log, peers)
    }
}

impl Handler for RepLog {
    async fn handle(&self, request: Request) -> Reply {
        let sender =
            match super::gate::admit(&self.cfg, &self.peers, &self.stopping, &request).await {
                Ok(sender) => sender,
                Err(reply) => return reply,
            };
        let response = self.dispatch(request).await;
        super::gate::finish(&self.peers, sender.as_deref(), response)
    }
}

macro_rules! flavor_mode {
    ($name:ident, $flavor:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(Arc<RepLog>);

        impl Mode for $name {
            fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
                Ok(Arc::new($name(RepLog::open($flavor, cfg, log)?)))
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

flavor_mode!(
    FixedMaster,
    Flavor::FixedMaster,
    "Mode `fixed-master`: one configured master, async replication, no failover."
);
flavor_mode!(
    SemiSync,
    Flavor::SemiSync,
    "Mode `semi-sync`: one replica acknowledges (until a timeout), majority elections."
);
flavor_mode!(
    SyncAll,
    Flavor::Sync,
    "Mode `sync`: every replica acknowledges, majority elections."
);
flavor_mode!(
    Raft,
    Flavor::Raft,
    "Mode `raft`: majority commit, check-quorum, read-index reads: linearizable."
);
