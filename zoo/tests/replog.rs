//! Integration tests of the log-based modes (`raft`, `sync`, `semi-sync`,
//! `fixed-master`) on 3 child processes: the sound property of each in its targeted
//! scenario, and the anomaly of the flawed ones reproduced. Partitions use the
//! test-only `debug_block_peers` request (see `async_failover.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{wait_for, Cluster, CALL};
use zoo::client::{call_following_redirects, CallError};
use zoo::proto::{ErrorCode, Outcome, Request, Response, RoleKind};

const KEY: &str = "s";

/// Waits until one running node is master and every other running node follows it;
/// returns its index and term.
async fn leader(c: &Cluster, running: &[usize]) -> (usize, u64) {
    let addrs: Vec<_> = running.iter().map(|&i| (i, c.nodes[i].addr)).collect();
    wait_for("one master that all running nodes follow", || {
        let addrs = addrs.clone();
        async move {
            let mut roles = Vec::new();
            for (i, a) in &addrs {
                roles.push((*i, common::role_at(*a).await.ok()?));
            }
            let masters: Vec<_> = roles
                .iter()
                .filter(|(_, r)| r.role == RoleKind::Master)
                .collect();
            let [(i, m)] = masters.as_slice() else {
                return None;
            };
            roles
                .iter()
                .all(|(_, r)| r.master.as_deref() == Some(m.node.as_str()) && r.epoch == m.epoch)
                .then_some((*i, m.epoch))
        }
    })
    .await
}

/// Cuts node `i` off from every other node (both directions), or heals all with `None`.
async fn isolate(c: &Cluster, i: Option<usize>) {
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    for j in 0..c.nodes.len() {
        let peers = match i {
            None => vec![],
            Some(i) if i == j => names.iter().filter(|n| **n != names[i]).cloned().collect(),
            Some(i) => vec![names[i].clone()],
        };
        let r = c.call(j, &Request::DebugBlockPeers { peers }).await;
        assert!(matches!(r, Response::DebugBlocked { .. }), "{r:?}");
    }
}

async fn add_ok(c: &Cluster, i: usize, v: i64) {
    let ack = c.client(i).await.add(KEY, v, CALL).await;
    assert!(ack.is_ok(), "add {v} via n{}: {ack:?}", i + 1);
}

/// Every (node, term) that logged becoming master; panics if two nodes led one term.
fn assert_one_master_per_term(c: &Cluster) {
    let mut by_term: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        for line in c.log_text(i).lines() {
            if let Some(rest) = line.split(" role-change role=master term=").nth(1) {
                let term: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                by_term.entry(term).or_default().insert(n.name.clone());
            }
        }
    }
    assert!(!by_term.is_empty(), "no node logged becoming master");
    for (term, nodes) in &by_term {
        assert_eq!(nodes.len(), 1, "term {term} had masters {nodes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_isolated_leader_loses_no_acked_write_and_reads_stay_linearizable() {
    let c = Cluster::start_mode("raft", 3, &["--debug-fault-injection"]).await;
    let (l, term) = leader(&c, &[0, 1, 2]).await;
    let other = (l + 1) % 3;
    for v in 1..=5 {
        add_ok(&c, other, v).await; // forwarded to the leader
    }
    // Registers and lists, and the errors of bad operations.
    let mut cl = c.client(other).await;
    assert_eq!(
        cl.write("r", 1, CALL).await.unwrap().master,
        c.nodes[l].name
    );
    assert_eq!(cl.cas("r", 1, 2, CALL).await.unwrap().to, 2);
    let e = cl.cas("r", 1, 3, CALL).await.unwrap_err();
    assert!(
        matches!(&e, CallError::Server(r) if r.code == ErrorCode::CasMismatch),
        "{e}"
    );
    assert_eq!(cl.get("r", false, CALL).await.unwrap().value, Some(2));
    for v in [3, 1, 3] {
        cl.append("l", v, CALL).await.unwrap();
    }
    assert_eq!(
        cl.read_list("l", false, CALL).await.unwrap().values,
        vec![3, 1, 3]
    );
    let e = cl.append(KEY, 9, CALL).await.unwrap_err();
    assert!(
        matches!(&e, CallError::Server(r) if r.code == ErrorCode::WrongType),
        "{e}"
    );
    let bad = cl
        .call(
            &Request::Forward {
                from: "zz".into(),
                request: Box::new(Request::Role),
            },
            CALL,
        )
        .await
        .unwrap();
    assert!(
        matches!(bad, Response::Error(ref r) if r.code == ErrorCode::BadRequest),
        "{bad:?}"
    );

    isolate(&c, Some(l)).await;
    // The cut-off leader acknowledges nothing and refuses reads it cannot confirm.
    let lost = c.client(l).await.add(KEY, 100, CALL).await;
    assert!(
        matches!(&lost, Err(e) if e.outcome() == Outcome::Indeterminate || e.outcome() == Outcome::NotApplied),
        "isolated leader acknowledged a write: {lost:?}"
    );
    let stale = c.client(l).await.read(KEY, false, CALL).await;
    assert!(stale.is_err(), "isolated leader served a read: {stale:?}");
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (l2, term2) = leader(&c, &rest).await;
    assert!(term2 > term, "new leader's term {term2} not above {term}");
    for v in 6..=10 {
        add_ok(&c, l2, v).await;
    }
    isolate(&c, None).await;
    let (_, _) = leader(&c, &[0, 1, 2]).await;
    // Every acknowledged add everywhere; the indeterminate 100 may or may not be there.
    for i in 0..3 {
        let addr = c.nodes[i].addr;
        wait_for(&format!("n{} holds 1..=10", i + 1), || async move {
            let mut cl = zoo::client::Client::connect(addr, CALL).await.ok()?;
            let got: BTreeSet<i64> = cl
                .read(KEY, true, CALL)
                .await
                .ok()?
                .values
                .into_iter()
                .collect();
            (1..=10).all(|v| got.contains(&v)).then_some(())
        })
        .await;
    }
    let read = c.client(l).await.read(KEY, false, CALL).await.unwrap();
    assert!((1..=10).all(|v| read.values.contains(&v)), "{read:?}");
    assert_one_master_per_term(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_killed_leader_restarts_from_disk_and_rejoins() {
    let mut c = Cluster::start_mode("raft", 3, &[]).await;
    let (l, _) = leader(&c, &[0, 1, 2]).await;
    for v in 1..=10 {
        add_ok(&c, l, v).await;
    }
    c.kill9(l);
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (l2, _) = leader(&c, &rest).await;
    for v in 11..=15 {
        add_ok(&c, l2, v).await;
    }
    c.spawn(l);
    c.wait_up(l).await;
    c.wait_converged(KEY, &(1..=15).collect::<Vec<_>>()).await;
    assert!(
        c.log_text(l).contains("fresh=false"),
        "restart did not recover from disk"
    );
    assert_one_master_per_term(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_failover_keeps_every_acked_write_and_blocks_writes_without_all_replicas() {
    let mut c = Cluster::start_mode("sync", 3, &[]).await;
    let (l, _) = leader(&c, &[0, 1, 2]).await;
    for v in 1..=10 {
        add_ok(&c, l, v).await;
    }
    c.kill9(l);
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (l2, _) = leader(&c, &rest).await;
    let read = c.client(l2).await.read(KEY, false, CALL).await.unwrap();
    assert_eq!(
        read.values,
        (1..=10).collect::<Vec<_>>(),
        "acked write lost on failover"
    );
    // With a replica down no write can be acknowledged by every replica.
    let blocked = c.client(l2).await.add(KEY, 11, CALL).await;
    assert!(
        matches!(&blocked, Err(CallError::Server(r)) if r.code == ErrorCode::NotReplicated),
        "{blocked:?}"
    );
    c.spawn(l);
    c.wait_up(l).await;
    let (l3, _) = leader(&c, &[0, 1, 2]).await;
    add_ok(&c, l3, 12).await;
    let want: Vec<i64> = (1..=12).collect();
    let addr = c.nodes[l].addr;
    let got = wait_for("restarted node holds 1..=10 and 12", || async move {
        let mut cl = zoo::client::Client::connect(addr, CALL).await.ok()?;
        let v = cl.read(KEY, true, CALL).await.ok()?.values;
        (1..=10).chain([12]).all(|x| v.contains(&x)).then_some(v)
    })
    .await;
    assert!(got.iter().all(|v| want.contains(v)), "{got:?}");
}

/// `sync` acknowledges a write only once every replica holds it, also when a master
/// that stepped down is elected again and takes its own log as committed: clients
/// still waiting on it from its earlier term are not acknowledged by that. The
/// scenario is the known-answer matrix's majorities-ring on 3 nodes: the master is
/// cut from one replica only, which keeps calling elections it cannot win (its log
/// is behind); the other replica relays each new term, and the master steps down
/// and is elected again at once. n3 waits 20 s before calling an election, so the
/// master is n1 or n2 and only it is re-elected. Before the fix, a write in flight
/// at a re-election was acknowledged while the cut replica lacked it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_cut_from_one_replica_acks_nothing_that_replica_lacks() {
    use std::time::{Duration, Instant};
    let fast: &[&str] = &["--failover-timeout-ms", "600"];
    let c = Cluster::start_nodes(
        "sync",
        3,
        &["--debug-fault-injection", "--heartbeat-ms", "100"],
        &[fast, fast, &["--failover-timeout-ms", "20000"]],
    )
    .await;
    let (l, _) = leader(&c, &[0, 1, 2]).await;
    assert!(
        l < 2,
        "n3 waits 20 s before an election, yet n{} leads",
        l + 1
    );
    add_ok(&c, l, 1).await;
    let x = 1 - l;
    let names = |i: usize| vec![c.nodes[i].name.clone()];
    for (at, peers) in [(l, names(x)), (x, names(l))] {
        let r = c.call(at, &Request::DebugBlockPeers { peers }).await;
        assert!(matches!(r, Response::DebugBlocked { .. }), "{r:?}");
    }
    let promoted_before = c.log_text(l).matches("role-change role=master").count();
    let mut v = 100;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        v += 1;
        let Ok(mut cl) = zoo::client::Client::connect(c.nodes[l].addr, CALL).await else {
            continue;
        };
        if cl.add(KEY, v, CALL).await.is_ok() {
            // The sync promise: the cut replica holds (and soon applies) every
            // acknowledged write, which only a master that reaches it can arrange.
            let held = poll(Duration::from_secs(2), || async {
                c.local(x, KEY).await.contains(&v)
            });
            assert!(
                held.await,
                "write {v} acknowledged by n{} but n{} lacks it",
                l + 1,
                x + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let promoted = c.log_text(l).matches("role-change role=master").count() - promoted_before;
    assert!(
        promoted >= 2,
        "n{} was elected again {promoted} times under the cut: the scenario did not happen",
        l + 1
    );
    assert_one_master_per_term(&c);
}

/// Polls `probe` every 20 ms until it holds or `limit` passes.
async fn poll<F, Fut>(limit: std::time::Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if probe().await {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_isolated_master_degrades_and_its_acked_writes_are_lost() {
    let c = Cluster::start_mode(
        "semi-sync",
        3,
        &["--debug-fault-injection", "--semi-sync-timeout-ms", "300"],
    )
    .await;
    let (l, term) = leader(&c, &[0, 1, 2]).await;
    for v in 1..=5 {
        add_ok(&c, l, v).await;
    }
    isolate(&c, Some(l)).await;
    // No replica answers: after the timeout the master acknowledges on its own.
    let ack = c.client(l).await.add(KEY, 100, CALL).await.unwrap();
    assert_eq!(
        (ack.master.as_str(), ack.epoch),
        (c.nodes[l].name.as_str(), term)
    );
    assert!(c.log_text(l).contains("semi-sync-degraded"));
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (l2, _) = leader(&c, &rest).await;
    add_ok(&c, l2, 6).await;
    // Two masters acknowledge writes at once.
    let also = c.client(l).await.add(KEY, 101, CALL).await.unwrap();
    assert_eq!(also.master, c.nodes[l].name);
    isolate(&c, None).await;
    leader(&c, &[0, 1, 2]).await;
    let want: Vec<i64> = (1..=6).collect();
    c.wait_converged(KEY, &want).await;
    assert!(
        c.log_text(l).contains("rollback"),
        "old master did not roll back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_master_never_fails_over_and_redirects_clients() {
    let mut c = Cluster::start_mode("fixed-master", 3, &["--client-routing", "redirect"]).await;
    for v in 1..=5 {
        let req = Request::Add {
            key: KEY.into(),
            value: v,
        };
        let (resp, at) = call_following_redirects(c.nodes[2].addr, &req, CALL, 2)
            .await
            .unwrap();
        assert!(
            matches!(resp, Response::Added(ref a) if a.master == "n1"),
            "{resp:?}"
        );
        assert_eq!(at, c.nodes[0].addr);
    }
    let r = c
        .call(
            1,
            &Request::Add {
                key: KEY.into(),
                value: 9,
            },
        )
        .await;
    match r {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Redirect);
            assert_eq!(e.master.as_deref(), Some("n1"));
            assert_eq!(e.addr, Some(c.nodes[0].addr.to_string()));
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    c.wait_converged(KEY, &[1, 2, 3, 4, 5]).await;
    c.kill9(0);
    // Twice the failover timeout later nobody has taken over: writes are unavailable.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    for i in [1, 2] {
        let r = c.role(i).await;
        assert_eq!(
            (r.role, r.master.as_deref()),
            (RoleKind::Replica, Some("n1"))
        );
        let req = Request::Add {
            key: KEY.into(),
            value: 50,
        };
        let err = call_following_redirects(c.nodes[i].addr, &req, CALL, 2).await;
        assert!(err.is_err(), "write accepted with the master down: {err:?}");
    }
    c.spawn(0);
    c.wait_up(0).await;
    c.client(0).await.add(KEY, 6, CALL).await.unwrap();
    c.wait_converged(KEY, &[1, 2, 3, 4, 5, 6]).await;
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_paused_leader_wakes_as_follower_and_sigterm_stops_cleanly() {
    let c = Cluster::start_mode("raft", 3, &[]).await;
    let (l, term) = leader(&c, &[0, 1, 2]).await;
    for v in 1..=5 {
        add_ok(&c, l, v).await;
    }
    let pid = c.pid(l);
    signal(pid, "-STOP");
    let rest: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (l2, term2) = leader(&c, &rest).await;
    assert!(term2 > term);
    for v in 6..=8 {
        add_ok(&c, l2, v).await;
    }
    signal(pid, "-CONT");
    // The woken leader learns the new term and serves only current data.
    let (_, _) = leader(&c, &[0, 1, 2]).await;
    let read = c.client(l).await.read(KEY, false, CALL).await.unwrap();
    assert_eq!(read.values, (1..=8).collect::<Vec<_>>());
    assert_one_master_per_term(&c);
    signal(c.pid(l2), "-TERM");
    let log = c.nodes[l2].log.clone();
    wait_for("SIGTERM logs a clean exit", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("exit clean").then_some(())
        }
    })
    .await;
}
