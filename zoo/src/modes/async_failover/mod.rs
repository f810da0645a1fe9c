//! Mode `async-failover`: master-slave with asynchronous replication and naive
//! automatic failover (Redis + Sentinel-like, deliberately flawed).
//!
//! The master applies an `add`, persists it and acknowledges it at once; replicas
//! pull the operations afterwards ([`replication`]). A replica that cannot reach its
//! master for the failover timeout elects, among the peers it can reach, the
//! lowest-named replica, which promotes itself with a higher epoch ([`election`]). An
//! isolated master never notices and keeps acknowledging writes: two masters at once.
//! When masters meet again the lower (epoch, name) steps down and fully resyncs from
//! the other, discarding the writes only it had: acknowledged writes are lost.
//!
//! This file holds the node state and the request handling.

mod election;
mod replication;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::config::{ClientRouting, Config};
use crate::eventlog::EventLog;
use crate::log_event;
use crate::modes::ops::{ack, answer_read, apply_error, command_of, is_local_read};
use crate::modes::Mode;
use crate::peers::PeerPool;
use crate::proto::{
    Cmd, ErrorCode, ErrorReply, Lineage, Op, Request, Response, RoleInfo, RoleKind,
};
use crate::server::{Handler, Reply};
use crate::store::{Meta, Store};

use election::{PeerView, State};

/// One node of the `async-failover` mode.
pub struct AsyncFailover {
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    peers: PeerPool,
    /// Lock order: `state` before `store`; neither is held across an `.await`.
    state: Mutex<State>,
    store: Mutex<Store>,
    /// The store's offset, for fetches waiting on new operations.
    offset_tx: watch::Sender<u64>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

impl Mode for AsyncFailover {
    fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
        let fresh = Meta {
            epoch: 1,
            lineage: Lineage {
                epoch: 1,
                node: cfg.initial_master.clone(),
            },
            previous: None,
        };
        let (store, recovery) = Store::open(&cfg.data_dir, cfg.fsync, fresh)?;
        let now = Instant::now();
        let me = cfg.node.clone();
        let (role, master) = if !recovery.fresh {
            // After a restart nothing is known about the cluster: start as a replica
            // and follow whichever master the heartbeats find.
            (RoleKind::Replica, None)
        } else if me == cfg.initial_master {
            (RoleKind::Master, Some(me.clone()))
        } else {
            (RoleKind::Replica, Some(cfg.initial_master.clone()))
        };
        let meta = store.meta().clone();
        log_event!(
            log,
            "start",
            "mode=async-failover data_dir={} fresh={} records={} torn_bytes={} lineage={} offset={} elements={} epoch={} role={role} master={}",
            cfg.data_dir.display(),
            recovery.fresh,
            recovery.records,
            recovery.torn_bytes,
            meta.lineage,
            store.offset(),
            store.element_count(),
            meta.epoch,
            master.as_deref().unwrap_or("-")
        );
        let state = State {
            role,
            epoch: meta.epoch,
            master,
            master_contact: now,
            views: cfg
                .peers()
                .map(|(n, _)| (n.clone(), PeerView::default()))
                .collect(),
            waiting_for: None,
        };
        let (offset_tx, _) = watch::channel(store.offset());
        Ok(Arc::new(AsyncFailover {
            peers: PeerPool::new(cfg.peers(), cfg.peer_timeout),
            cfg,
            log,
            state: Mutex::new(state),
            store: Mutex::new(store),
            offset_tx,
            stopping: AtomicBool::new(false),
        }))
    }

    fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        election::spawn(self, shutdown.clone());
        replication::spawn(self, shutdown);
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let store = lock(&self.store);
        match store.sync() {
            Ok(()) => log_event!(
                self.log,
                "stop",
                "data synced offset={} elements={}",
                store.offset(),
                store.element_count()
            ),
            Err(e) => log_event!(self.log, "stop", "final fsync failed: {e}"),
        }
    }
}

impl Handler for AsyncFailover {
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

impl AsyncFailover {
    async fn dispatch(&self, request: Request) -> Response {
        match request {
            Request::Role => Response::Role(self.role_info()),
            Request::Ping { from, view } => {
                self.observe(&from, view);
                self.decide_and_apply();
                Response::Role(self.role_info())
            }
            Request::Fetch {
                from,
                lineage,
                offset,
                wait_ms,
            } => self.serve_fetch(&from, lineage, offset, wait_ms).await,
            Request::ForwardAdd { from, key, value } => self
                .master_write(&Cmd::Add { key, value })
                .unwrap_or_else(|| self.not_master(&from)),
            Request::ForwardRead { from, key } => {
                self.master_read(&Request::Read { key, local: true }, &from)
            }
            Request::Forward { from, request } => {
                if request.peer_sender().is_some() {
                    return error(
                        ErrorCode::BadRequest,
                        format!("forward from {from} wraps a peer request"),
                    );
                }
                match command_of(&request) {
                    Some(cmd) => self
                        .master_write(&cmd)
                        .unwrap_or_else(|| self.not_master(&from)),
                    None => self.master_read(&request, &from),
                }
            }
            Request::DebugBlockPeers { peers } => self.debug_block(&peers),
            Request::Vote { .. } | Request::AppendEntries { .. } | Request::Gossip { .. } => error(
                ErrorCode::Unsupported,
                format!(
                    "mode async-failover does not serve peer request {}",
                    request.op_name()
                ),
            ),
            client => self.client(client).await,
        }
    }

    fn not_master(&self, from: &str) -> Response {
        error(
            ErrorCode::NotMaster,
            format!(
                "{} is not master (operation forwarded by {from})",
                self.cfg.node
            ),
        )
    }

    /// A client operation: local reads here, the rest on the master (forwarded or
    /// redirected when this node is a replica).
    async fn client(&self, request: Request) -> Response {
        if is_local_read(&request) {
            return self.local_read(&request);
        }
        let from = self.cfg.node.clone();
        let forward = match command_of(&request) {
            Some(cmd) => {
                if let Some(done) = self.master_write(&cmd) {
                    return done;
                }
                match request {
                    Request::Add { key, value } => Request::ForwardAdd { from, key, value },
                    other => Request::Forward {
                        from,
                        request: Box::new(other),
                    },
                }
            }
            None => {
                if lock(&self.state).role == RoleKind::Master {
                    return self.local_read(&request);
                }
                match request {
                    Request::Read { key, .. } => Request::ForwardRead { from, key },
                    other => Request::Forward {
                        from,
                        request: Box::new(other),
                    },
                }
            }
        };
        self.forward(forward).await
    }

    fn master_read(&self, request: &Request, from: &str) -> Response {
        if lock(&self.state).role == RoleKind::Master {
            self.local_read(request)
        } else {
            self.not_master(from)
        }
    }

    fn role_info(&self) -> RoleInfo {
        let st = lock(&self.state);
        let store = lock(&self.store);
        RoleInfo {
            node: self.cfg.node.clone(),
            role: st.role,
            epoch: st.epoch,
            master: st.master.clone(),
            lineage: store.meta().lineage.clone(),
            offset: store.offset(),
            commit: None,
            control: None,
        }
    }

    fn local_read(&self, request: &Request) -> Response {
        let st = lock(&self.state);
        let store = lock(&self.store);
        answer_read(store.data(), request, &self.cfg.node, st.role, st.epoch)
    }

    /// Applies a write if this node is master; `None` when it is not.
    fn master_write(&self, cmd: &Cmd) -> Option<Response> {
        let st = lock(&self.state);
        if st.role != RoleKind::Master {
            return None;
        }
        let mut store = lock(&self.store);
        if let Err(e) = store.data().check(cmd) {
            return Some(apply_error(e));
        }
        let Some(op) = Op::of(cmd) else {
            return Some(error(
                ErrorCode::BadRequest,
                "noop is not a client operation".into(),
            ));
        };
        Some(match store.append(op) {
            Ok(offset) => {
                self.offset_tx.send_replace(offset);
                ack(cmd, &self.cfg.node, st.epoch)
            }
            Err(e) => {
                log_event!(self.log, "storage-error", "{cmd:?}: {e}");
                Response::Error(ErrorReply::indeterminate(
                    ErrorCode::Storage,
                    format!("{}: {e}", self.cfg.node),
                ))
            }
        })
    }

    /// Sends a client operation to the master this replica believes in and relays
    /// the answer.
    async fn forward(&self, request: Request) -> Response {
        let master = lock(&self.state).master.clone();
        let Some(master) = master.filter(|m| *m != self.cfg.node) else {
            return error(
                ErrorCode::NoMaster,
                format!("{} is not master and knows no master", self.cfg.node),
            );
        };
        if self.cfg.client_routing == ClientRouting::Redirect {
            return match self.cfg.nodes.get(&master) {
                Some(addr) => Response::Error(ErrorReply::redirect(&self.cfg.node, &master, *addr)),
                None => error(
                    ErrorCode::NoMaster,
                    format!("{}: master {master} is not in --peers", self.cfg.node),
                ),
            };
        }
        match self
            .peers
            .call(&master, &request, self.cfg.peer_timeout)
            .await
        {
            Ok(response) => response,
            Err(e) if !e.request_sent() => error(
                ErrorCode::MasterUnreachable,
                format!(
                    "{} could not reach master {master}, nothing sent: {e}",
                    self.cfg.node
                ),
            ),
            Err(e) => Response::Error(ErrorReply::indeterminate(
                ErrorCode::ForwardLost,
                format!(
                    "{} forwarded to master {master} but got no answer: {e}",
                    self.cfg.node
                ),
            )),
        }
    }

    fn debug_block(&self, peers: &[String]) -> Response {
        super::gate::debug_block(&self.cfg, &self.peers, &self.log, peers)
    }
}
