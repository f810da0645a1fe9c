//! The data layer of `metadata-master`: one replicated log per data group
//! (`<data-dir>/group-<g>/raft.log`, the log of [`crate::modes::replog`]). The master
//! the coordinator assigned appends each write and acknowledges it once every
//! member of the group's in-sync set (ISR) holds it ("all-replica ack"); it also
//! replicates to the nodes outside the ISR so they catch up and rejoin it. Replicas
//! accept entries only from the highest epoch they have seen, so a deposed master
//! cannot get its in-sync set's acknowledgement (fencing). A master asks the
//! coordinator to drop a replica that stopped answering and to re-add one that
//! caught up; until the committed map drops a replica, the master keeps waiting for
//! it, and it waits for a replica it asked to add from the moment it asks, so the
//! master's acknowledgement set always covers the committed ISR.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::{lock, MetadataMaster};
use crate::data::Data;
use crate::log_event;
use crate::modes::ops::{ack, answer_read, apply_error};
use crate::modes::replog::apply::{Applier, Waiter};
use crate::modes::replog::log::RaftLog;
use crate::peers::PeerError;
use crate::proto::{
    Cmd, Entry, ErrorCode, ErrorReply, GroupAssignment, GroupStatus, Request, Response, RoleKind,
};
use crate::server::stopped;

/// Most entries sent in one append.
const MAX_BATCH: usize = 500;

/// One data group on one node (guarded by one lock, never held across `.await`).
pub(super) struct GroupCore {
    /// `log.term` is the highest epoch this node has seen for the group.
    pub(super) log: RaftLog,
    /// Acting as the group's master in epoch `log.term`.
    pub(super) leading: bool,
    pub(super) master: Option<String>,
    /// Master: the committed in-sync set, and replicas it asked to add.
    pub(super) isr: BTreeSet<String>,
    pending_add: BTreeSet<String>,
    isr_busy: bool,
    pub(super) commit: u64,
    applied: u64,
    pub(super) data: Data,
    waiters: BTreeMap<u64, Waiter>,
    matched: BTreeMap<String, u64>,
    next: BTreeMap<String, u64>,
    acked_at: BTreeMap<String, Instant>,
}

impl GroupCore {
    pub(super) fn new(log: RaftLog) -> GroupCore {
        GroupCore {
            log,
            leading: false,
            master: None,
            isr: BTreeSet::new(),
            pending_add: BTreeSet::new(),
            isr_busy: false,
            commit: 0,
            applied: 0,
            data: Data::default(),
            waiters: BTreeMap::new(),
            matched: BTreeMap::new(),
            next: BTreeMap::new(),
            acked_at: BTreeMap::new(),
        }
    }

    pub(super) fn role_kind(&self) -> RoleKind {
        if self.leading {
            RoleKind::Master
        } else {
            RoleKind::Replica
        }
    }

    pub(super) fn status(&self) -> GroupStatus {
        GroupStatus {
            epoch: self.log.term,
            master: self.leading,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        }
    }

    /// The replicas whose acknowledgement a write needs (the master excluded).
    fn ack_set(&self, me: &str) -> BTreeSet<String> {
        self.isr
            .union(&self.pending_add)
            .filter(|n| *n != me)
            .cloned()
            .collect()
    }

    /// This group's commit point, applied data and waiting clients.
    fn applier(&mut self) -> Applier<'_> {
        Applier {
            log: &self.log,
            commit: &mut self.commit,
            applied: &mut self.applied,
            data: &mut self.data,
            waiters: &mut self.waiters,
        }
    }

    /// Raises the commit index and applies, answering waiting clients.
    fn advance_commit(&mut self, to: u64) {
        self.applier().advance_commit(to);
    }

    /// Rebuilds the data from the log up to `commit` (after applied entries were
    /// replaced, which the fencing should make impossible; kept as a safety net).
    fn rebuild(&mut self, commit: u64) {
        self.applier().rebuild(commit);
    }

    /// Stops acting as master; waiting clients get no answer (indeterminate).
    fn step_down(&mut self) {
        self.leading = false;
        self.waiters.clear();
        self.pending_add.clear();
        self.isr_busy = false;
    }
}

impl MetadataMaster {
    /// Moves `core` to a higher `epoch` it learned of, stepping down if it led.
    fn adopt_epoch(&self, g: usize, core: &mut GroupCore, epoch: u64, master: Option<&str>) {
        if epoch > core.log.term {
            if let Err(e) = core.log.set_state(epoch, None) {
                log_event!(self.log, "storage-error", "group {g} epoch {epoch}: {e}");
            }
            if core.leading {
                core.step_down();
                log_event!(
                    self.log,
                    "role-change",
                    "group={g} role=replica epoch={epoch}"
                );
            }
            core.master = master.map(str::to_string);
        }
    }

    /// Acts on group `g`'s assignment in a committed map.
    pub(super) fn apply_assignment(&self, g: usize, a: &GroupAssignment) {
        let me = self.cfg.node.as_str();
        let mut core = lock(&self.groups[g]);
        if a.epoch < core.log.term {
            return;
        }
        let mine = a.master.as_deref() == Some(me);
        if a.epoch > core.log.term {
            self.adopt_epoch(g, &mut core, a.epoch, a.master.as_deref());
            if mine && core.log.term == a.epoch {
                self.lead(g, &mut core, a);
            }
        } else if core.leading && mine {
            // The same epoch: the ISR changed.
            core.isr = a.isr.iter().cloned().collect();
            core.pending_add.retain(|n| !a.isr.contains(n));
            self.advance_master_commit(&mut core);
        } else if !core.leading {
            // An epoch assigned to this node that it is not acting in was led by
            // this node before a restart: it waits for the coordinator to reassign.
            core.master = a.master.clone();
        }
    }

    fn lead(&self, g: usize, core: &mut GroupCore, a: &GroupAssignment) {
        let epoch = a.epoch;
        core.leading = true;
        core.master = Some(self.cfg.node.clone());
        core.isr = a.isr.iter().cloned().collect();
        core.pending_add.clear();
        core.isr_busy = false;
        let next = core.log.last_index() + 1;
        let now = Instant::now();
        core.matched.clear();
        core.next.clear();
        core.acked_at.clear();
        for p in self.peers.names() {
            core.matched.insert(p.clone(), 0);
            core.next.insert(p.clone(), next);
            core.acked_at.insert(p.clone(), now);
        }
        log_event!(
            self.log,
            "role-change",
            "group={g} role=master epoch={epoch} isr={}",
            a.isr.join(",")
        );
        // An entry of the new epoch commits everything before it once the ISR holds it.
        if let Err(e) = core.log.append(Entry {
            term: epoch,
            cmd: Cmd::Noop,
        }) {
            log_event!(self.log, "storage-error", "group {g} noop: {e}");
        }
        self.advance_master_commit(core);
        self.kick.send_modify(|k| *k += 1);
    }

    /// Master: commits what every member of the acknowledgement set holds.
    fn advance_master_commit(&self, core: &mut GroupCore) {
        let last = core.log.last_index();
        let candidate = core
            .ack_set(&self.cfg.node)
            .iter()
            .map(|n| core.matched.get(n).copied().unwrap_or(0))
            .min()
            .unwrap_or(last)
            .min(last);
        if candidate > core.commit && core.log.term_at(candidate) == Some(core.log.term) {
            core.advance_commit(candidate);
        }
    }

    pub(super) fn group_statuses(&self) -> Vec<GroupStatus> {
        self.groups.iter().map(|g| lock(g).status()).collect()
    }

    /// A replica's side of `group_append`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_group_append(
        &self,
        from: &str,
        g: usize,
        epoch: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Response {
        let Some(group) = self.groups.get(g) else {
            return bad(format!("group {g} does not exist"));
        };
        let mut core = lock(group);
        let reply = |core: &GroupCore, success: bool| Response::EntriesAck {
            term: core.log.term,
            success,
            last_index: core.log.last_index(),
        };
        if epoch < core.log.term {
            return reply(&core, false);
        }
        if epoch == core.log.term && core.leading {
            log_event!(
                self.log,
                "dual-master",
                "group={g} {from} also leads epoch {epoch}"
            );
            return reply(&core, false);
        }
        self.adopt_epoch(g, &mut core, epoch, Some(from));
        if core.master.as_deref() != Some(from) {
            log_event!(self.log, "follow", "group={g} master={from} epoch={epoch}");
            core.master = Some(from.to_string());
        }
        if core.log.term_at(prev_index) != Some(prev_term) {
            return reply(&core, false);
        }
        let count = entries.len() as u64;
        match core.log.merge(prev_index, entries) {
            Ok(Some(cut)) => {
                if cut <= core.applied {
                    log_event!(
                        self.log,
                        "rollback",
                        "group={g} applied entries {cut}..={} replaced by {from}",
                        core.applied
                    );
                    core.rebuild(cut - 1);
                }
            }
            Ok(None) => {}
            Err(e) => {
                log_event!(
                    self.log,
                    "storage-error",
                    "group {g} append from {from}: {e}"
                );
                return reply(&core, false);
            }
        }
        core.advance_commit(commit.min(prev_index + count));
        Response::EntriesAck {
            term: core.log.term,
            success: true,
            last_index: prev_index + count,
        }
    }

    /// How long a master waits for its ISR before a write is indeterminate: long
    /// enough to drop a dead replica from the ISR and commit without it.
    fn write_timeout(&self) -> Duration {
        self.cfg.failover_timeout * 2 + self.cfg.peer_timeout * 2
    }

    /// The master's write path: append, replicate to the ISR, answer once applied.
    pub(super) async fn write(&self, g: usize, cmd: Cmd) -> Response {
        let (rx, index, epoch) = {
            let mut core = lock(&self.groups[g]);
            if !core.leading {
                return not_master(&self.cfg.node, g);
            }
            let epoch = core.log.term;
            let index = match core.log.append(Entry {
                term: epoch,
                cmd: cmd.clone(),
            }) {
                Ok(i) => i,
                Err(e) => {
                    log_event!(self.log, "storage-error", "group {g} append: {e}");
                    return Response::Error(ErrorReply::indeterminate(
                        ErrorCode::Storage,
                        format!("{}: {e}", self.cfg.node),
                    ));
                }
            };
            let (tx, rx) = oneshot::channel();
            core.waiters.insert(index, Waiter { term: epoch, tx });
            self.advance_master_commit(&mut core);
            (rx, index, epoch)
        };
        self.kick.send_modify(|k| *k += 1);
        match tokio::time::timeout(self.write_timeout(), rx).await {
            Ok(Ok(Ok(()))) => ack(&cmd, &self.cfg.node, epoch),
            Ok(Ok(Err(e))) => apply_error(e),
            _ => Response::Error(ErrorReply::indeterminate(
                ErrorCode::NotReplicated,
                format!(
                    "{}: group {g} entry {index} of epoch {epoch} was not acknowledged by the whole in-sync set within {:?} (replicas unreachable, or mastership lost)",
                    self.cfg.node,
                    self.write_timeout()
                ),
            )),
        }
    }

    /// A non-local read on the master: served once every member of the
    /// acknowledgement set confirms it has seen no newer epoch (any newer master was
    /// in that set before it could commit), after an entry of this epoch committed.
    pub(super) async fn read_as_master(self: &Arc<Self>, g: usize, request: &Request) -> Response {
        let (epoch, members) = {
            let core = lock(&self.groups[g]);
            if !core.leading {
                return not_master(&self.cfg.node, g);
            }
            if core.log.term_at(core.commit) != Some(core.log.term) {
                return fail(
                    ErrorCode::NotMaster,
                    format!(
                        "{}: group {g} master has not yet committed an entry of its epoch",
                        self.cfg.node
                    ),
                );
            }
            (core.log.term, core.ack_set(&self.cfg.node))
        };
        let probe = Request::GroupAppend {
            from: self.cfg.node.clone(),
            group: g,
            epoch,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
        };
        let calls: Vec<_> = members
            .into_iter()
            .map(|p| {
                let me = self.clone();
                let probe = probe.clone();
                tokio::spawn(async move {
                    let r = me.peers.call(&p, &probe, me.cfg.peer_timeout).await;
                    (p, r)
                })
            })
            .collect();
        for call in calls {
            let confirmed = match call.await {
                Ok((_, Ok(Response::EntriesAck { term, .. }))) if term == epoch => Ok(()),
                Ok((p, Ok(Response::EntriesAck { term, .. }))) => {
                    Err(format!("{p} has seen epoch {term}"))
                }
                Ok((p, Ok(other))) => Err(format!("{p} answered {}", super::kind(&other))),
                Ok((p, Err(e))) => Err(format!("{p} did not confirm: {e}")),
                Err(e) => Err(format!("confirmation task failed: {e}")),
            };
            if let Err(why) = confirmed {
                return fail(
                    ErrorCode::NotMaster,
                    format!(
                        "{}: group {g} mastership of epoch {epoch} not confirmed ({why})",
                        self.cfg.node
                    ),
                );
            }
        }
        let core = lock(&self.groups[g]);
        if !core.leading || core.log.term != epoch {
            return not_master(&self.cfg.node, g);
        }
        answer_read(&core.data, request, &self.cfg.node, RoleKind::Master, epoch)
    }

    /// Master side: keeps `peer` replicated and heartbeated for group `g`.
    pub(super) async fn peer_loop(
        self: Arc<Self>,
        g: usize,
        peer: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut kicks = self.kick.subscribe();
        loop {
            let request = {
                let core = lock(&self.groups[g]);
                if !core.leading {
                    None
                } else {
                    let next = core.next.get(&peer).copied().unwrap_or(1).max(1);
                    core.log
                        .term_at(next - 1)
                        .map(|prev_term| Request::GroupAppend {
                            from: self.cfg.node.clone(),
                            group: g,
                            epoch: core.log.term,
                            prev_index: next - 1,
                            prev_term,
                            entries: core.log.entries_from(next, MAX_BATCH),
                            commit: core.commit,
                        })
                }
            };
            let mut more = false;
            if let Some(request) = request {
                let reply = self
                    .peers
                    .call(&peer, &request, self.cfg.peer_timeout)
                    .await;
                more = self.on_append_reply(g, &peer, &request, reply);
                self.check_isr(g, &peer);
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat) => {}
                _ = kicks.changed() => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Takes a replica's answer; `true` when there is more to send it now.
    fn on_append_reply(
        &self,
        g: usize,
        peer: &str,
        request: &Request,
        reply: Result<Response, PeerError>,
    ) -> bool {
        let Request::GroupAppend {
            epoch,
            prev_index,
            entries,
            ..
        } = request
        else {
            return false;
        };
        let Ok(Response::EntriesAck {
            term,
            success,
            last_index,
        }) = reply
        else {
            return false;
        };
        let mut core = lock(&self.groups[g]);
        if term > core.log.term {
            log_event!(
                self.log,
                "step-down",
                "group={g} {peer} has seen epoch {term}"
            );
            self.adopt_epoch(g, &mut core, term, None);
            return false;
        }
        if !core.leading || core.log.term != *epoch {
            return false;
        }
        core.acked_at.insert(peer.to_string(), Instant::now());
        if success {
            let matched = prev_index + entries.len() as u64;
            let m = core.matched.entry(peer.to_string()).or_insert(0);
            *m = (*m).max(matched);
            core.next.insert(peer.to_string(), matched + 1);
            self.advance_master_commit(&mut core);
        } else {
            let next = core.next.get(peer).copied().unwrap_or(1);
            let back = next.saturating_sub(1).min(last_index + 1).max(1);
            core.next.insert(peer.to_string(), back);
        }
        core.next
            .get(peer)
            .is_some_and(|n| *n <= core.log.last_index())
    }

    /// Master: asks the coordinator to drop `peer` from the ISR when it stopped
    /// answering, or to add it back once it holds everything.
    fn check_isr(self: &Arc<Self>, g: usize, peer: &str) {
        let change = {
            let mut core = lock(&self.groups[g]);
            if !core.leading || core.isr_busy {
                return;
            }
            let silent = core
                .acked_at
                .get(peer)
                .is_none_or(|t| t.elapsed() >= self.cfg.failover_timeout);
            let held = core.matched.get(peer).copied().unwrap_or(0);
            let caught_up = held >= core.log.last_index() && held >= core.commit;
            let waited_for = core.isr.contains(peer) || core.pending_add.contains(peer);
            let (add, remove) = if waited_for && silent {
                (vec![], vec![peer.to_string()])
            } else if !core.isr.contains(peer) && !silent && caught_up {
                // From now on writes wait for it too.
                core.pending_add.insert(peer.to_string());
                (vec![peer.to_string()], vec![])
            } else {
                return;
            };
            core.isr_busy = true;
            (core.log.term, add, remove)
        };
        let me = self.clone();
        tokio::spawn(async move {
            let (epoch, add, remove) = change;
            let outcome = me.request_isr_change(g, epoch, add, remove).await;
            let mut core = lock(&me.groups[g]);
            core.isr_busy = false;
            match outcome {
                Ok(a) if core.leading && a.epoch == core.log.term => {
                    // The committed answer to the one request in flight.
                    core.isr = a.isr.iter().cloned().collect();
                    core.pending_add.clear();
                    me.advance_master_commit(&mut core);
                }
                Ok(_) => {}
                Err(e) => log_event!(me.log, "isr-change-failed", "group={g} {e}"),
            }
        });
    }
}

fn fail(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

fn bad(message: String) -> Response {
    fail(ErrorCode::BadRequest, message)
}

fn not_master(node: &str, g: usize) -> Response {
    fail(
        ErrorCode::NotMaster,
        format!("{node} is not master of group {g}"),
    )
}
