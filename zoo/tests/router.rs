//! `zoo router` in front of a 3-node raft cluster (redirect routing on the nodes):
//! writes go through it, it finds the new master after the old one is killed, bad
//! requests get errors, and SIGTERM stops it cleanly.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, wait_for, Cluster, BIN, CALL};
use zoo::client::Client;
use zoo::proto::{ErrorCode, Request, Response};

/// Kills the router when the test ends, passed or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_follows_the_master_through_a_kill() {
    let mut c = Cluster::start_mode("raft", 3, &["--client-routing", "redirect"]).await;
    let port = free_ports(1)[0];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let peers = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.addr))
        .collect::<Vec<_>>()
        .join(",");
    let log = c.tmp.path().join("router.log");
    let pid = c.tmp.path().join("router.pid");
    let mut router = Guard(
        Command::new(BIN)
            .args(["router", "--peers", &peers, "--listen", &addr.to_string()])
            .args(["--refresh-ms", "100", "--request-timeout-ms", "2000"])
            .arg("--log")
            .arg(&log)
            .arg("--pid-file")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn router"),
    );
    let connect = || async move { Client::connect(addr, CALL).await.ok() };
    wait_for("a write through the router succeeds", || async move {
        let mut cl = connect().await?;
        cl.add("s", 1, CALL).await.ok()
    })
    .await;
    let mut cl = connect().await.unwrap();
    let mut acked = vec![1];
    for v in 2..=5 {
        cl.add("s", v, CALL).await.unwrap();
        acked.push(v);
    }
    let r = cl
        .call(&Request::DebugBlockPeers { peers: vec![] }, CALL)
        .await
        .unwrap();
    assert!(
        matches!(r, Response::Error(ref e) if e.code == ErrorCode::BadRequest),
        "{r:?}"
    );
    let master = cl.role(CALL).await.unwrap().node;
    let i = c.nodes.iter().position(|n| n.name == master).unwrap();
    c.kill9(i);
    // Writes resume through the router once a new master is elected.
    let start = Instant::now();
    let mut v = 100;
    loop {
        v += 1;
        let mut cl = Client::connect(addr, CALL).await.unwrap();
        if cl.add("s", v, CALL).await.is_ok() {
            acked.push(v);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no master found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cl = Client::connect(addr, CALL).await.unwrap();
    let read = cl.read("s", false, CALL).await.unwrap();
    assert_ne!(read.node, master);
    for v in &acked {
        assert!(read.values.contains(v), "acked {v} missing: {read:?}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &router.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = router.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!pid.exists(), "pid file left behind");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("exit clean"), "{text}");
}

#[test]
fn router_rejects_bad_flags() {
    let out = Command::new(BIN)
        .args(["router", "--peers", "n1", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected NAME=ADDR:PORT"), "{err}");
    let out = Command::new(BIN)
        .args(["router", "--listen", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
