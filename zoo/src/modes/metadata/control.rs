//! The control layer of `metadata-master`: the coordinator that owns the group map
//! (each data group's master, epoch and in-sync set) and its standby. Only those two
//! nodes may coordinate; every node votes and holds the map. A coordinator is
//! elected for a coordinator term (`cterm`) by a majority of all nodes, and a map
//! change counts only once a majority holds it, so a coordinator that lost its
//! majority (isolated, paused) can neither assign a master nor shrink an in-sync
//! set: the standby that replaced it was elected by nodes that hold every committed
//! map, and they refuse the old term. Nodes act only on committed maps, so each
//! epoch has one master. The coordinator sends the committed map to every node each
//! heartbeat, collects each node's group status, and moves a group whose master is
//! unreachable (or restarted, so no longer acting) to the most up-to-date reachable
//! member of its in-sync set, in a new epoch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::store::ControlStore;
use super::{election_timeout, lock, MetadataMaster};
use crate::log_event;
use crate::peers::PeerError;
use crate::proto::{GroupAssignment, GroupMap, GroupStatus, Request, Response};
use crate::server::stopped;

type Reply = Result<Response, PeerError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CtrlRole {
    Voter,
    Candidate,
    Coordinator,
}

/// The control state of one node (one lock, never held across `.await`).
pub(super) struct Ctrl {
    pub(super) store: ControlStore,
    pub(super) role: CtrlRole,
    pub(super) coordinator: Option<String>,
    pub(super) heard: Instant,
    election_timeout: Duration,
    /// Coordinator: when each peer last took the committed map, and its status.
    pub(super) acked_at: BTreeMap<String, Instant>,
    pub(super) status: BTreeMap<String, (u64, Vec<GroupStatus>)>,
}

impl Ctrl {
    pub(super) fn new(store: ControlStore, first_timeout: Duration) -> Ctrl {
        Ctrl {
            store,
            role: CtrlRole::Voter,
            coordinator: None,
            heard: Instant::now(),
            election_timeout: first_timeout,
            acked_at: BTreeMap::new(),
            status: BTreeMap::new(),
        }
    }
}

impl MetadataMaster {
    /// Whether `node` may coordinate: the primary (`--initial-master`) or the standby.
    pub(super) fn eligible(&self, node: &str) -> bool {
        node == self.cfg.initial_master || self.cfg.standby.as_deref() == Some(node)
    }

    pub(super) fn majority(&self) -> usize {
        self.cfg.nodes.len() / 2 + 1
    }

    /// Enters `cterm` (when newer) as a voter; persisted.
    pub(super) fn enter_term(&self, ctrl: &mut Ctrl, cterm: u64) {
        if cterm > ctrl.store.state.cterm {
            if let Err(e) = ctrl.store.update(|s| {
                s.cterm = cterm;
                s.voted_for = None;
            }) {
                log_event!(
                    self.log,
                    "storage-error",
                    "cterm {cterm} not persisted: {e}"
                );
            }
            if ctrl.role == CtrlRole::Coordinator {
                log_event!(self.log, "role-change", "coordinator=false cterm={cterm}");
            }
            ctrl.role = CtrlRole::Voter;
            ctrl.coordinator = None;
        }
    }

    /// A vote request; `pre`: whether this node would vote, changing nothing (a
    /// candidate that cannot win does not raise everyone's term, so a primary that
    /// was cut off does not depose the standby when it comes back).
    pub(super) fn on_ctrl_vote(
        &self,
        from: &str,
        cterm: u64,
        pos: (u64, u64),
        pre: bool,
    ) -> Response {
        let mut ctrl = lock(&self.ctrl);
        let deny = |ctrl: &Ctrl| Response::VoteReply {
            term: ctrl.store.state.cterm,
            granted: false,
        };
        // A live coordinator is not replaced: this node heard from it recently.
        let sticky = ctrl.role == CtrlRole::Coordinator
            || (ctrl.coordinator.as_deref().is_some_and(|c| c != from)
                && ctrl.heard.elapsed() < self.cfg.failover_timeout);
        if !self.eligible(from) || sticky {
            return deny(&ctrl);
        }
        if pre {
            let st = &ctrl.store.state;
            return Response::VoteReply {
                term: st.cterm,
                granted: cterm > st.cterm && pos >= st.held.position(),
            };
        }
        self.enter_term(&mut ctrl, cterm);
        let st = &ctrl.store.state;
        let granted = cterm == st.cterm
            && st.voted_for.as_deref().is_none_or(|v| v == from)
            && pos >= st.held.position();
        if granted && st.voted_for.is_none() {
            if let Err(e) = ctrl.store.update(|s| s.voted_for = Some(from.to_string())) {
                log_event!(self.log, "storage-error", "vote not persisted: {e}");
                return deny(&ctrl);
            }
            log_event!(self.log, "vote", "coordinator={from} cterm={cterm}");
        }
        if granted {
            ctrl.heard = Instant::now();
        }
        Response::VoteReply {
            term: ctrl.store.state.cterm,
            granted,
        }
    }

    pub(super) fn on_ctrl_sync(
        &self,
        from: &str,
        cterm: u64,
        map: GroupMap,
        committed: bool,
    ) -> Response {
        let (success, act) = {
            let mut ctrl = lock(&self.ctrl);
            if cterm < ctrl.store.state.cterm {
                (false, false)
            } else {
                self.enter_term(&mut ctrl, cterm);
                ctrl.role = CtrlRole::Voter;
                if ctrl.coordinator.as_deref() != Some(from) {
                    log_event!(self.log, "follow", "coordinator={from} cterm={cterm}");
                    ctrl.coordinator = Some(from.to_string());
                }
                ctrl.heard = Instant::now();
                let st = &ctrl.store.state;
                let hold = map.position() > st.held.position();
                let commit = committed && map.version > st.committed.version;
                let act = committed && map.version >= st.committed.version;
                let saved = ctrl.store.update(|s| {
                    if hold {
                        s.held = map.clone();
                    }
                    if commit {
                        s.committed = map.clone();
                    }
                });
                match saved {
                    Ok(()) => (true, act),
                    Err(e) => {
                        log_event!(self.log, "storage-error", "map {}: {e}", map.version);
                        (false, false)
                    }
                }
            }
        };
        if act {
            self.apply_map(&map);
        }
        let ctrl = lock(&self.ctrl);
        Response::CtrlAck {
            cterm: ctrl.store.state.cterm,
            success,
            map_version: ctrl.store.state.committed.version,
            status: self.group_statuses(),
        }
    }

    /// Makes every data group act on a committed map.
    pub(super) fn apply_map(&self, map: &GroupMap) {
        for (g, a) in map.groups.iter().enumerate().take(self.groups.len()) {
            self.apply_assignment(g, a);
        }
    }

    /// Coordinator: commits a new map built by `build` from the committed map (or,
    /// with `from_held`, from the newest held one) and the new version; `None` from
    /// `build` changes nothing. The map counts once a majority holds it.
    pub(super) async fn propose(
        self: &Arc<Self>,
        from_held: bool,
        build: impl FnOnce(&Ctrl, &GroupMap, u64) -> Option<Vec<GroupAssignment>>,
    ) -> Result<GroupMap, String> {
        let _serial = self.proposing.lock().await;
        let (cterm, next) = {
            let mut ctrl = lock(&self.ctrl);
            if ctrl.role != CtrlRole::Coordinator {
                return Err("not the coordinator".into());
            }
            let st = &ctrl.store.state;
            let base = if from_held { &st.held } else { &st.committed };
            let version = st.held.version.max(st.committed.version) + 1;
            let Some(groups) = build(&ctrl, &base.clone(), version) else {
                return Ok(ctrl.store.state.committed.clone());
            };
            let st = &ctrl.store.state;
            let next = GroupMap {
                cterm: st.cterm,
                version,
                groups,
            };
            ctrl.store
                .update(|s| s.held = next.clone())
                .map_err(|e| e.to_string())?;
            (ctrl.store.state.cterm, next)
        };
        let request = Request::CtrlSync {
            from: self.cfg.node.clone(),
            cterm,
            map: next.clone(),
            committed: false,
        };
        let mut held = 1;
        let mut replies = self.call_each(&request);
        while held < self.majority() {
            let Some(reply) = replies.recv().await else {
                break;
            };
            if let Ok(Response::CtrlAck {
                cterm: t, success, ..
            }) = reply
            {
                if t > cterm {
                    self.enter_term(&mut lock(&self.ctrl), t);
                    return Err(format!("a newer coordinator term {t} exists"));
                }
                held += usize::from(success && t == cterm);
            }
        }
        if held < self.majority() {
            return Err(format!(
                "map version {} held by {held} of {} nodes, not a majority",
                next.version,
                self.cfg.nodes.len()
            ));
        }
        {
            let mut ctrl = lock(&self.ctrl);
            if ctrl.role != CtrlRole::Coordinator || ctrl.store.state.cterm != cterm {
                return Err("lost the coordinator role while committing".into());
            }
            ctrl.store
                .update(|s| s.committed = next.clone())
                .map_err(|e| e.to_string())?;
        }
        self.apply_map(&next);
        self.ctrl_kick.send_modify(|k| *k += 1);
        Ok(next)
    }

    /// Sends `request` to every peer at once, each call bounded by the peer
    /// timeout; the answers arrive as they come (the channel closes after the
    /// last), so a caller can stop at a majority instead of waiting for the slowest.
    fn call_each(self: &Arc<Self>, request: &Request) -> mpsc::UnboundedReceiver<Reply> {
        let (tx, rx) = mpsc::unbounded_channel();
        for p in self.peers.names() {
            let p = p.clone();
            let me = self.clone();
            let request = request.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = me.peers.call(&p, &request, me.cfg.peer_timeout).await;
                let _ = tx.send(r);
            });
        }
        rx
    }

    /// Whether a majority would vote for this node in the next term; also when
    /// it asked (the next attempt waits a fresh election timeout from then).
    async fn pre_vote(self: &Arc<Self>) -> (bool, Instant) {
        let asked = Instant::now();
        let (cterm, pos) = {
            let mut ctrl = lock(&self.ctrl);
            ctrl.heard = asked;
            ctrl.election_timeout = election_timeout(&self.cfg);
            (ctrl.store.state.cterm + 1, ctrl.store.state.held.position())
        };
        let request = Request::CtrlVote {
            from: self.cfg.node.clone(),
            cterm,
            map_cterm: pos.0,
            map_version: pos.1,
            pre: true,
        };
        let mut votes = 1;
        let mut replies = self.call_each(&request);
        while votes < self.majority() {
            let Some(reply) = replies.recv().await else {
                break;
            };
            if let Ok(Response::VoteReply { granted, .. }) = reply {
                votes += usize::from(granted);
            }
        }
        (votes >= self.majority(), asked)
    }

    async fn campaign(self: &Arc<Self>) {
        let (would_win, asked) = self.pre_vote().await;
        if !would_win {
            return;
        }
        let (cterm, pos) = {
            let mut ctrl = lock(&self.ctrl);
            if ctrl.heard > asked {
                // A coordinator spoke (or this node voted) meanwhile.
                return;
            }
            let cterm = ctrl.store.state.cterm + 1;
            let me = self.cfg.node.clone();
            if let Err(e) = ctrl.store.update(|s| {
                s.cterm = cterm;
                s.voted_for = Some(me);
            }) {
                log_event!(self.log, "storage-error", "candidacy not persisted: {e}");
                return;
            }
            ctrl.role = CtrlRole::Candidate;
            ctrl.coordinator = None;
            ctrl.heard = Instant::now();
            ctrl.election_timeout = election_timeout(&self.cfg);
            (cterm, ctrl.store.state.held.position())
        };
        log_event!(self.log, "election", "coordinator candidate cterm={cterm}");
        let request = Request::CtrlVote {
            from: self.cfg.node.clone(),
            cterm,
            map_cterm: pos.0,
            map_version: pos.1,
            pre: false,
        };
        let mut votes = 1;
        let mut replies = self.call_each(&request);
        while votes < self.majority() {
            let Some(reply) = replies.recv().await else {
                break;
            };
            if let Ok(Response::VoteReply { term, granted }) = reply {
                if term > cterm {
                    self.enter_term(&mut lock(&self.ctrl), term);
                    return;
                }
                votes += usize::from(granted);
            }
        }
        {
            let mut ctrl = lock(&self.ctrl);
            if ctrl.role != CtrlRole::Candidate
                || ctrl.store.state.cterm != cterm
                || votes < self.majority()
            {
                return;
            }
            ctrl.role = CtrlRole::Coordinator;
            ctrl.coordinator = Some(self.cfg.node.clone());
            let now = Instant::now();
            ctrl.acked_at = self.peers.names().map(|p| (p.clone(), now)).collect();
            ctrl.status.clear();
        }
        log_event!(
            self.log,
            "role-change",
            "coordinator=true cterm={cterm} votes={votes}"
        );
        // Commit the newest map held under this term (a fresh cluster's first map).
        let result = self
            .propose(true, |_, base, version| {
                Some(if base.groups.is_empty() {
                    self.initial_groups(version)
                } else {
                    base.groups.clone()
                })
            })
            .await;
        if let Err(e) = result {
            log_event!(self.log, "step-down", "coordinator cterm={cterm}: {e}");
            let mut ctrl = lock(&self.ctrl);
            if ctrl.store.state.cterm == cterm && ctrl.role == CtrlRole::Coordinator {
                ctrl.role = CtrlRole::Voter;
                ctrl.coordinator = None;
            }
        }
    }

    /// Elections, check-quorum and failover decisions, every heartbeat.
    pub(super) async fn control_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat) => {}
                _ = stopped(&mut shutdown) => return,
            }
            let (campaign, failover) = {
                let mut ctrl = lock(&self.ctrl);
                match ctrl.role {
                    CtrlRole::Coordinator => {
                        let recent = ctrl
                            .acked_at
                            .values()
                            .filter(|t| t.elapsed() < self.cfg.failover_timeout)
                            .count();
                        if recent + 1 < self.majority() {
                            log_event!(
                                self.log,
                                "step-down",
                                "coordinator: no majority heard within {:?}",
                                self.cfg.failover_timeout
                            );
                            ctrl.role = CtrlRole::Voter;
                            ctrl.coordinator = None;
                            ctrl.heard = Instant::now();
                            (false, false)
                        } else {
                            let st = &ctrl.store.state;
                            (false, st.committed.cterm == st.cterm)
                        }
                    }
                    _ => (
                        self.eligible(&self.cfg.node)
                            && ctrl.heard.elapsed() >= ctrl.election_timeout,
                        false,
                    ),
                }
            };
            if campaign {
                self.campaign().await;
            } else if failover {
                self.failover().await;
            }
        }
    }

    /// Coordinator side: sends `peer` the committed map every heartbeat.
    pub(super) async fn ctrl_peer_loop(
        self: Arc<Self>,
        peer: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut kicks = self.ctrl_kick.subscribe();
        loop {
            let request = {
                let ctrl = lock(&self.ctrl);
                let st = &ctrl.store.state;
                (ctrl.role == CtrlRole::Coordinator && st.committed.cterm == st.cterm).then(|| {
                    Request::CtrlSync {
                        from: self.cfg.node.clone(),
                        cterm: st.cterm,
                        map: st.committed.clone(),
                        committed: true,
                    }
                })
            };
            if let Some(request) = request {
                let reply = self
                    .peers
                    .call(&peer, &request, self.cfg.peer_timeout)
                    .await;
                if let Ok(Response::CtrlAck {
                    cterm,
                    success,
                    map_version,
                    status,
                }) = reply
                {
                    let mut ctrl = lock(&self.ctrl);
                    if cterm > ctrl.store.state.cterm {
                        self.enter_term(&mut ctrl, cterm);
                    } else if success {
                        ctrl.acked_at.insert(peer.clone(), Instant::now());
                        ctrl.status.insert(peer.clone(), (map_version, status));
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat) => {}
                _ = kicks.changed() => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}
