//! Mode `metadata-master`: a consistent control layer over a data layer, as in GFS
//! (a master holding the chunk map and granting primaries leases) or Akka Cluster
//! Sharding (a coordinator allocating shards). Every node is a data node; two of
//! them may also coordinate: the primary (`--initial-master`) and the standby
//! (`--standby`). Keys are spread over `--groups` data groups ([`group_of`]); the
//! coordinator's map names each group's master, epoch and in-sync set, and the
//! master acknowledges a write once the whole in-sync set holds it.
//!
//! - [`control`]: coordinator elections (primary and standby), map commits, the
//!   coordinator's heartbeats; [`placement`]: its decisions (first map, failovers,
//!   in-sync set changes);
//! - [`group`]: the data groups' logs, replication, fencing and reads;
//! - [`store`]: the persisted control state;
//! - this file: the node, request dispatch, client routing and the role answer.
//!
//! Data operations need no coordinator: a group whose master and in-sync set are
//! up keeps serving while the coordinator is down or cut off. Changing the in-sync
//! set and replacing a master need a coordinator with a majority.

mod control;
mod group;
mod placement;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use self::control::{Ctrl, CtrlRole};
use self::group::GroupCore;
use self::store::ControlStore;
use crate::config::{ClientRouting, Config};
use crate::eventlog::EventLog;
use crate::log_event;
use crate::modes::ops::{answer_read, command_of, is_local_read};
use crate::modes::replog::log::RaftLog;
use crate::modes::Mode;
use crate::peers::PeerPool;
use crate::proto::{
    group_of, ControlView, ErrorCode, ErrorReply, GroupRole, Lineage, Request, Response, RoleInfo,
};
use crate::server::{Handler, Reply};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

/// A response's `type`, for error messages.
fn kind(r: &Response) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)))
        .unwrap_or_else(|| "?".into())
}

/// A randomized election timeout in [failover, 2 × failover).
fn election_timeout(cfg: &Config) -> Duration {
    let base = cfg.failover_timeout.as_millis() as u64;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let salt: u64 = cfg.node.bytes().map(u64::from).sum();
    Duration::from_millis(base + (nanos / 1000 + salt * 7919) % base.max(1))
}

/// One `metadata-master` node.
pub struct MetadataMaster {
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    peers: PeerPool,
    ctrl: Mutex<Ctrl>,
    groups: Vec<Mutex<GroupCore>>,
    /// Bumped to make the data replication loops send now.
    kick: watch::Sender<u64>,
    /// Bumped to make the coordinator send the committed map now.
    ctrl_kick: watch::Sender<u64>,
    /// Serializes the coordinator's map changes.
    proposing: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
}

/// The mode as the process lifecycle drives it.
pub struct MetadataMode(Arc<MetadataMaster>);

impl Mode for MetadataMode {
    fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>> {
        let (store, fresh) = ControlStore::open(&cfg.data_dir, cfg.fsync)?;
        let mut groups = Vec::new();
        let mut records = 0;
        for g in 0..cfg.groups {
            let (glog, recovery) =
                RaftLog::open(&cfg.data_dir.join(format!("group-{g}")), cfg.fsync)?;
            records += recovery.records;
            groups.push(Mutex::new(GroupCore::new(glog)));
        }
        // The primary of a fresh cluster stands at once; the standby waits.
        let first = if fresh && cfg.node == cfg.initial_master {
            cfg.heartbeat
        } else {
            election_timeout(&cfg)
        };
        let committed = store.state.committed.clone();
        log_event!(
            log,
            "start",
            "mode=metadata-master data_dir={} fresh={fresh} cterm={} map_version={} groups={} group_records={records} coordinator_eligible={}",
            cfg.data_dir.display(),
            store.state.cterm,
            committed.version,
            cfg.groups,
            cfg.node == cfg.initial_master || cfg.standby.as_deref() == Some(cfg.node.as_str())
        );
        let (kick, _) = watch::channel(0);
        let (ctrl_kick, _) = watch::channel(0);
        let node = Arc::new(MetadataMaster {
            peers: PeerPool::new(cfg.peers(), cfg.peer_timeout),
            ctrl: Mutex::new(Ctrl::new(store, first)),
            groups,
            kick,
            ctrl_kick,
            proposing: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            cfg,
            log,
        });
        if committed.groups.len() > node.groups.len() {
            anyhow::bail!(
                "{}: the cluster's map has {} groups but --groups is {}",
                node.cfg.data_dir.display(),
                committed.groups.len(),
                node.groups.len()
            );
        }
        // Learn the masters; a group this node led before it stopped is not resumed.
        node.apply_map(&committed);
        Ok(Arc::new(MetadataMode(node)))
    }

    fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let node = &self.0;
        tokio::spawn(node.clone().control_loop(shutdown.clone()));
        for peer in node.peers.names() {
            tokio::spawn(node.clone().ctrl_peer_loop(peer.clone(), shutdown.clone()));
            for g in 0..node.groups.len() {
                tokio::spawn(node.clone().peer_loop(g, peer.clone(), shutdown.clone()));
            }
        }
    }

    fn stop(&self) {
        let node = &self.0;
        node.stopping.store(true, Ordering::SeqCst);
        for (g, core) in node.groups.iter().enumerate() {
            let core = lock(core);
            match core.log.sync() {
                Ok(()) => log_event!(
                    node.log,
                    "stop",
                    "group={g} data synced last_index={} commit={} keys={}",
                    core.log.last_index(),
                    core.commit,
                    core.data.len()
                ),
                Err(e) => log_event!(node.log, "stop", "group={g} final fsync failed: {e}"),
            }
        }
    }
}

impl Handler for MetadataMode {
    async fn handle(&self, request: Request) -> Reply {
        let node = &self.0;
        let sender =
            match super::gate::admit(&node.cfg, &node.peers, &node.stopping, &request).await {
                Ok(sender) => sender,
                Err(reply) => return reply,
            };
        let response = node.dispatch(request).await;
        super::gate::finish(&node.peers, sender.as_deref(), response)
    }
}

/// The key a client operation is about.
fn key_of(request: &Request) -> Option<&str> {
    match request {
        Request::Add { key, .. }
        | Request::Read { key, .. }
        | Request::Write { key, .. }
        | Request::Cas { key, .. }
        | Request::Get { key, .. }
        | Request::Append { key, .. }
        | Request::ReadList { key, .. } => Some(key),
        _ => None,
    }
}

impl MetadataMaster {
    async fn dispatch(self: &Arc<Self>, request: Request) -> Response {
        match request {
            Request::Role => Response::Role(self.role_info()),
            Request::CtrlVote {
                from,
                cterm,
                map_cterm,
                map_version,
                pre,
            } => self.on_ctrl_vote(&from, cterm, (map_cterm, map_version), pre),
            Request::CtrlSync {
                from,
                cterm,
                map,
                committed,
            } => self.on_ctrl_sync(&from, cterm, map, committed),
            Request::IsrChange {
                from,
                group,
                epoch,
                add,
                remove,
            } => self.on_isr_change(&from, group, epoch, add, remove).await,
            Request::GroupAppend {
                from,
                group,
                epoch,
                prev_index,
                prev_term,
                entries,
                commit,
            } => self.on_group_append(&from, group, epoch, prev_index, prev_term, entries, commit),
            Request::Forward { from, request } => {
                if request.peer_sender().is_some() || key_of(&request).is_none() {
                    return fail(
                        ErrorCode::BadRequest,
                        format!("forward from {from} does not wrap a client operation"),
                    );
                }
                let g = self.group(&request);
                if !lock(&self.groups[g]).leading {
                    return fail(
                        ErrorCode::NotMaster,
                        format!(
                            "{} is not master of group {g} (operation forwarded by {from})",
                            self.cfg.node
                        ),
                    );
                }
                self.client(*request).await
            }
            Request::DebugBlockPeers { peers } => {
                super::gate::debug_block(&self.cfg, &self.peers, &self.log, &peers)
            }
            other if key_of(&other).is_some() => self.client(other).await,
            other => fail(
                ErrorCode::Unsupported,
                format!("mode metadata-master does not serve {}", other.op_name()),
            ),
        }
    }

    fn group(&self, request: &Request) -> usize {
        key_of(request).map_or(0, |k| group_of(k, self.groups.len()))
    }

    /// A client operation on a key: served here when it is a local read or this
    /// node masters the key's group, else forwarded or redirected to that master.
    async fn client(self: &Arc<Self>, request: Request) -> Response {
        let g = self.group(&request);
        if is_local_read(&request) {
            let core = lock(&self.groups[g]);
            return answer_read(
                &core.data,
                &request,
                &self.cfg.node,
                core.role_kind(),
                core.log.term,
            );
        }
        let (leading, master) = {
            let core = lock(&self.groups[g]);
            (core.leading, core.master.clone())
        };
        if leading {
            return match command_of(&request) {
                Some(cmd) => self.write(g, cmd).await,
                None => self.read_as_master(g, &request).await,
            };
        }
        let Some(master) = master.filter(|m| *m != self.cfg.node) else {
            return fail(
                ErrorCode::NoMaster,
                format!("{} knows no acting master of group {g}", self.cfg.node),
            );
        };
        if self.cfg.client_routing == ClientRouting::Redirect {
            return match self.cfg.nodes.get(&master) {
                Some(addr) => Response::Error(ErrorReply::redirect(&self.cfg.node, &master, *addr)),
                None => fail(
                    ErrorCode::NoMaster,
                    format!("{}: master {master} is not in --peers", self.cfg.node),
                ),
            };
        }
        let forward = Request::Forward {
            from: self.cfg.node.clone(),
            request: Box::new(request),
        };
        let deadline = self.cfg.failover_timeout * 2 + self.cfg.peer_timeout * 3;
        match self.peers.call(&master, &forward, deadline).await {
            Ok(response) => response,
            Err(e) if !e.request_sent() => fail(
                ErrorCode::MasterUnreachable,
                format!(
                    "{} could not reach master {master} of group {g}, nothing sent: {e}",
                    self.cfg.node
                ),
            ),
            Err(e) => Response::Error(ErrorReply::indeterminate(
                ErrorCode::ForwardLost,
                format!(
                    "{} forwarded to master {master} of group {g} but got no answer: {e}",
                    self.cfg.node
                ),
            )),
        }
    }

    /// The role answer: group 0's view in the common fields, every group and the
    /// coordinator in `control`.
    fn role_info(&self) -> RoleInfo {
        let groups: Vec<GroupRole> = self
            .groups
            .iter()
            .enumerate()
            .map(|(g, core)| {
                let core = lock(core);
                GroupRole {
                    group: g,
                    role: core.role_kind(),
                    epoch: core.log.term,
                    master: core.master.clone(),
                    isr: core.isr.iter().cloned().collect(),
                    last_index: core.log.last_index(),
                    commit: core.commit,
                }
            })
            .collect();
        let (coordinator, is_coordinator, cterm, map_version) = {
            let ctrl = lock(&self.ctrl);
            (
                ctrl.coordinator.clone(),
                ctrl.role == CtrlRole::Coordinator,
                ctrl.store.state.cterm,
                ctrl.store.state.committed.version,
            )
        };
        let g0 = lock(&self.groups[0]);
        RoleInfo {
            node: self.cfg.node.clone(),
            role: g0.role_kind(),
            epoch: g0.log.term,
            master: g0.master.clone(),
            lineage: Lineage {
                epoch: g0.log.last_term(),
                node: self.cfg.node.clone(),
            },
            offset: g0.log.last_index(),
            commit: Some(g0.commit),
            control: Some(ControlView {
                coordinator,
                is_coordinator,
                cterm,
                map_version,
                groups,
            }),
        }
    }
}
