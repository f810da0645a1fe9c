//! The `time` request: a node answers its process's wall clock in Unix milliseconds,
//! and a node started under libfaketime with an offset answers the shifted time,
//! which is how the harness observes a lab clock fault from the system's side.
//! The libfaketime half skips when the library is not installed (fails under
//! `CI=true`, where the faketime package is installed).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{free_ports, wait_for, BIN, CALL};
use zoo::client::Client;
use zoo::proto::{Request, Response};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a one-node `fixed-master` zoo, with `env` added to its environment.
async fn start(dir: &Path, env: &[(&str, &str)]) -> (Node, SocketAddr) {
    let port = free_ports(1)[0];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(BIN)
        .args(["--mode", "fixed-master", "--node", "n1", "--listen"])
        .arg(addr.to_string())
        .args(["--peers", &format!("n1={addr}")])
        .arg("--data-dir")
        .arg(dir.join(format!("data-{port}")))
        .arg("--log")
        .arg(dir.join(format!("{port}.log")))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn zoo");
    let node = Node(child);
    wait_for("the node answers role", || async move {
        common::role_at(addr).await.ok()
    })
    .await;
    (node, addr)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Asks `addr` for its time; returns (its answer, the controller's time midway).
async fn time_at(addr: SocketAddr) -> (i64, i64) {
    let mut c = Client::connect(addr, CALL).await.expect("connect");
    let sent = now_ms();
    let r = c.call(&Request::Time, CALL).await.expect("time answered");
    let mid = (sent + now_ms()) / 2;
    match r {
        Response::Time { unix_ms } => (unix_ms, mid),
        other => panic!("unexpected answer to time: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_answers_the_process_wall_clock_shifted_by_libfaketime() {
    let json = serde_json::to_string(&Request::Time).unwrap();
    assert_eq!(json, r#"{"op":"time"}"#);
    let reply: Response = serde_json::from_str(r#"{"type":"time","unix_ms":-5}"#).unwrap();
    assert_eq!(reply, Response::Time { unix_ms: -5 });

    let tmp = tempfile::tempdir().unwrap();
    let (_plain, addr) = start(tmp.path(), &[]).await;
    let (t, mid) = time_at(addr).await;
    assert!(
        (t - mid).abs() < 1_000,
        "plain node: {t} vs controller {mid}"
    );

    if !Path::new(LIBFAKETIME).is_file() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but {LIBFAKETIME} is missing: install the faketime package"
        );
        eprintln!("time: libfaketime half skipped: {LIBFAKETIME} missing");
        return;
    }
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "+7200"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let (_skewed, addr) = start(tmp.path(), &env).await;
    let (t, mid) = time_at(addr).await;
    let ahead = t - mid;
    assert!(
        (ahead - 7_200_000).abs() < 1_000,
        "node under FAKETIME=+7200 is {ahead} ms ahead"
    );
}
