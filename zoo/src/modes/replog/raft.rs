//! The replicated-log engine behind the log-based modes: elections (terms, one vote
//! per term, the most up-to-date log wins), one replication loop per peer on the
//! master (append entries, heartbeats, conflict back-off), commit by the flavor's
//! acknowledgement rule, apply in log order, and the read-index round raft uses to
//! confirm it still leads before serving a read.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::{error, lock, Applier, Core, Flavor, RepLog, Role};
use crate::config::Config;
use crate::log_event;
use crate::proto::{Cmd, Entry, ErrorCode, Request, Response, RoleKind};
use crate::server::stopped;

/// Most entries sent in one append.
const MAX_BATCH: usize = 500;

/// A randomized election timeout in [failover, 2 × failover).
pub(super) fn election_timeout(cfg: &Config) -> Duration {
    let base = cfg.failover_timeout.as_millis() as u64;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let salt: u64 = cfg.node.bytes().map(u64::from).sum();
    Duration::from_millis(base + (nanos / 1000 + salt * 7919) % base.max(1))
}

impl Core {
    pub(super) fn role_kind(&self) -> RoleKind {
        if self.role == Role::Leader {
            RoleKind::Master
        } else {
            RoleKind::Replica
        }
    }

    pub(super) fn reset_leader_state<'a>(&mut self, peers: impl Iterator<Item = &'a String>) {
        let next = self.log.last_index() + 1;
        let now = Instant::now();
        self.matched.clear();
        self.next.clear();
        self.acked_round.clear();
        self.acked_at.clear();
        for p in peers {
            self.matched.insert(p.clone(), 0);
            self.next.insert(p.clone(), next);
            self.acked_at.insert(p.clone(), now);
        }
        self.degraded = false;
    }

    /// This core's commit point, applied data and waiting clients.
    fn applier(&mut self) -> Applier<'_> {
        Applier {
            log: &self.log,
            commit: &mut self.commit,
            applied: &mut self.applied,
            data: &mut self.data,
            waiters: &mut self.waiters,
        }
    }

    /// Raises the commit index (never lowers it) and applies newly committed entries,
    /// answering the clients that wait for them.
    pub(super) fn advance_commit(&mut self, to: u64) {
        self.applier().advance_commit(to);
    }

    /// Rebuilds the data from the log after entries this node had applied were
    /// replaced (only the flawed flavors ever commit entries that can be replaced).
    fn rebuild(&mut self) {
        let to = self.commit;
        self.applier().rebuild(to);
    }
}

impl RepLog {
    /// Moves to `term` as a follower (of `leader`, when known), persisting the term.
    fn follow(&self, core: &mut Core, term: u64, leader: Option<&str>) {
        if term > core.log.term {
            // A new term: the old vote and master no longer count.
            if let Err(e) = core.log.set_state(term, None) {
                log_event!(self.log, "storage-error", "term {term} not persisted: {e}");
            }
        }
        let was = core.role;
        core.role = Role::Follower;
        match leader {
            Some(l) => {
                if core.leader.as_deref() != Some(l) {
                    log_event!(self.log, "follow", "master={l} term={term}");
                }
                core.leader = Some(l.to_string());
            }
            None => core.leader = None,
        }
        if was == Role::Leader {
            log_event!(self.log, "role-change", "role=replica term={term}");
            core.degraded = false;
        }
    }

    /// Leader: commits what the flavor's acknowledgement rule allows.
    pub(super) fn advance_leader_commit(&self, core: &mut Core) {
        let last = core.log.last_index();
        if self.flavor == Flavor::FixedMaster || core.degraded {
            core.advance_commit(last);
            return;
        }
        let needed = match self.flavor {
            Flavor::Sync => self.cfg.nodes.len(),
            Flavor::SemiSync => 2.min(self.cfg.nodes.len()),
            _ => self.majority(),
        };
        // The highest index held by `needed` nodes (this one holds everything).
        let mut held: Vec<u64> = core.matched.values().copied().collect();
        held.push(last);
        held.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = held.get(needed - 1) else {
            return;
        };
        // Only an entry of the current term commits by counting (and with it all
        // before it): an older one may still be replaced.
        if candidate > core.commit && core.log.term_at(candidate) == Some(core.log.term) {
            core.advance_commit(candidate);
        }
    }

    pub(super) fn on_vote(
        &self,
        from: &str,
        term: u64,
        last_index: u64,
        last_term: u64,
    ) -> Response {
        let mut core = lock(&self.core);
        if !self.flavor.elects() {
            return error(
                ErrorCode::Unsupported,
                format!("mode {} has no elections", self.flavor.name()),
            );
        }
        if term > core.log.term {
            self.follow(&mut core, term, None);
        }
        let up_to_date = (last_term, last_index) >= (core.log.last_term(), core.log.last_index());
        let free = core.log.voted_for.as_deref().is_none_or(|v| v == from);
        let granted = term == core.log.term && free && up_to_date;
        if granted && core.log.voted_for.is_none() {
            if let Err(e) = core.log.set_state(term, Some(from.to_string())) {
                log_event!(self.log, "storage-error", "vote not persisted: {e}");
                return Response::VoteReply {
                    term: core.log.term,
                    granted: false,
                };
            }
            log_event!(self.log, "vote", "for={from} term={term}");
        }
        if granted {
            core.heard = Instant::now();
        }
        Response::VoteReply {
            term: core.log.term,
            granted,
        }
    }

    pub(super) fn on_append(
        &self,
        from: &str,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Response {
        let mut core = lock(&self.core);
        let reject = |core: &Core| Response::EntriesAck {
            term: core.log.term,
            success: false,
            last_index: core.log.last_index(),
        };
        if term < core.log.term {
            return reject(&core);
        }
        if core.role == Role::Leader && term == core.log.term {
            log_event!(self.log, "dual-master", "{from} also leads term {term}");
            return reject(&core);
        }
        self.follow(&mut core, term, Some(from));
        core.heard = Instant::now();
        if core.log.term_at(prev_index) != Some(prev_term) {
            return reject(&core);
        }
        let count = entries.len() as u64;
        match core.log.merge(prev_index, entries) {
            Ok(Some(from_index)) => {
                core.waiters.retain(|i, _| *i < from_index);
                if from_index <= core.applied {
                    log_event!(
                        self.log,
                        "rollback",
                        "entries {from_index}..={} replaced by master {from}; applied data rebuilt (acknowledged writes among them are lost)",
                        core.applied
                    );
                    core.commit = core.commit.min(from_index - 1);
                    core.rebuild();
                }
            }
            Ok(None) => {}
            Err(e) => {
                log_event!(self.log, "storage-error", "append from {from}: {e}");
                return reject(&core);
            }
        }
        // raft applies what the master says is committed; the master-slave flavors
        // apply whatever the master sends, as a MySQL or PostgreSQL replica does.
        let applicable = if self.flavor == Flavor::Raft {
            commit.min(prev_index + count)
        } else {
            prev_index + count
        };
        core.advance_commit(applicable);
        Response::EntriesAck {
            term: core.log.term,
            success: true,
            last_index: prev_index + count,
        }
    }

    /// raft read-index: the commit index now, confirmed by a heartbeat round that a
    /// majority acknowledges in this term, and applied before the read is served.
    pub(super) async fn confirm_leadership(&self) -> Result<(), String> {
        let (round, term) = {
            let mut core = lock(&self.core);
            if core.role != Role::Leader {
                return Err("not master".into());
            }
            if core.log.term_at(core.commit) != Some(core.log.term) {
                return Err("master has not yet committed an entry of its term".into());
            }
            core.round += 1;
            (core.round, core.log.term)
        };
        let mut acks = self.acks.subscribe();
        self.kick.send_modify(|k| *k += 1);
        let deadline = Instant::now() + self.cfg.peer_timeout * 2;
        loop {
            {
                let core = lock(&self.core);
                if core.role != Role::Leader || core.log.term != term {
                    return Err("lost mastership during the read".into());
                }
                let acks = 1 + core.acked_round.values().filter(|r| **r >= round).count();
                if acks >= self.majority() {
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("a majority did not confirm mastership in time".into());
            }
            let _ = tokio::time::timeout(left, acks.changed()).await;
        }
    }

    async fn campaign(self: &Arc<Self>) {
        let (term, last_index, last_term) = {
            let mut core = lock(&self.core);
            let term = core.log.term.saturating_add(1);
            if let Err(e) = core.log.set_state(term, Some(self.cfg.node.clone())) {
                log_event!(self.log, "storage-error", "candidacy not persisted: {e}");
                return;
            }
            core.role = Role::Candidate;
            core.leader = None;
            core.heard = Instant::now();
            core.election_timeout = election_timeout(&self.cfg);
            (term, core.log.last_index(), core.log.last_term())
        };
        log_event!(
            self.log,
            "election",
            "candidate term={term} last_index={last_index} last_term={last_term}"
        );
        let request = Request::Vote {
            from: self.cfg.node.clone(),
            term,
            last_index,
            last_term,
        };
        let calls = self
            .peers
            .names()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| {
                let me = self.clone();
                let request = request.clone();
                tokio::spawn(async move { me.peers.call(&p, &request, me.cfg.peer_timeout).await })
            });
        let mut votes = 1;
        for call in calls.collect::<Vec<_>>() {
            if let Ok(Ok(Response::VoteReply { term: t, granted })) = call.await {
                if t > term {
                    let mut core = lock(&self.core);
                    if t > core.log.term {
                        self.follow(&mut core, t, None);
                    }
                    return;
                }
                votes += usize::from(granted);
            }
        }
        let mut core = lock(&self.core);
        if core.role != Role::Candidate || core.log.term != term || votes < self.majority() {
            return;
        }
        core.role = Role::Leader;
        core.leader = Some(self.cfg.node.clone());
        core.reset_leader_state(self.peers.names());
        log_event!(
            self.log,
            "role-change",
            "role=master term={term} votes={votes}"
        );
        if self.flavor != Flavor::Raft {
            // A promoted replica serves everything it holds as the truth. Clients
            // still waiting from an earlier term of this node's own mastership are
            // not acknowledged by that: their entries never got the replicas' acks
            // this flavor promises (sync: every replica), so they get no answer
            // here and see the write as indeterminate.
            core.waiters.clear();
            let last = core.log.last_index();
            core.advance_commit(last);
        }
        // Commit an entry of the new term, which commits everything before it.
        if let Err(e) = core.log.append(Entry {
            term,
            cmd: Cmd::Noop,
        }) {
            log_event!(self.log, "storage-error", "noop: {e}");
        }
        self.advance_leader_commit(&mut core);
        drop(core);
        self.kick.send_modify(|k| *k += 1);
    }

    /// Followers start elections; a raft master without a majority steps down.
    async fn election_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat) => {}
                _ = stopped(&mut shutdown) => return,
            }
            let start = {
                let mut core = lock(&self.core);
                match core.role {
                    Role::Leader => {
                        if self.flavor == Flavor::Raft {
                            let now = Instant::now();
                            let recent = core
                                .acked_at
                                .values()
                                .filter(|t| now.duration_since(**t) < self.cfg.failover_timeout)
                                .count();
                            if recent + 1 < self.majority() {
                                log_event!(
                                    self.log,
                                    "step-down",
                                    "no majority heard within {:?}",
                                    self.cfg.failover_timeout
                                );
                                let term = core.log.term;
                                self.follow(&mut core, term, None);
                                core.leader = None;
                                core.heard = Instant::now();
                            }
                        }
                        false
                    }
                    _ => core.heard.elapsed() >= core.election_timeout,
                }
            };
            if start && self.flavor.elects() {
                self.campaign().await;
            }
        }
    }

    /// Master side: keeps `peer` replicated and heartbeated.
    async fn peer_loop(self: Arc<Self>, peer: String, mut shutdown: watch::Receiver<bool>) {
        let mut kicks = self.kick.subscribe();
        loop {
            let request = {
                let core = lock(&self.core);
                if core.role != Role::Leader {
                    None
                } else {
                    let next = core.next.get(&peer).copied().unwrap_or(1).max(1);
                    let prev = next - 1;
                    core.log.term_at(prev).map(|prev_term| {
                        (
                            Request::AppendEntries {
                                from: self.cfg.node.clone(),
                                term: core.log.term,
                                prev_index: prev,
                                prev_term,
                                entries: core.log.entries_from(next, MAX_BATCH),
                                commit: core.commit,
                            },
                            core.log.term,
                            core.round,
                        )
                    })
                }
            };
            let mut answered = false;
            if let Some((request, term, round)) = request {
                let reply = self
                    .peers
                    .call(&peer, &request, self.cfg.peer_timeout)
                    .await;
                answered = self.on_append_reply(&peer, term, round, &request, reply);
            }
            let more = answered && {
                let core = lock(&self.core);
                core.role == Role::Leader
                    && core
                        .next
                        .get(&peer)
                        .is_some_and(|n| *n <= core.log.last_index())
            };
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

    fn on_append_reply(
        &self,
        peer: &str,
        term: u64,
        round: u64,
        request: &Request,
        reply: Result<Response, crate::peers::PeerError>,
    ) -> bool {
        let Request::AppendEntries {
            prev_index,
            entries,
            ..
        } = request
        else {
            return false;
        };
        let Ok(Response::EntriesAck {
            term: t,
            success,
            last_index,
        }) = reply
        else {
            return false;
        };
        let mut core = lock(&self.core);
        if t > core.log.term {
            self.follow(&mut core, t, None);
            return false;
        }
        if core.role != Role::Leader || core.log.term != term {
            return false;
        }
        core.acked_at.insert(peer.to_string(), Instant::now());
        let r = core.acked_round.entry(peer.to_string()).or_insert(0);
        *r = (*r).max(round);
        if success {
            let matched = prev_index + entries.len() as u64;
            let m = core.matched.entry(peer.to_string()).or_insert(0);
            *m = (*m).max(matched);
            core.next.insert(peer.to_string(), matched + 1);
            if core.degraded && matched >= core.log.last_index() {
                log_event!(
                    self.log,
                    "semi-sync-restored",
                    "{peer} caught up at {matched}"
                );
                core.degraded = false;
            }
            self.advance_leader_commit(&mut core);
        } else {
            let next = core.next.get(peer).copied().unwrap_or(1);
            let back = next.saturating_sub(1).min(last_index + 1).max(1);
            core.next.insert(peer.to_string(), back);
        }
        drop(core);
        self.acks.send_modify(|k| *k += 1);
        true
    }
}

pub(super) fn spawn(node: &Arc<RepLog>, shutdown: watch::Receiver<bool>) {
    tokio::spawn(node.clone().election_loop(shutdown.clone()));
    for peer in node.peers.names() {
        tokio::spawn(node.clone().peer_loop(peer.clone(), shutdown.clone()));
    }
}
