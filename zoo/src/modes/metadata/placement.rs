//! The coordinator's decisions in `metadata-master`: a fresh cluster's first map,
//! moving a group whose master is gone to the most up-to-date reachable member of
//! its in-sync set (in a new epoch), and a master's requests to drop a silent
//! replica from the in-sync set or to add back one that caught up.

use std::sync::Arc;

use super::control::Ctrl;
use super::{fail, lock, MetadataMaster};
use crate::log_event;
use crate::proto::{ErrorCode, GroupAssignment, Request, Response};

impl MetadataMaster {
    /// The coordinator's side of `isr_change`.
    pub(super) async fn on_isr_change(
        self: &Arc<Self>,
        from: &str,
        g: usize,
        epoch: u64,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Response {
        if g >= self.groups.len() {
            return fail(ErrorCode::BadRequest, format!("group {g} does not exist"));
        }
        if let Some(n) = add
            .iter()
            .chain(&remove)
            .find(|n| !self.cfg.nodes.contains_key(*n))
        {
            return fail(ErrorCode::BadRequest, format!("`{n}` is not a node"));
        }
        let result = self
            .propose(false, |_, base, _| {
                let a = base.groups.get(g)?;
                if a.epoch != epoch || a.master.as_deref() != Some(from) {
                    return None;
                }
                let mut isr: Vec<String> = a
                    .isr
                    .iter()
                    .chain(&add)
                    .filter(|n| !remove.contains(n) || a.master.as_ref() == Some(*n))
                    .cloned()
                    .collect();
                isr.sort();
                isr.dedup();
                if isr == a.isr {
                    return None;
                }
                let mut groups = base.groups.clone();
                groups[g].isr = isr;
                Some(groups)
            })
            .await;
        match result {
            Ok(map) => match map.groups.get(g) {
                Some(a) if a.epoch == epoch && a.master.as_deref() == Some(from) => {
                    log_event!(
                        self.log,
                        "isr",
                        "group={g} epoch={epoch} isr={} version={}",
                        a.isr.join(","),
                        map.version
                    );
                    Response::IsrChanged {
                        version: map.version,
                        assignment: a.clone(),
                    }
                }
                _ => fail(
                    ErrorCode::NotMaster,
                    format!("{from} is not master of group {g} in epoch {epoch}"),
                ),
            },
            Err(e) => fail(ErrorCode::NoMaster, format!("{}: {e}", self.cfg.node)),
        }
    }

    /// A master's request to change its group's in-sync set, sent to the
    /// coordinator it follows (handled here when that is this node).
    pub(super) async fn request_isr_change(
        self: &Arc<Self>,
        g: usize,
        epoch: u64,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<GroupAssignment, String> {
        let coordinator = lock(&self.ctrl).coordinator.clone();
        let Some(coordinator) = coordinator else {
            return Err("no coordinator known".into());
        };
        let reply = if coordinator == self.cfg.node {
            Box::pin(self.on_isr_change(&coordinator, g, epoch, add, remove)).await
        } else {
            let request = Request::IsrChange {
                from: self.cfg.node.clone(),
                group: g,
                epoch,
                add,
                remove,
            };
            // Long enough for the coordinator to commit the change at a majority.
            let deadline = self.cfg.peer_timeout * 3;
            self.peers
                .call(&coordinator, &request, deadline)
                .await
                .map_err(|e| format!("coordinator {coordinator}: {e}"))?
        };
        match reply {
            Response::IsrChanged { assignment, .. } => Ok(assignment),
            Response::Error(e) => Err(format!("coordinator {coordinator}: {e}")),
            other => Err(format!(
                "coordinator {coordinator} answered {}",
                super::kind(&other)
            )),
        }
    }

    /// A fresh cluster's groups: every node in every ISR; masters spread over the
    /// nodes, the non-coordinators first (on 3 nodes group 0's master is the third).
    pub(super) fn initial_groups(&self, version: u64) -> Vec<GroupAssignment> {
        let all: Vec<String> = self.cfg.nodes.keys().cloned().collect();
        let mut order: Vec<String> = all.iter().filter(|n| !self.eligible(n)).cloned().collect();
        order.extend(all.iter().filter(|n| self.eligible(n)).cloned());
        (0..self.groups.len())
            .map(|g| GroupAssignment {
                epoch: version,
                master: Some(order[g % order.len()].clone()),
                isr: all.clone(),
            })
            .collect()
    }

    /// Coordinator: the groups whose master is gone, each with its new assignment.
    fn failovers(&self, ctrl: &Ctrl, version: u64) -> Vec<(usize, GroupAssignment)> {
        let me = self.cfg.node.as_str();
        let mine = (ctrl.store.state.committed.version, self.group_statuses());
        let alive = |n: &str| {
            n == me
                || ctrl
                    .acked_at
                    .get(n)
                    .is_some_and(|t| t.elapsed() < self.cfg.failover_timeout)
        };
        let status = |n: &str, g: usize| {
            let (v, s) = if n == me { &mine } else { ctrl.status.get(n)? };
            Some((*v, s.get(g)?.clone()))
        };
        let mut out = Vec::new();
        for (g, a) in ctrl.store.state.committed.groups.iter().enumerate() {
            let healthy = a.master.as_deref().is_some_and(|m| {
                alive(m)
                    && match status(m, g) {
                        // It has not acted on this map yet.
                        Some((v, _)) if v < a.epoch => true,
                        Some((_, s)) => s.master && s.epoch == a.epoch,
                        None => true,
                    }
            });
            if healthy {
                continue;
            }
            let best = a
                .isr
                .iter()
                .filter(|n| alive(n))
                .filter_map(|n| status(n, g).map(|(_, s)| (n, s)))
                // Most up to date first; among equals another node than this
                // coordinator, so that one node does not hold both roles and a
                // single pause or crash of it does not stop the group until a new
                // coordinator is elected; then the lowest name.
                .max_by(|(n1, s1), (n2, s2)| {
                    (s1.last_term, s1.last_index, n1.as_str() != me, n2.as_str()).cmp(&(
                        s2.last_term,
                        s2.last_index,
                        n2.as_str() != me,
                        n1.as_str(),
                    ))
                });
            let Some((new, _)) = best else {
                continue;
            };
            let isr = a
                .isr
                .iter()
                .filter(|n| alive(n) || Some(n.as_str()) != a.master.as_deref())
                .cloned()
                .collect();
            out.push((
                g,
                GroupAssignment {
                    epoch: version,
                    master: Some(new.clone()),
                    isr,
                },
            ));
        }
        out
    }

    /// Coordinator: moves every group whose master is gone.
    pub(super) async fn failover(self: &Arc<Self>) {
        let result = self
            .propose(false, |ctrl, base, version| {
                let changes = self.failovers(ctrl, version);
                if changes.is_empty() {
                    return None;
                }
                let mut groups = base.groups.clone();
                for (g, a) in changes {
                    log_event!(
                        self.log,
                        "failover",
                        "group={g} old_master={} new_master={} epoch={version}",
                        groups[g].master.as_deref().unwrap_or("-"),
                        a.master.as_deref().unwrap_or("-")
                    );
                    groups[g] = a;
                }
                Some(groups)
            })
            .await;
        if let Err(e) = result {
            log_event!(self.log, "failover-failed", "{e}");
        }
    }
}
