//! Integration tests of `metadata-master` on 3 child processes on 127.0.0.1: writes
//! acknowledged by a group master only once its whole in-sync set holds them; the
//! standby coordinator taking over while data operations continue; a killed group
//! master replaced by the coordinator with nothing acknowledged lost; an isolated
//! master fenced (no acknowledgement, no stale read); restart from disk; two
//! groups with two masters. Partitions use the test-only `debug_block_peers`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_for, Cluster};
use zoo::client::Client;
use zoo::proto::{group_of, ErrorCode, Request, Response, RoleInfo, RoleKind};

const MODE: &str = "metadata-master";
const KEY: &str = "s";
/// Longer than a write may wait for a failover (2 × failover + peer timeouts).
const LONG: Duration = Duration::from_secs(5);

fn group0(r: &RoleInfo) -> &zoo::proto::GroupRole {
    &r.control
        .as_ref()
        .expect("metadata-master reports control")
        .groups[0]
}

/// Waits until every running node agrees on one master of group 0 and one
/// coordinator; returns (master index, coordinator index, epoch).
async fn settled(c: &Cluster, running: &[usize]) -> (usize, usize, u64) {
    let addrs: Vec<_> = running.iter().map(|&i| (i, c.nodes[i].addr)).collect();
    wait_for(
        "one group master and one coordinator all nodes follow",
        || {
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
                let [(m, mr)] = masters.as_slice() else {
                    return None;
                };
                let coords: Vec<_> = roles
                    .iter()
                    .filter(|(_, r)| r.control.as_ref().is_some_and(|v| v.is_coordinator))
                    .collect();
                let [(k, kr)] = coords.as_slice() else {
                    return None;
                };
                let agreed = roles.iter().all(|(_, r)| {
                    r.master.as_deref() == Some(mr.node.as_str())
                        && r.epoch == mr.epoch
                        && r.control.as_ref().and_then(|v| v.coordinator.as_deref())
                            == Some(kr.node.as_str())
                });
                let full = group0(mr).isr.len() == running.len();
                (agreed && full).then_some((*m, *k, mr.epoch))
            }
        },
    )
    .await
}

async fn client(c: &Cluster, i: usize) -> Client {
    Client::connect(c.nodes[i].addr, LONG)
        .await
        .expect("connect")
}

/// Adds `v` through node `i`, retrying refusals until it is acknowledged; returns
/// the acknowledging master.
async fn add_acked(c: &Cluster, i: usize, v: i64) -> String {
    wait_for(
        &format!("add {v} via n{} acknowledged", i + 1),
        || async move {
            let mut cl = Client::connect(c.nodes[i].addr, LONG).await.ok()?;
            cl.add(KEY, v, LONG).await.ok().map(|a| a.master)
        },
    )
    .await
}

async fn block(c: &Cluster, i: usize, peers: &[usize]) {
    let names = peers.iter().map(|&p| c.nodes[p].name.clone()).collect();
    let r = c.call(i, &Request::DebugBlockPeers { peers: names }).await;
    assert!(matches!(r, Response::DebugBlocked { .. }), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_only_once_the_whole_isr_holds_them() {
    let c = Cluster::start_mode(MODE, 3, &["--debug-fault-injection"]).await;
    let (m, k, _) = settled(&c, &[0, 1, 2]).await;
    assert_eq!(
        (m, k),
        (2, 0),
        "fresh 3-node cluster: n3 masters group 0, n1 coordinates"
    );
    for v in 1..=5 {
        // Through a replica, which forwards to the master.
        let ack = client(&c, 0).await.add(KEY, v, LONG).await.expect("add");
        assert_eq!(ack.master, "n3");
        // All-replica ack: every node's log already holds the entry.
        let master_last = group0(&c.role(2).await).last_index;
        for i in 0..3 {
            let held = group0(&c.role(i).await).last_index;
            assert!(
                held >= master_last,
                "n{} holds {held} < {master_last} after the ack",
                i + 1
            );
        }
    }
    // n2 stops hearing the master: the next write waits until the coordinator has
    // dropped n2 from the in-sync set, and only then is acknowledged.
    block(&c, 1, &[2]).await;
    block(&c, 2, &[1]).await;
    // Retried: on a slow machine one attempt may time out (indeterminate) first.
    let ack = wait_for("add 6 without n2 acknowledged", || async {
        client(&c, 2).await.add(KEY, 6, LONG).await.ok()
    })
    .await;
    assert_eq!(ack.master, "n3");
    let isr = group0(&c.role(2).await).isr.clone();
    assert_eq!(
        isr,
        vec!["n1".to_string(), "n3".to_string()],
        "acked only after n2 left the ISR"
    );
    assert!(
        c.log_text(0).contains("isr group=0"),
        "the coordinator logged the ISR change"
    );
    // Healed, n2 catches up and rejoins the ISR.
    block(&c, 1, &[]).await;
    block(&c, 2, &[]).await;
    wait_for("n2 back in the ISR", || async {
        (group0(&common::role_at(c.nodes[2].addr).await.ok()?)
            .isr
            .len()
            == 3)
            .then_some(())
    })
    .await;
    c.wait_converged(KEY, &[1, 2, 3, 4, 5, 6]).await;
    // Bad requests get an error answer, and the node keeps serving.
    let r = c
        .call(
            0,
            &Request::ForwardRead {
                from: "n2".into(),
                key: KEY.into(),
            },
        )
        .await;
    assert!(
        matches!(r, Response::Error(ref e) if e.code == ErrorCode::Unsupported),
        "{r:?}"
    );
    assert_eq!(c.local(0, KEY).await, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_replaces_a_killed_coordinator_and_data_ops_go_on() {
    let mut c = Cluster::start_mode(MODE, 3, &[]).await;
    let (m, k, epoch) = settled(&c, &[0, 1, 2]).await;
    assert_eq!((m, k), (2, 0));
    add_acked(&c, 2, 1).await;
    c.kill9(0);
    // Without a coordinator the group keeps its master; the ISR still includes the
    // dead n1 until a coordinator drops it, so writes go on once that happens.
    let mut acked = vec![1];
    for v in 2..=6 {
        assert_eq!(
            add_acked(&c, 1, v).await,
            "n3",
            "the group keeps its master"
        );
        acked.push(v);
    }
    let (m2, k2, epoch2) = settled(&c, &[1, 2]).await;
    assert_eq!(
        (m2, k2, epoch2),
        (2, 1, epoch),
        "n2 coordinates; n3 still masters epoch {epoch}"
    );
    assert!(c.log_text(1).contains("role-change coordinator=true"));
    // The old coordinator restarts as a voter following the standby.
    c.spawn(0);
    c.wait_up(0).await;
    let (_, k3, _) = settled(&c, &[0, 1, 2]).await;
    assert_eq!(k3, 1, "the standby stays coordinator");
    acked.push(7);
    add_acked(&c, 0, 7).await;
    c.wait_converged(KEY, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_the_coordinator_and_restarts_from_disk() {
    let mut c = Cluster::start_mode(MODE, 3, &[]).await;
    let (m, _, epoch) = settled(&c, &[0, 1, 2]).await;
    assert_eq!(m, 2);
    let mut acked = Vec::new();
    for v in 1..=20 {
        add_acked(&c, 0, v).await;
        acked.push(v);
    }
    c.kill9(2);
    // Retried until the coordinator has assigned a new master (n1 or n2).
    let new = add_acked(&c, 0, 21).await;
    acked.push(21);
    assert!(new == "n1" || new == "n2", "new master {new}");
    let (m2, k2, epoch2) = settled(&c, &[0, 1]).await;
    assert!(epoch2 > epoch, "new epoch {epoch2} after {epoch}");
    // n1 and n2 held the same log: the coordinator gave the group to the other node
    // rather than to itself, so no node holds both roles.
    assert_ne!(m2, k2, "the coordinator n{} took the group itself", k2 + 1);
    let got = client(&c, m2)
        .await
        .read(KEY, false, LONG)
        .await
        .expect("read")
        .values;
    assert_eq!(got, acked, "the new master holds every acknowledged add");
    assert!(c.log_text(0).contains("failover group=0 old_master=n3"));
    // n3 restarts on its data as a replica and catches up.
    c.spawn(2);
    c.wait_up(2).await;
    let role = c.role(2).await;
    assert_eq!(role.role, RoleKind::Replica);
    assert!(c.log_text(2).matches(" start ").count() == 2);
    assert!(
        c.log_text(2).contains("fresh=false"),
        "recovered its control state"
    );
    settled(&c, &[0, 1, 2]).await;
    c.wait_converged(KEY, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_master_is_fenced_and_loses_nothing_acknowledged() {
    let c = Cluster::start_mode(MODE, 3, &["--debug-fault-injection"]).await;
    let (m, _, epoch) = settled(&c, &[0, 1, 2]).await;
    assert_eq!(m, 2);
    let mut acked = BTreeSet::new();
    for v in 1..=5 {
        add_acked(&c, 0, v).await;
        acked.insert(v);
    }
    block(&c, 2, &[0, 1]).await;
    block(&c, 0, &[2]).await;
    block(&c, 1, &[2]).await;
    // The isolated master cannot get its ISR's acknowledgement, nor confirm a read.
    let mut old = client(&c, 2).await;
    let w = old.add(KEY, 100, LONG).await;
    assert!(w.is_err(), "isolated master acknowledged {w:?}");
    // The majority side gets a new master in a new epoch and goes on.
    let new = add_acked(&c, 0, 6).await;
    acked.insert(6);
    assert_ne!(new, "n3");
    let r = old.read(KEY, false, LONG).await;
    assert!(
        r.is_err(),
        "isolated master served a read it cannot confirm: {r:?}"
    );
    for i in 0..3 {
        block(&c, i, &[]).await;
    }
    let (_, _, epoch2) = settled(&c, &[0, 1, 2]).await;
    assert!(epoch2 > epoch);
    let want: Vec<i64> = acked.iter().copied().collect();
    let got = client(&c, 0)
        .await
        .read(KEY, false, LONG)
        .await
        .expect("read")
        .values;
    // 100 was never acknowledged: present or not, but every acked add is there.
    assert!(
        want.iter().all(|v| got.contains(v)),
        "{got:?} lacks some of {want:?}"
    );
    c.wait_converged(KEY, &got).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_have_their_own_masters_and_keys_follow_the_map() {
    let c = Cluster::start_mode(MODE, 3, &["--groups", "2"]).await;
    settled(&c, &[0, 1, 2]).await;
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let in0 = keys
        .iter()
        .find(|k| group_of(k, 2) == 0)
        .expect("a key of group 0");
    let in1 = keys
        .iter()
        .find(|k| group_of(k, 2) == 1)
        .expect("a key of group 1");
    let masters = wait_for("both groups have masters", || async {
        let r = common::role_at(c.nodes[0].addr).await.ok()?;
        let g = r.control?.groups;
        Some((g[0].master.clone()?, g[1].master.clone()?))
    })
    .await;
    assert_eq!(masters, ("n3".to_string(), "n1".to_string()));
    let a0 = wait_for("add to group 0", || async {
        client(&c, 1).await.add(in0, 1, LONG).await.ok()
    })
    .await;
    let a1 = wait_for("add to group 1", || async {
        client(&c, 1).await.add(in1, 2, LONG).await.ok()
    })
    .await;
    assert_eq!((a0.master.as_str(), a1.master.as_str()), ("n3", "n1"));
}

/// Kills the router when the test ends, passed or not.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_and_redirects_reach_the_group_master_and_sigterm_is_clean() {
    use std::process::{Command, Stdio};
    let mut c = Cluster::start_mode(MODE, 3, &["--client-routing", "redirect"]).await;
    settled(&c, &[0, 1, 2]).await;
    // A replica answers with a redirect naming the group master.
    let r = client(&c, 0).await.add(KEY, 1, LONG).await;
    let Err(zoo::client::CallError::Server(e)) = r else {
        panic!("expected a redirect, got {r:?}");
    };
    assert_eq!(
        (e.code, e.master.as_deref()),
        (ErrorCode::Redirect, Some("n3"))
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_ports(1)[0]));
    let peers = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.addr))
        .collect::<Vec<_>>()
        .join(",");
    let _router = Guard(
        Command::new(common::BIN)
            .args(["router", "--peers", &peers, "--listen", &addr.to_string()])
            .args(["--refresh-ms", "100", "--request-timeout-ms", "5000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn router"),
    );
    let mut acked = Vec::new();
    for v in 1..=5 {
        let ack = wait_for(&format!("add {v} through the router"), || async move {
            let mut cl = Client::connect(addr, LONG).await.ok()?;
            cl.add(KEY, v, LONG).await.ok()
        })
        .await;
        assert_eq!(ack.master, "n3");
        acked.push(v);
    }
    c.kill9(2);
    let ack = wait_for(
        "add 6 through the router after the master's kill",
        || async {
            let mut cl = Client::connect(addr, LONG).await.ok()?;
            cl.add(KEY, 6, LONG).await.ok()
        },
    )
    .await;
    assert_ne!(ack.master, "n3");
    acked.push(6);
    let mut cl = Client::connect(addr, LONG).await.expect("router");
    assert_eq!(cl.read(KEY, false, LONG).await.expect("read").values, acked);
    // SIGTERM: the node syncs, logs a clean exit and restarts on its data.
    let pid = c.pid(1).to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_for("n2 logs a clean exit", || async {
        c.log_text(1).contains("exit clean").then_some(())
    })
    .await;
    c.kill9(1);
    c.spawn(1);
    c.wait_up(1).await;
    c.spawn(2);
    c.wait_up(2).await;
    settled(&c, &[0, 1, 2]).await;
    c.wait_converged(KEY, &acked).await;
}

/// Splits the cluster into `a` and the rest (both directions), or heals with `&[]`.
async fn split(c: &Cluster, a: &[usize]) {
    for i in 0..c.nodes.len() {
        let other: Vec<usize> = if a.is_empty() {
            Vec::new()
        } else {
            (0..c.nodes.len())
                .filter(|j| a.contains(&i) != a.contains(j))
                .collect()
        };
        block(c, i, &other).await;
    }
}

/// The old coordinator and the old master cut off together on the minority side of
/// 5 nodes: the standby takes over on the majority side and moves the group; the
/// old pair can neither commit a map (so the old master cannot shrink its ISR to
/// the nodes it still reaches) nor acknowledge a write. After the heal the old
/// coordinator does not depose the standby (pre-vote), and nothing acked is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_coordinator_and_master_cannot_act_beside_the_standby() {
    let c = Cluster::start_mode(MODE, 5, &["--debug-fault-injection"]).await;
    let (m, k, epoch) = settled(&c, &[0, 1, 2, 3, 4]).await;
    assert_eq!((m, k), (2, 0), "n3 masters group 0, n1 coordinates");
    let mut acked = BTreeSet::new();
    for v in 1..=5 {
        add_acked(&c, 3, v).await;
        acked.insert(v);
    }
    split(&c, &[0, 2]).await;
    let mut old = client(&c, 2).await;
    let w = old.add(KEY, 100, LONG).await;
    assert!(w.is_err(), "the cut-off master acknowledged {w:?}");
    let new = add_acked(&c, 3, 6).await;
    acked.insert(6);
    assert!(
        ["n2", "n4", "n5"].contains(&new.as_str()),
        "new master {new}"
    );
    let w = old.add(KEY, 101, LONG).await;
    assert!(
        w.is_err(),
        "the cut-off master acknowledged {w:?} beside {new}"
    );
    let r = old.read(KEY, false, LONG).await;
    assert!(r.is_err(), "the cut-off master served a read: {r:?}");
    let (_, k2, epoch2) = settled(&c, &[1, 3, 4]).await;
    assert_eq!(k2, 1, "the standby coordinates the majority side");
    assert!(epoch2 > epoch);
    // The old pair never committed a map of their own.
    for i in [0, 2] {
        let isr = group0(&c.role(i).await).isr.clone();
        assert!(
            !(isr.len() == 2 && isr.contains(&"n3".to_string())),
            "n{} {isr:?}",
            i + 1
        );
    }
    assert!(!c.log_text(0).contains("isr group=0"), "{}", c.log_text(0));
    split(&c, &[]).await;
    let (_, k3, epoch3) = settled(&c, &[0, 1, 2, 3, 4]).await;
    assert_eq!(
        (k3, epoch3),
        (1, epoch2),
        "after the heal: same coordinator and epoch"
    );
    let got = client(&c, 1)
        .await
        .read(KEY, false, LONG)
        .await
        .expect("read")
        .values;
    let want: Vec<i64> = acked.iter().copied().collect();
    assert!(
        want.iter().all(|v| got.contains(v)),
        "{got:?} lacks some of {want:?}"
    );
    c.wait_converged(KEY, &got).await;
}
