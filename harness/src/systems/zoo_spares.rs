//! Spare client connections to zoo nodes, as a driver's connection pool keeps them:
//! per node a few connections opened (and so accepted by the node) ahead of need,
//! handed out oldest first whenever a client needs a new connection, and topped up
//! in the background. The known-answer `pause-master` scenario turns them on: a
//! client whose request timed out at the frozen master sends its next one on a
//! connection the master accepted before it froze, so the request waits in a socket
//! the master reads as soon as it wakes — before the new master's messages, which
//! arrived on connections still in its accept queue. That is how clients that stuck
//! with an old master reach it in real deployments, and without it every request of
//! the pause's last seconds waited behind the new master's news and saw nothing stale.
//! [`SparingZoo`] is the zoo with its clients drawing on such a pool.

use super::{Zoo, ZooClient};
use crate::nodes::NodeSpec;
use crate::runner::stop::Stop;
use crate::systems::{NodeHandle, RoleView, System};
use nemesis::process::ProcessState;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use zoo::client::Client;

/// The pool of one run's zoo clients.
pub struct Spares {
    /// Spare connections kept per node.
    per_node: usize,
    connect_timeout: Duration,
    nodes: Mutex<BTreeMap<SocketAddr, Slot>>,
}

#[derive(Default)]
struct Slot {
    idle: VecDeque<Client>,
    /// Connects under way.
    opening: usize,
}

impl Spares {
    /// A pool keeping `per_node` spare connections to each node it is asked about.
    pub fn new(per_node: usize, connect_timeout: Duration) -> Arc<Spares> {
        Arc::new(Spares {
            per_node,
            connect_timeout,
            nodes: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Slot>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest spare connection to `addr`, if one is ready; either way the
    /// node's spares are topped up in the background.
    pub fn take(self: &Arc<Self>, addr: SocketAddr) -> Option<Client> {
        let (spare, missing) = {
            let mut nodes = self.lock();
            let slot = nodes.entry(addr).or_default();
            let spare = slot.idle.pop_front();
            let missing = self.per_node.saturating_sub(slot.idle.len() + slot.opening);
            slot.opening += missing;
            (spare, missing)
        };
        for _ in 0..missing {
            let pool = self.clone();
            tokio::spawn(async move {
                let opened = Client::connect(addr, pool.connect_timeout).await;
                let mut nodes = pool.lock();
                let slot = nodes.entry(addr).or_default();
                slot.opening = slot.opening.saturating_sub(1);
                // A node that refuses (down, not yet started) gets no spare: the
                // client connects itself and sees the refusal.
                if let Ok(c) = opened {
                    if slot.idle.len() < pool.per_node {
                        slot.idle.push_back(c);
                    }
                }
            });
        }
        spare
    }

    /// Spare connections ready for `addr` now.
    pub fn ready(&self, addr: SocketAddr) -> usize {
        self.lock().get(&addr).map_or(0, |s| s.idle.len())
    }
}

/// The zoo, its clients (workload, role observers, final reads) taking new
/// connections from a [`Spares`] pool. Everything else is the zoo's own: every
/// method of [`System`] is handed to it, the defaulted ones too, so nothing the zoo
/// does differently from a default is lost here.
pub struct SparingZoo {
    zoo: Arc<Zoo>,
    spares: Arc<Spares>,
}

impl SparingZoo {
    pub fn new(zoo: Zoo, spares: Arc<Spares>) -> SparingZoo {
        SparingZoo {
            zoo: Arc::new(zoo),
            spares,
        }
    }
}

impl System for SparingZoo {
    type Client = ZooClient;

    fn describe(&self) -> String {
        self.zoo.describe()
    }

    fn setup_node(
        &self,
        node: &NodeHandle,
        all: &[NodeSpec],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.setup_node(node, all)
    }

    fn await_ready(
        &self,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.await_ready(nodes, timeout)
    }

    fn teardown_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.teardown_node(node)
    }

    fn roles(
        &self,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> impl Future<Output = Vec<RoleView>> + Send {
        self.zoo.roles(nodes, timeout)
    }

    fn log_paths(&self, node: &NodeSpec) -> Vec<String> {
        self.zoo.log_paths(node)
    }

    fn client(&self, node: &NodeSpec) -> ZooClient {
        self.zoo.client(node).with_spares(self.spares.clone())
    }

    fn pid_file(&self, node: &NodeSpec) -> String {
        self.zoo.pid_file(node)
    }

    fn restart_script(&self, node: &NodeSpec, all: &[NodeSpec]) -> Option<String> {
        self.zoo.restart_script(node, all)
    }

    fn restart_node(
        &self,
        node: &NodeHandle,
        all: &[NodeSpec],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.restart_node(node, all)
    }

    fn supervise(
        self: Arc<Self>,
        nodes: Vec<NodeHandle>,
        stop: Stop,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.zoo.clone().supervise(nodes, stop)
    }

    fn notes(&self) -> Vec<String> {
        self.zoo.notes()
    }

    fn version(&self, node: &NodeHandle) -> impl Future<Output = Option<String>> + Send {
        self.zoo.version(node)
    }

    fn kill_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.kill_node(node)
    }

    fn pause_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.pause_node(node)
    }

    fn resume_node(&self, node: &NodeHandle) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.zoo.resume_node(node)
    }

    fn process_state(
        &self,
        node: &NodeHandle,
    ) -> impl Future<Output = anyhow::Result<ProcessState>> + Send {
        self.zoo.process_state(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoo::proto::Request;

    /// A server that answers every line on every connection with a role error, and
    /// counts the connections it accepted.
    async fn server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        let reply = "{\"type\":\"error\",\"code\":\"bad_request\",\"outcome\":\"not_applied\",\"message\":\"test\"}\n";
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn spares_are_opened_ahead_handed_out_and_topped_up() {
        let (addr, accepted) = server().await;
        let pool = Spares::new(3, Duration::from_secs(2));
        // Nothing is open before the first ask; the ask starts filling the pool.
        assert!(pool.take(addr).is_none());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.ready(addr) < 3 {
            assert!(std::time::Instant::now() < deadline, "pool never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A spare works as a connection, and taking it opens a replacement.
        let mut c = pool.take(addr).expect("a spare");
        let answer = c.call(&Request::Role, Duration::from_secs(5)).await;
        assert!(answer.is_ok(), "{answer:?}");
        while accepted.load(std::sync::atomic::Ordering::SeqCst) < 4 || pool.ready(addr) < 3 {
            assert!(std::time::Instant::now() < deadline, "pool never topped up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Never more than asked for.
        assert_eq!(pool.ready(addr), 3);
    }

    #[tokio::test]
    async fn a_node_that_refuses_gets_no_spares() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool = Spares::new(2, Duration::from_secs(1));
        assert!(pool.take(addr).is_none());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.ready(addr), 0);
        assert!(pool.take(addr).is_none());
    }
}
