//! Test fixture: a zoo cluster of child processes on 127.0.0.1, each node with its own
//! port, data directory and log in one temporary directory; nodes can be killed with
//! SIGKILL and restarted on the same data. Every child is killed when the fixture
//! is dropped.

#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zoo::client::{CallError, Client};
use zoo::proto::{Request, Response, RoleInfo};

pub const BIN: &str = env!("CARGO_BIN_EXE_zoo");
/// Fast timings: failover within about a second, with margin for a loaded machine
/// (a spurious failover would fail the tests that expect a stable master).
pub const TIMING: [&str; 6] = [
    "--heartbeat-ms",
    "50",
    "--failover-timeout-ms",
    "800",
    "--peer-timeout-ms",
    "200",
];
pub const CALL: Duration = Duration::from_secs(2);

/// Free loopback ports (bound and released; another process could take one in
/// between, which would show up as a clear "cannot listen" failure).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
    peers: String,
    extra: Vec<String>,
    /// Flags for single nodes, by index (e.g. a skewed clock on one node).
    node_extra: Vec<Vec<String>>,
    mode: String,
}

impl Cluster {
    /// Starts `n` nodes (n1..) of mode `async-failover` and waits until each answers `role`.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_mode("async-failover", n, extra).await
    }

    /// Starts `n` nodes (n1..) of `mode` and waits until each answers `role`.
    pub async fn start_mode(mode: &str, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_nodes(mode, n, extra, &[]).await
    }

    /// As [`Cluster::start_mode`], node `i` also getting `node_extra[i]`.
    pub async fn start_nodes(
        mode: &str,
        n: usize,
        extra: &[&str],
        node_extra: &[&[&str]],
    ) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nodes: Vec<Node> = free_ports(n)
            .into_iter()
            .enumerate()
            .map(|(i, port)| {
                let name = format!("n{}", i + 1);
                Node {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    dir: tmp.path().join(format!("{name}-data")),
                    log: tmp.path().join(format!("{name}.log")),
                    name,
                    child: None,
                }
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            tmp,
            nodes,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            node_extra: node_extra
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
            mode: mode.to_string(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_up(i).await;
        }
        c
    }

    /// Starts node `i` (index into `nodes`) as a child process.
    pub fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        assert!(node.child.is_none(), "{} already running", node.name);
        let child = Command::new(BIN)
            .args(["--mode", &self.mode, "--node", &node.name])
            .arg("--listen")
            .arg(node.addr.to_string())
            .args(["--peers", &self.peers])
            .arg("--data-dir")
            .arg(&node.dir)
            .arg("--log")
            .arg(&node.log)
            .args(TIMING)
            .args(&self.extra)
            .args(self.node_extra.get(i).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn zoo");
        self.nodes[i].child = Some(child);
    }

    pub async fn wait_up(&self, i: usize) {
        let addr = self.nodes[i].addr;
        wait_for(
            &format!("{} answers role", self.nodes[i].name),
            || async move { role_at(addr).await.ok() },
        )
        .await;
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// The pid of node `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("running").id()
    }

    pub async fn client(&self, i: usize) -> Client {
        Client::connect(self.nodes[i].addr, CALL)
            .await
            .expect("connect")
    }

    pub async fn role(&self, i: usize) -> RoleInfo {
        role_at(self.nodes[i].addr).await.expect("role")
    }

    pub async fn local(&self, i: usize, key: &str) -> Vec<i64> {
        self.client(i)
            .await
            .read(key, true, CALL)
            .await
            .expect("local read")
            .values
    }

    /// Sends a raw request to node `i`.
    pub async fn call(&self, i: usize, req: &Request) -> Response {
        self.client(i).await.call(req, CALL).await.expect("call")
    }

    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Waits until every running node's local copy of `key` equals `want`.
    pub async fn wait_converged(&self, key: &str, want: &[i64]) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let addr = self.nodes[i].addr;
            let desc = format!("{} holds {want:?}", self.nodes[i].name);
            wait_for(&desc, || async move {
                let mut c = Client::connect(addr, CALL).await.ok()?;
                let got = c.read(key, true, CALL).await.ok()?.values;
                (got == want).then_some(())
            })
            .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub async fn role_at(addr: SocketAddr) -> Result<RoleInfo, CallError> {
    let mut c = Client::connect(addr, CALL).await?;
    c.role(CALL).await
}

/// Polls `probe` every 25 ms until it yields a value; panics after 10 s, naming
/// what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out after 10 s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
