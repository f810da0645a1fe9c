//! The harness-driven failover for PostgreSQL (no Patroni): what an operator's script
//! would do, run by [`crate::systems::System::supervise`]. The controller is never
//! partitioned from the nodes, so it must not judge the primary by its own view; it
//! asks the standbys. When a majority of all nodes are standbys whose WAL receiver has
//! lost the primary (not streaming) for longer than [`GRACE`], it promotes the most
//! advanced standby (highest received / replayed LSN), first giving it the
//! `synchronous_standby_names` of the mode over the remaining standbys, then points the
//! other standbys at it (`ALTER SYSTEM SET primary_conninfo` + `pg_reload_conf()`).
//! The old primary is NOT fenced: it keeps its role until, seen from its own network
//! namespace, it reaches the new primary again; then it is rejoined as a standby with
//! `pg_rewind` (a fresh base backup if that fails), which discards whatever it
//! accepted alone. Every decision goes to the harness log.

use super::conf::{primary_conninfo, sql_literal, Mode};
use super::node::{reaches_script, rejoin_script, Layout};
use super::sql::{self, NodeStatus};
use crate::control::Remote;
use crate::runner::stop::Stop;
use crate::systems::NodeHandle;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long a majority must report the primary lost before a promotion.
pub const GRACE: Duration = Duration::from_secs(2);
/// No second promotion this soon after one (standbys are re-pointing meanwhile).
pub const COOLDOWN: Duration = Duration::from_secs(6);
const TICK: Duration = Duration::from_millis(300);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const REJOIN_RETRY: Duration = Duration::from_secs(1);

/// A promotion the supervisor decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub old: String,
    pub candidate: String,
    /// The candidate's LSN and the standbys that voted the primary lost.
    pub lsn: u64,
    pub voters: Vec<String>,
}

/// The supervisor's memory: who is primary, since when a majority lost it, which
/// deposed primaries wait to rejoin.
#[derive(Debug)]
pub struct Failover {
    pub mode: Mode,
    /// Every node, in the order of the nodes file.
    pub names: Vec<String>,
    pub primary: String,
    pub deposed: BTreeSet<String>,
    lost_since: Option<Instant>,
    last_promotion: Option<Instant>,
}

impl Failover {
    pub fn new(mode: Mode, names: Vec<String>, primary: String) -> Failover {
        Failover {
            mode,
            names,
            primary,
            deposed: BTreeSet::new(),
            lost_since: None,
            last_promotion: None,
        }
    }

    fn majority(&self) -> usize {
        self.names.len() / 2 + 1
    }

    /// The standbys a primary should wait for in this mode: every node but itself and
    /// the deposed ones (they rejoin later and are added back then).
    pub fn sync_names_for(&self, primary: &str) -> String {
        let standbys: Vec<String> = self
            .names
            .iter()
            .filter(|n| *n != primary && !self.deposed.contains(*n))
            .cloned()
            .collect();
        self.mode.sync_names(&standbys)
    }

    /// Looks at what the nodes report; returns a promotion when one is due. Nodes
    /// that did not answer are absent from `statuses` and do not vote.
    pub fn decide(
        &mut self,
        statuses: &BTreeMap<String, NodeStatus>,
        now: Instant,
    ) -> Option<Promotion> {
        if self
            .last_promotion
            .is_some_and(|t| now.duration_since(t) < COOLDOWN)
        {
            return None;
        }
        let standbys: Vec<(&String, &NodeStatus)> = statuses
            .iter()
            .filter(|(n, s)| **n != self.primary && !self.deposed.contains(*n) && s.in_recovery)
            .collect();
        let voters: Vec<String> = standbys
            .iter()
            .filter(|(_, s)| !s.streaming)
            .map(|(n, _)| (*n).clone())
            .collect();
        if voters.len() < self.majority() {
            self.lost_since = None;
            return None;
        }
        let since = *self.lost_since.get_or_insert(now);
        if now.duration_since(since) < GRACE {
            return None;
        }
        // The most advanced standby; ties go to the first in node order.
        let (candidate, status) = standbys.iter().max_by(|(a, x), (b, y)| {
            x.lsn.cmp(&y.lsn).then_with(|| {
                let pos = |n: &String| self.names.iter().position(|m| m == n);
                pos(b).cmp(&pos(a))
            })
        })?;
        let p = Promotion {
            old: self.primary.clone(),
            candidate: (*candidate).clone(),
            lsn: status.lsn,
            voters,
        };
        self.deposed.insert(self.primary.clone());
        self.deposed.remove(&p.candidate);
        self.primary = p.candidate.clone();
        self.lost_since = None;
        self.last_promotion = Some(now);
        Some(p)
    }
}

/// Runs the supervisor until `stop`.
pub async fn run(mode: Mode, lab: bool, faketime: bool, nodes: Vec<NodeHandle>, stop: Stop) {
    let Some(first) = nodes.first() else { return };
    let names: Vec<String> = nodes.iter().map(|n| n.spec.name.clone()).collect();
    let mut f = Failover::new(mode, names, first.spec.name.clone());
    let mut last_rejoin: BTreeMap<String, Instant> = BTreeMap::new();
    let mut conns: BTreeMap<String, Arc<Client>> = BTreeMap::new();
    let host_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n.spec.name == name)
            .map(|n| n.spec.host.clone())
    };
    while !stop.sleep(TICK).await {
        let statuses = probe_all(&nodes, &mut conns).await;
        if let Some(p) = f.decide(&statuses, Instant::now()) {
            promote(&f, &p, &nodes).await;
        }
        let Some(primary_host) = host_of(&f.primary) else {
            continue;
        };
        // Standbys not yet pointed at the current primary (missed by a promotion, or
        // rejoined): point them now.
        for n in &nodes {
            let name = &n.spec.name;
            let Some(s) = statuses.get(name) else {
                continue;
            };
            let want = primary_conninfo(&primary_host, name);
            if s.in_recovery && *name != f.primary && s.primary_conninfo != want {
                tracing::info!(node = %name, primary = %f.primary, "postgres supervisor: re-pointing standby");
                if let Err(e) = set_and_reload(&n.spec.host, "primary_conninfo", &want).await {
                    tracing::warn!(node = %name, "postgres supervisor: re-pointing failed: {e}");
                }
            }
        }
        // Deposed primaries rejoin once they reach the new primary themselves.
        let deposed: Vec<String> = f.deposed.iter().cloned().collect();
        for d in deposed {
            if last_rejoin
                .get(&d)
                .is_some_and(|t| t.elapsed() < REJOIN_RETRY)
            {
                continue;
            }
            let Some(h) = nodes.iter().find(|n| n.spec.name == d) else {
                continue;
            };
            if !statuses.contains_key(&d) || !statuses.contains_key(&f.primary) {
                continue;
            }
            last_rejoin.insert(d.clone(), Instant::now());
            let reach = h
                .remote
                .exec(&reaches_script(&primary_host), Duration::from_secs(10))
                .await;
            if !reach.is_ok_and(|o| o.success()) {
                continue;
            }
            let layout = Layout::new(&h.spec, lab, faketime);
            tracing::info!(node = %d, primary = %f.primary, "postgres supervisor: rejoining the deposed primary as a standby");
            match h
                .remote
                .exec_ok(
                    &rejoin_script(&layout, &h.spec, &primary_host),
                    Duration::from_secs(120),
                )
                .await
            {
                Ok(out) => {
                    let how = out.stdout_str().trim().to_string();
                    tracing::info!(node = %d, how = %how, "postgres supervisor: deposed primary rejoined");
                    eprintln!(
                        "splitbrain: postgres: {d} rejoined as a standby of {} ({how})",
                        f.primary
                    );
                    f.deposed.remove(&d);
                    if mode != Mode::Async {
                        let names = f.sync_names_for(&f.primary);
                        if let Err(e) =
                            set_and_reload(&primary_host, "synchronous_standby_names", &names).await
                        {
                            tracing::warn!("postgres supervisor: widening synchronous_standby_names failed: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %d, "postgres supervisor: rejoin failed: {e}")
                }
            }
        }
    }
}

/// Every node's status, over connections kept from one tick to the next (a new
/// connection forks a backend: five per tick would load the nodes under test).
async fn probe_all(
    nodes: &[NodeHandle],
    conns: &mut BTreeMap<String, Arc<Client>>,
) -> BTreeMap<String, NodeStatus> {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let (name, host) = (n.spec.name.clone(), n.spec.host.clone());
        let kept = conns.get(&name).filter(|c| !c.is_closed()).cloned();
        set.spawn(async move {
            let c = match kept {
                Some(c) => c,
                None => match sql::connect(&host, "splitbrain-supervisor", PROBE_TIMEOUT).await {
                    Ok(c) => Arc::new(c),
                    Err(e) => return (name, None, Err(e)),
                },
            };
            let status = sql::first_row(&c, sql::STATUS_SQL, PROBE_TIMEOUT)
                .await
                .and_then(|r| sql::parse_status(&r));
            (name, Some(c), status)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let Ok((name, conn, status)) = r else {
            continue;
        };
        match (conn, status) {
            (Some(c), Ok(s)) => {
                conns.insert(name.clone(), c);
                out.insert(name, s);
            }
            // A probe that failed or timed out: start afresh next time.
            _ => {
                conns.remove(&name);
            }
        }
    }
    out
}

/// `ALTER SYSTEM SET name = value` and a reload, as separate statements (ALTER
/// SYSTEM cannot run in a transaction block).
async fn set_and_reload(host: &str, name: &str, value: &str) -> Result<(), String> {
    let c = sql::connect(host, "splitbrain-supervisor", PROBE_TIMEOUT * 2).await?;
    let t = Duration::from_secs(5);
    sql::first_row(&c, "SELECT 1", t).await?;
    tokio::time::timeout(
        t,
        c.simple_query(&format!("ALTER SYSTEM SET {name} = {}", sql_literal(value))),
    )
    .await
    .map_err(|_| "ALTER SYSTEM timed out".to_string())?
    .map_err(|e| e.to_string())?;
    sql::first_row(&c, "SELECT pg_reload_conf()", t).await?;
    Ok(())
}

async fn promote(f: &Failover, p: &Promotion, nodes: &[NodeHandle]) {
    let host = |name: &str| {
        nodes
            .iter()
            .find(|n| n.spec.name == name)
            .map(|n| n.spec.host.clone())
    };
    let Some(cand_host) = host(&p.candidate) else {
        return;
    };
    tracing::info!(
        old = %p.old, candidate = %p.candidate, lsn = p.lsn, voters = ?p.voters,
        "postgres supervisor: a majority of standbys lost the primary for {GRACE:?}; promoting the most advanced standby"
    );
    eprintln!(
        "splitbrain: postgres: {} lost by {}; promoting {}",
        p.old,
        p.voters.join(","),
        p.candidate
    );
    if f.mode != Mode::Async {
        let names = f.sync_names_for(&p.candidate);
        if let Err(e) = set_and_reload(&cand_host, "synchronous_standby_names", &names).await {
            tracing::warn!(node = %p.candidate, "postgres supervisor: setting synchronous_standby_names before promotion failed: {e}");
        }
    }
    let promoted = async {
        let c = sql::connect(&cand_host, "splitbrain-supervisor", PROBE_TIMEOUT * 2).await?;
        sql::first_row(&c, "SELECT pg_promote(true, 30)", Duration::from_secs(35)).await
    }
    .await;
    match promoted {
        Ok(row) if row.first().and_then(|v| v.as_deref()) == Some("t") => {
            tracing::info!(node = %p.candidate, "postgres supervisor: promoted")
        }
        other => {
            tracing::warn!(node = %p.candidate, "postgres supervisor: pg_promote did not confirm: {other:?}")
        }
    }
    for n in nodes {
        let name = &n.spec.name;
        if *name == p.candidate || f.deposed.contains(name) {
            continue;
        }
        let want = primary_conninfo(&cand_host, name);
        if let Err(e) = set_and_reload(&n.spec.host, "primary_conninfo", &want).await {
            tracing::warn!(node = %name, "postgres supervisor: re-pointing failed (retried later): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, recovery: bool, streaming: bool, lsn: u64) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            in_recovery: recovery,
            timeline: 1,
            streaming,
            sender_host: None,
            lsn,
            primary_conninfo: String::new(),
            streaming_standbys: 0,
        }
    }

    fn names() -> Vec<String> {
        ["n1", "n2", "n3", "n4", "n5"].map(String::from).to_vec()
    }

    fn view(v: &[NodeStatus]) -> BTreeMap<String, NodeStatus> {
        v.iter().map(|s| (s.name.clone(), s.clone())).collect()
    }

    #[test]
    fn promotes_the_most_advanced_after_grace_on_a_majority() {
        let mut f = Failover::new(Mode::SyncAll, names(), "n1".into());
        let t0 = Instant::now();
        // n1 still answers the controller (and claims primary): it does not matter.
        let lost = view(&[
            st("n1", false, false, 900),
            st("n2", true, false, 500),
            st("n3", true, false, 700),
            st("n4", true, false, 700),
            st("n5", true, true, 100),
        ]);
        assert_eq!(f.decide(&lost, t0), None, "grace not yet passed");
        let p = f.decide(&lost, t0 + GRACE).expect("promotion");
        assert_eq!(p.candidate, "n3", "highest LSN, first in node order");
        assert_eq!((p.old.as_str(), p.voters.len()), ("n1", 3));
        assert_eq!(f.primary, "n3");
        assert!(f.deposed.contains("n1"));
        assert_eq!(f.sync_names_for("n3"), r#"FIRST 3 ("n2", "n4", "n5")"#);
        // No second promotion within the cooldown, even with everyone lost.
        assert_eq!(f.decide(&lost, t0 + GRACE + Duration::from_secs(1)), None);
    }

    #[test]
    fn minority_or_flapping_loss_promotes_nobody() {
        let mut f = Failover::new(Mode::Async, names(), "n1".into());
        let t0 = Instant::now();
        // One isolated standby, and one not answering at all: two votes, not three.
        let minority = view(&[
            st("n1", false, false, 9),
            st("n2", true, false, 9),
            st("n3", true, false, 9),
            st("n4", true, true, 9),
        ]);
        assert_eq!(f.decide(&minority, t0), None);
        assert_eq!(f.decide(&minority, t0 + GRACE * 3), None);
        let lost = view(&[
            st("n2", true, false, 9),
            st("n3", true, false, 9),
            st("n4", true, false, 9),
        ]);
        assert_eq!(f.decide(&lost, t0), None);
        // The primary came back before the grace ran out: the clock restarts.
        let back = view(&[st("n2", true, true, 9), st("n3", true, true, 9)]);
        assert_eq!(f.decide(&back, t0 + GRACE / 2), None);
        assert_eq!(f.decide(&lost, t0 + GRACE + GRACE / 2), None);
        assert!(f.decide(&lost, t0 + GRACE * 3).is_some());
        assert_eq!(
            f.sync_names_for("n2"),
            "",
            "async has no synchronous standbys"
        );
    }
}
