//! Integration tests of `lww-ring` on 3 child processes: writes anywhere converge,
//! and its two anomalies — concurrent adds on both sides of a partition lose one, and
//! an acknowledged write from a node whose clock is behind is silently discarded —
//! are reproduced; data survives kill -9.

mod common;

use common::{wait_for, Cluster, CALL};
use zoo::proto::{ErrorCode, Request, Response};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lww_ring_converges_and_loses_concurrent_and_skewed_writes() {
    // n3's clock runs 60 s behind.
    let mut c = Cluster::start_nodes(
        "lww-ring",
        3,
        &["--debug-fault-injection"],
        &[&[], &[], &["--clock-offset-ms", "-60000"]],
    )
    .await;
    // Any node accepts writes; they converge everywhere.
    for v in 1..=6 {
        let i = (v % 2) as usize;
        c.client(i).await.add("s", v, CALL).await.unwrap();
        // Sequential adds through different nodes: wait for each to arrive.
        c.wait_converged("s", &(1..=v).collect::<Vec<_>>()).await;
    }
    // Bad operations get errors.
    let e = c
        .call(
            0,
            &Request::Append {
                key: "s".into(),
                value: 1,
            },
        )
        .await;
    assert!(
        matches!(e, Response::Error(ref r) if r.code == ErrorCode::WrongType),
        "{e:?}"
    );
    c.client(0).await.write("r", 1, CALL).await.unwrap();
    let e = c
        .call(
            0,
            &Request::Cas {
                key: "r".into(),
                from: 5,
                to: 6,
            },
        )
        .await;
    assert!(
        matches!(e, Response::Error(ref r) if r.code == ErrorCode::CasMismatch),
        "{e:?}"
    );

    // Concurrent adds: n1 cut off, 100 added on n1 and 200 on n2, then healed.
    let block = |peers: Vec<&str>| Request::DebugBlockPeers {
        peers: peers.into_iter().map(String::from).collect(),
    };
    for (i, peers) in [vec!["n2", "n3"], vec!["n1"], vec!["n1"]]
        .into_iter()
        .enumerate()
    {
        c.call(i, &block(peers)).await;
    }
    c.client(0).await.add("s", 100, CALL).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.client(1).await.add("s", 200, CALL).await.unwrap();
    for i in 0..3 {
        c.call(i, &block(vec![])).await;
    }
    // The later stamp (n2's) wins everywhere: n1's acknowledged 100 is gone.
    let mut after: Vec<i64> = (1..=6).collect();
    after.push(200);
    c.wait_converged("s", &after).await;

    // Skew: n3 (60 s behind) writes after n1; its acknowledged write loses.
    c.client(0).await.write("k", 1, CALL).await.unwrap();
    let addr = c.nodes[2].addr;
    wait_for("n3 holds k=1", || async move {
        let mut cl = zoo::client::Client::connect(addr, CALL).await.ok()?;
        (cl.get("k", true, CALL).await.ok()?.value == Some(1)).then_some(())
    })
    .await;
    let ack = c.client(2).await.write("k", 2, CALL).await.unwrap();
    assert_eq!(ack.master, "n3");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..3 {
        let got = c.client(i).await.get("k", true, CALL).await.unwrap().value;
        assert_eq!(got, Some(1), "n{}: the skewed write should be lost", i + 1);
    }
    assert!(c.log_text(2).contains("lww-discard"));

    // kill -9 and restart: the data comes back from disk.
    c.kill9(1);
    c.spawn(1);
    c.wait_up(1).await;
    assert_eq!(c.local(1, "s").await, after);
}

/// Cuts `i` off from the other two nodes, or heals everything with `None`.
async fn split(c: &Cluster, i: Option<usize>) {
    let names = ["n1", "n2", "n3"];
    for j in 0..3 {
        let peers: Vec<String> = match i {
            None => vec![],
            Some(i) if i == j => names
                .iter()
                .filter(|n| **n != names[i])
                .map(|n| n.to_string())
                .collect(),
            Some(i) => vec![names[i].to_string()],
        };
        let r = c.call(j, &Request::DebugBlockPeers { peers }).await;
        assert!(matches!(r, Response::DebugBlocked { .. }), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vclock_ring_keeps_concurrent_writes_as_siblings_and_merges_them() {
    // A skewed clock changes nothing here: vector clocks order the writes.
    let mut c = Cluster::start_nodes(
        "vclock-ring",
        3,
        &["--debug-fault-injection"],
        &[&[], &[], &["--clock-offset-ms", "-60000"]],
    )
    .await;
    c.client(0).await.add("s", 1, CALL).await.unwrap();
    c.client(0).await.write("r", 1, CALL).await.unwrap();
    c.client(0).await.append("l", 1, CALL).await.unwrap();
    c.wait_converged("s", &[1]).await;
    split(&c, Some(0)).await;
    c.client(0).await.add("s", 100, CALL).await.unwrap();
    c.client(2).await.add("s", 200, CALL).await.unwrap();
    c.client(0).await.write("r", 10, CALL).await.unwrap();
    c.client(2).await.write("r", 20, CALL).await.unwrap();
    c.client(0).await.append("l", 2, CALL).await.unwrap();
    c.client(2).await.append("l", 3, CALL).await.unwrap();
    split(&c, None).await;
    // Both concurrent adds survive everywhere.
    c.wait_converged("s", &[1, 100, 200]).await;
    for i in 0..3 {
        let addr = c.nodes[i].addr;
        let reg = wait_for(
            &format!("n{} sees both register siblings", i + 1),
            || async move {
                let mut cl = zoo::client::Client::connect(addr, CALL).await.ok()?;
                let r = cl.get("r", true, CALL).await.ok()?;
                (r.siblings == vec![10, 20]).then_some(r)
            },
        )
        .await;
        assert_eq!(reg.value, Some(20), "the largest sibling is the value");
        let list = c.client(i).await.read_list("l", true, CALL).await.unwrap();
        let mut got = list.values.clone();
        got.sort();
        assert_eq!(got, vec![1, 2, 3], "n{}: {list:?}", i + 1);
    }
    // A cas on a register with siblings is refused; a write resolves them.
    let e = c
        .call(
            1,
            &Request::Cas {
                key: "r".into(),
                from: 20,
                to: 21,
            },
        )
        .await;
    assert!(
        matches!(e, Response::Error(ref r) if r.code == ErrorCode::CasMismatch),
        "{e:?}"
    );
    c.client(1).await.write("r", 30, CALL).await.unwrap();
    let addr = c.nodes[0].addr;
    wait_for("n1 holds r=30 without siblings", || async move {
        let mut cl = zoo::client::Client::connect(addr, CALL).await.ok()?;
        let r = cl.get("r", true, CALL).await.ok()?;
        (r.value == Some(30) && r.siblings.is_empty()).then_some(())
    })
    .await;
    c.kill9(2);
    c.spawn(2);
    c.wait_up(2).await;
    assert_eq!(c.local(2, "s").await, vec![1, 100, 200]);
}
