//! `zoo router`: a local routing process (like MongoDB's mongos) that clients talk
//! to instead of the nodes. It finds the master by asking every node for its role
//! (the highest-epoch claim wins, ties broken by how many nodes follow it), forwards
//! each client request there, follows `redirect` answers, and on failure looks the
//! master up again and retries only what certainly did not happen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::parse_peers;
use crate::daemon::ReadySignal;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::peers::PeerPool;
use crate::proto::{ErrorCode, ErrorReply, Request, Response, RoleKind};
use crate::server::{serve, stopped, Handler, Reply};

/// `zoo router`: forwards client requests to the current master of a zoo cluster.
#[derive(Debug, Clone, Parser)]
#[command(name = "zoo router")]
pub struct RouterArgs {
    /// The cluster's nodes: n1=ADDR:PORT,n2=ADDR:PORT,...
    #[arg(long)]
    pub peers: String,
    /// Address clients connect to, e.g. 127.0.0.1:7100.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Log file (appended to); stderr when absent.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// File to write the router's pid to once it listens; removed on clean shutdown.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Detach: start in a new session and exit 0 once listening.
    #[arg(long)]
    pub daemon: bool,
    /// Timeout of each connect and role query to a node.
    #[arg(long, default_value_t = 500)]
    pub peer_timeout_ms: u64,
    /// How long a forwarded request may take before it counts as indeterminate.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// How often the router re-checks which node is master.
    #[arg(long, default_value_t = 1000)]
    pub refresh_ms: u64,
    /// How long --daemon waits for the router to listen.
    #[arg(long, default_value_t = 10_000)]
    pub daemon_ready_timeout_ms: u64,
}

/// Most redirects or master changes followed for one request.
const MAX_HOPS: usize = 3;

struct Router {
    pool: PeerPool,
    master: Mutex<Option<String>>,
    log: Arc<EventLog>,
    peer_timeout: Duration,
    request_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Router {
    /// Asks every node for its role and picks the master.
    async fn find_master(&self) -> Option<String> {
        let names: Vec<String> = self.pool.names().cloned().collect();
        let mut roles = Vec::new();
        for name in &names {
            if let Ok(Response::Role(r)) = self
                .pool
                .call(name, &Request::Role, self.peer_timeout)
                .await
            {
                roles.push(r);
            }
        }
        let best = roles
            .iter()
            .filter(|r| r.role == RoleKind::Master)
            .max_by_key(|m| {
                let followers = roles
                    .iter()
                    .filter(|r| r.master.as_deref() == Some(m.node.as_str()))
                    .count();
                (m.epoch, followers, std::cmp::Reverse(m.node.clone()))
            })
            .map(|m| m.node.clone());
        let mut cur = lock(&self.master);
        if *cur != best {
            log_event!(
                self.log,
                "route",
                "master {} -> {}",
                cur.as_deref().unwrap_or("-"),
                best.as_deref().unwrap_or("-")
            );
            cur.clone_from(&best);
        }
        best
    }

    async fn route(&self, request: Request) -> Response {
        let mut master = lock(&self.master).clone();
        for _ in 0..=MAX_HOPS {
            let Some(m) = master.clone().or(self.find_master().await) else {
                return Response::Error(ErrorReply::not_applied(
                    ErrorCode::NoMaster,
                    "router: no node claims to be master",
                ));
            };
            match self.pool.call(&m, &request, self.request_timeout).await {
                Ok(Response::Error(e)) if e.code == ErrorCode::Redirect => {
                    // Follow the node's hint when it names a known node.
                    master = e.master.filter(|n| self.pool.names().any(|p| p == n));
                    *lock(&self.master) = master.clone();
                }
                Ok(Response::Error(e))
                    if matches!(
                        e.code,
                        ErrorCode::NotMaster | ErrorCode::NoMaster | ErrorCode::MasterUnreachable
                    ) =>
                {
                    master = None;
                }
                Ok(response) => return response,
                Err(e) if !e.request_sent() => {
                    log_event!(self.log, "route-failed", "{m}: {e}");
                    master = None;
                }
                Err(e) => {
                    *lock(&self.master) = None;
                    return Response::Error(ErrorReply::indeterminate(
                        ErrorCode::ForwardLost,
                        format!("router: sent to master {m} but got no answer: {e}"),
                    ));
                }
            }
        }
        Response::Error(ErrorReply::not_applied(
            ErrorCode::MasterUnreachable,
            format!("router: no master accepted the request after {MAX_HOPS} retries"),
        ))
    }
}

impl Handler for Router {
    async fn handle(&self, request: Request) -> Reply {
        if request.peer_sender().is_some() || matches!(request, Request::DebugBlockPeers { .. }) {
            return Reply::Send(Response::Error(ErrorReply::not_applied(
                ErrorCode::BadRequest,
                format!(
                    "the router only routes client requests, not {}",
                    request.op_name()
                ),
            )));
        }
        Reply::Send(self.route(request).await)
    }
}

/// Runs the router until SIGTERM or SIGINT.
pub async fn run(args: RouterArgs, ready: &mut Option<ReadySignal>) -> anyhow::Result<()> {
    let log = Arc::new(
        EventLog::open("router", args.log.as_deref()).context("cannot open the router log")?,
    );
    let nodes: BTreeMap<String, SocketAddr> = parse_peers(&args.peers)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .collect();
    if args.peer_timeout_ms == 0 || args.request_timeout_ms == 0 || args.refresh_ms == 0 {
        anyhow::bail!("--peer-timeout-ms, --request-timeout-ms and --refresh-ms must be positive");
    }
    let peer_timeout = Duration::from_millis(args.peer_timeout_ms);
    let router = Arc::new(Router {
        pool: PeerPool::new(nodes.iter(), peer_timeout),
        master: Mutex::new(None),
        log: log.clone(),
        peer_timeout,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
    });
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(p) = &args.pid_file {
        crate::run::write_pid_file(p)?;
    }
    log_event!(
        log,
        "listening",
        "addr={} pid={} nodes={}",
        args.listen,
        std::process::id(),
        args.peers
    );
    if let Some(r) = ready.take() {
        r.ready();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresher = {
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let every = Duration::from_millis(args.refresh_ms);
        tokio::spawn(async move {
            loop {
                router.find_master().await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        })
    };
    let server = tokio::spawn(serve(listener, router, log.clone(), stop_rx));
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    log_event!(log, "shutdown", "signal={which}");
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = refresher.await;
    if let Some(p) = &args.pid_file {
        if let Err(e) = std::fs::remove_file(p) {
            log_event!(
                log,
                "shutdown",
                "cannot remove pid file {}: {e}",
                p.display()
            );
        }
    }
    log_event!(log, "exit", "clean");
    Ok(())
}
