//! Heartbeats and the naive failover of `async-failover`: each node pings every peer
//! and remembers what each reachable peer says about itself; [`decide`] turns that
//! view into at most one transition (follow, step down, lose the master, promote),
//! which [`AsyncFailover::decide_and_apply`] applies, persists and logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{lock, AsyncFailover};
use crate::log_event;
use crate::proto::{Lineage, LineageFork, Request, Response, RoleInfo, RoleKind};
use crate::server::stopped;
use crate::store::Meta;

/// What this node believes.
pub(super) struct State {
    pub role: RoleKind,
    pub epoch: u64,
    pub master: Option<String>,
    /// Last time the believed master answered as master (or since we follow it).
    pub master_contact: Instant,
    pub views: BTreeMap<String, PeerView>,
    /// The candidate we last logged waiting for, to log each wait once.
    pub waiting_for: Option<String>,
}

/// What we last heard from one peer.
#[derive(Default)]
pub(super) struct PeerView {
    pub last_ok: Option<Instant>,
    pub info: Option<RoleInfo>,
    /// Whether the last heartbeat got through (for logging changes only).
    pub up: bool,
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    Stay,
    /// (Replica) follow this master in its epoch.
    Follow {
        master: String,
        epoch: u64,
    },
    /// (Master) a master with a higher (epoch, name) is reachable: become its replica.
    StepDown {
        master: String,
        epoch: u64,
    },
    /// (Replica) the master has been silent for the failover timeout.
    LoseMaster {
        silent: Duration,
    },
    /// (Replica, no master) this node is the lowest-named reachable candidate.
    Promote {
        epoch: u64,
        reachable: Vec<String>,
    },
    /// (Replica, no master) another reachable candidate should promote itself.
    Wait {
        candidate: String,
    },
}

/// The naive failover rule. A peer counts as reachable when it answered within the
/// failover timeout; only reachable peers are considered, which is the flaw.
pub(super) fn decide(me: &str, st: &State, now: Instant, failover: Duration) -> Decision {
    let reachable: Vec<(&String, &RoleInfo)> = st
        .views
        .iter()
        .filter_map(|(name, v)| match (v.last_ok, &v.info) {
            (Some(t), Some(info)) if now.saturating_duration_since(t) < failover => {
                Some((name, info))
            }
            _ => None,
        })
        .collect();
    let best_master = reachable
        .iter()
        .filter(|(_, info)| info.role == RoleKind::Master)
        .max_by(|a, b| (a.1.epoch, a.0).cmp(&(b.1.epoch, b.0)));
    match st.role {
        RoleKind::Master => match best_master {
            Some((name, info)) if (info.epoch, name.as_str()) > (st.epoch, me) => {
                Decision::StepDown {
                    master: name.to_string(),
                    epoch: info.epoch,
                }
            }
            _ => Decision::Stay,
        },
        RoleKind::Replica => {
            if let Some((name, info)) = best_master.filter(|(_, i)| i.epoch >= st.epoch) {
                if st.master.as_deref() != Some(name.as_str()) || st.epoch != info.epoch {
                    return Decision::Follow {
                        master: name.to_string(),
                        epoch: info.epoch,
                    };
                }
                return Decision::Stay;
            }
            let silent = now.saturating_duration_since(st.master_contact);
            if silent < failover {
                return Decision::Stay;
            }
            if st.master.is_some() {
                return Decision::LoseMaster { silent };
            }
            let candidate = reachable
                .iter()
                .filter(|(_, info)| info.role == RoleKind::Replica)
                .map(|(name, _)| name.as_str())
                .chain(std::iter::once(me))
                .min()
                .unwrap_or(me);
            if candidate != me {
                return Decision::Wait {
                    candidate: candidate.to_string(),
                };
            }
            let highest_seen = reachable.iter().map(|(_, i)| i.epoch).max().unwrap_or(0);
            Decision::Promote {
                epoch: st.epoch.max(highest_seen) + 1,
                reachable: reachable.iter().map(|(n, _)| n.to_string()).collect(),
            }
        }
    }
}

impl AsyncFailover {
    /// Records a peer's answer to our heartbeat (or its own heartbeat).
    pub(super) fn observe(&self, peer: &str, info: RoleInfo) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        if st.master.as_deref() == Some(peer) && info.role == RoleKind::Master {
            st.master_contact = now;
        }
        if let Some(view) = st.views.get_mut(peer) {
            if !view.up {
                log_event!(
                    self.log,
                    "peer-up",
                    "peer={peer} role={} epoch={} master={}",
                    info.role,
                    info.epoch,
                    info.master.as_deref().unwrap_or("-")
                );
            }
            view.up = true;
            view.last_ok = Some(now);
            view.info = Some(info);
        }
    }

    fn peer_silent(&self, peer: &str, why: &str) {
        let mut st = lock(&self.state);
        if let Some(view) = st.views.get_mut(peer) {
            if view.up {
                log_event!(self.log, "peer-down", "peer={peer} {why}");
            }
            view.up = false;
        }
    }

    /// Decides and applies at most one transition.
    pub(super) fn decide_and_apply(&self) {
        let me = self.cfg.node.as_str();
        let mut st = lock(&self.state);
        let decision = decide(me, &st, Instant::now(), self.cfg.failover_timeout);
        if !matches!(decision, Decision::Wait { .. }) {
            st.waiting_for = None;
        }
        match decision {
            Decision::Stay => {}
            Decision::Follow { master, epoch } => {
                log_event!(
                    self.log,
                    "follow",
                    "master={master} epoch={epoch} previous_master={} previous_epoch={}",
                    st.master.as_deref().unwrap_or("-"),
                    st.epoch
                );
                self.set_epoch(&mut st, epoch);
                st.master = Some(master);
                st.master_contact = Instant::now();
            }
            Decision::StepDown { master, epoch } => {
                log_event!(
                    self.log,
                    "role-change",
                    "from=master to=replica epoch={epoch} master={master} reason=\"reachable master {master} has higher (epoch, name) than ({}, {me})\"",
                    st.epoch
                );
                st.role = RoleKind::Replica;
                self.set_epoch(&mut st, epoch);
                st.master = Some(master);
                st.master_contact = Instant::now();
            }
            Decision::LoseMaster { silent } => {
                log_event!(
                    self.log,
                    "master-lost",
                    "master={} silent_ms={} epoch={}",
                    st.master.as_deref().unwrap_or("-"),
                    silent.as_millis(),
                    st.epoch
                );
                st.master = None;
            }
            Decision::Wait { candidate } => {
                if st.waiting_for.as_deref() != Some(candidate.as_str()) {
                    log_event!(
                        self.log,
                        "election",
                        "no master reachable; waiting for lower-named candidate {candidate}"
                    );
                    st.waiting_for = Some(candidate);
                }
            }
            Decision::Promote { epoch, reachable } => {
                let mut store = lock(&self.store);
                let old = store.meta().clone();
                let meta = Meta {
                    epoch,
                    lineage: Lineage {
                        epoch,
                        node: me.to_string(),
                    },
                    previous: Some(LineageFork {
                        lineage: old.lineage.clone(),
                        offset: store.offset(),
                    }),
                };
                if let Err(e) = store.set_meta(meta) {
                    log_event!(self.log, "storage-error", "promotion not persisted: {e}");
                    return;
                }
                log_event!(
                    self.log,
                    "role-change",
                    "from=replica to=master epoch={epoch} reason=\"no master for {}ms; lowest-named of reachable [{}]\" fork={}:{}",
                    self.cfg.failover_timeout.as_millis(),
                    reachable.join(","),
                    old.lineage,
                    store.offset()
                );
                st.role = RoleKind::Master;
                st.epoch = epoch;
                st.master = Some(me.to_string());
            }
        }
    }

    /// Moves to `epoch` and persists it when it is higher than the stored one.
    fn set_epoch(&self, st: &mut State, epoch: u64) {
        st.epoch = epoch;
        let mut store = lock(&self.store);
        if epoch > store.meta().epoch {
            let meta = Meta {
                epoch,
                ..store.meta().clone()
            };
            if let Err(e) = store.set_meta(meta) {
                log_event!(
                    self.log,
                    "storage-error",
                    "epoch {epoch} not persisted: {e}"
                );
            }
        }
    }
}

/// Spawns one heartbeat loop per peer and a monitor that decides every heartbeat.
pub(super) fn spawn(node: &Arc<AsyncFailover>, shutdown: watch::Receiver<bool>) {
    for peer in node.peers.names().cloned() {
        let node = node.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(node.cfg.heartbeat);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped(&mut shutdown) => return,
                }
                let ping = Request::Ping {
                    from: node.cfg.node.clone(),
                    view: node.role_info(),
                };
                match node.peers.call(&peer, &ping, node.cfg.peer_timeout).await {
                    Ok(Response::Role(info)) if info.node == peer => node.observe(&peer, info),
                    Ok(other) => {
                        node.peer_silent(&peer, &format!("bad heartbeat answer {other:?}"))
                    }
                    Err(e) => node.peer_silent(&peer, &e.to_string()),
                }
                node.decide_and_apply();
            }
        });
    }
    let node = node.clone();
    let mut shutdown = shutdown;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(node.cfg.heartbeat);
        loop {
            tokio::select! {
                _ = tick.tick() => node.decide_and_apply(),
                _ = stopped(&mut shutdown) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILOVER: Duration = Duration::from_millis(1500);

    fn info(node: &str, role: RoleKind, epoch: u64) -> RoleInfo {
        RoleInfo {
            node: node.into(),
            role,
            epoch,
            master: None,
            lineage: Lineage {
                epoch: 1,
                node: "n1".into(),
            },
            offset: 0,
            commit: None,
            control: None,
        }
    }

    /// A state at `now` where each listed peer answered `ago` before with `info`.
    fn state(
        role: RoleKind,
        epoch: u64,
        master: Option<&str>,
        contact_ago: Duration,
        now: Instant,
        peers: &[(&str, Duration, RoleInfo)],
    ) -> State {
        State {
            role,
            epoch,
            master: master.map(String::from),
            master_contact: now - contact_ago,
            views: peers
                .iter()
                .map(|(n, ago, i)| {
                    (
                        n.to_string(),
                        PeerView {
                            last_ok: Some(now - *ago),
                            info: Some(i.clone()),
                            up: true,
                        },
                    )
                })
                .collect(),
            waiting_for: None,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn replica_follows_the_highest_reachable_master() {
        let now = Instant::now() + Duration::from_secs(60);
        let st = state(
            RoleKind::Replica,
            1,
            Some("n1"),
            100 * MS,
            now,
            &[
                ("n1", 100 * MS, info("n1", RoleKind::Master, 1)),
                ("n2", 100 * MS, info("n2", RoleKind::Master, 2)),
                ("n4", 2000 * MS, info("n4", RoleKind::Master, 9)),
            ],
        );
        assert_eq!(
            decide("n3", &st, now, FAILOVER),
            Decision::Follow {
                master: "n2".into(),
                epoch: 2
            },
            "n4 has the highest epoch but is out of reach"
        );
    }

    #[test]
    fn isolated_master_stays_and_lower_master_steps_down() {
        let now = Instant::now() + Duration::from_secs(60);
        let alone = state(RoleKind::Master, 1, Some("n1"), 9000 * MS, now, &[]);
        assert_eq!(decide("n1", &alone, now, FAILOVER), Decision::Stay);
        let healed = state(
            RoleKind::Master,
            1,
            Some("n1"),
            Duration::ZERO,
            now,
            &[("n2", 10 * MS, info("n2", RoleKind::Master, 2))],
        );
        assert_eq!(
            decide("n1", &healed, now, FAILOVER),
            Decision::StepDown {
                master: "n2".into(),
                epoch: 2
            }
        );
        // Same epoch: the higher name wins, so n2 stays and n1 would step down.
        let tie = state(
            RoleKind::Master,
            2,
            Some("n2"),
            Duration::ZERO,
            now,
            &[("n1", 10 * MS, info("n1", RoleKind::Master, 2))],
        );
        assert_eq!(decide("n2", &tie, now, FAILOVER), Decision::Stay);
    }

    #[test]
    fn lost_master_then_lowest_reachable_candidate_promotes() {
        let now = Instant::now() + Duration::from_secs(60);
        let peers = [
            ("n1", 1600 * MS, info("n1", RoleKind::Master, 3)),
            ("n3", 100 * MS, info("n3", RoleKind::Replica, 3)),
            ("n4", 100 * MS, info("n4", RoleKind::Replica, 3)),
        ];
        let early = state(RoleKind::Replica, 3, Some("n1"), 1400 * MS, now, &peers);
        assert_eq!(decide("n2", &early, now, FAILOVER), Decision::Stay);
        let silent = state(RoleKind::Replica, 3, Some("n1"), 1600 * MS, now, &peers);
        assert_eq!(
            decide("n2", &silent, now, FAILOVER),
            Decision::LoseMaster { silent: 1600 * MS }
        );
        let no_master = state(RoleKind::Replica, 3, None, 1600 * MS, now, &peers);
        assert_eq!(
            decide("n2", &no_master, now, FAILOVER),
            Decision::Promote {
                epoch: 4,
                reachable: vec!["n3".into(), "n4".into()]
            }
        );
        assert_eq!(
            decide(
                "n4",
                &state(
                    RoleKind::Replica,
                    3,
                    None,
                    1600 * MS,
                    now,
                    &[("n2", 100 * MS, info("n2", RoleKind::Replica, 3)),]
                ),
                now,
                FAILOVER
            ),
            Decision::Wait {
                candidate: "n2".into()
            }
        );
    }

    #[test]
    fn a_lower_epoch_master_is_not_followed() {
        let now = Instant::now() + Duration::from_secs(60);
        let st = state(
            RoleKind::Replica,
            5,
            None,
            2000 * MS,
            now,
            &[("n1", 10 * MS, info("n1", RoleKind::Master, 4))],
        );
        // n1 is reachable but stale, so it is neither followed nor a candidate.
        assert_eq!(
            decide("n3", &st, now, FAILOVER),
            Decision::Promote {
                epoch: 6,
                reachable: vec!["n1".into()]
            }
        );
    }
}
