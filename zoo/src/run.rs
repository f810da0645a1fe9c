//! The life of a node process: open the event log, recover the mode's data, listen,
//! write the pid file, report readiness, serve until SIGTERM or SIGINT, then stop
//! cleanly (data synced, pid file removed).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::Config;
use crate::daemon::ReadySignal;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::modes::async_failover::AsyncFailover;
use crate::modes::metadata::MetadataMode;
use crate::modes::replog::{FixedMaster, Raft, SemiSync, SyncAll};
use crate::modes::ring::{LwwRing, VClockRing};
use crate::modes::{Mode, ModeName};
use crate::server::serve;

/// Runs a node until it is told to stop. `ready` is signalled once the node listens;
/// on an error before that it is left for the caller to report.
pub async fn run(cfg: Config, ready: &mut Option<ReadySignal>) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let log = match &cfg.log {
        Some(p) => EventLog::open(&cfg.node, Some(p))
            .with_context(|| format!("cannot open log file {}", p.display()))?,
        None => EventLog::open(&cfg.node, None).context("cannot open stderr log")?,
    };
    let log = Arc::new(log);
    let result = match cfg.mode {
        ModeName::AsyncFailover => run_mode::<AsyncFailover>(cfg.clone(), log.clone(), ready).await,
        ModeName::FixedMaster => run_mode::<FixedMaster>(cfg.clone(), log.clone(), ready).await,
        ModeName::SemiSync => run_mode::<SemiSync>(cfg.clone(), log.clone(), ready).await,
        ModeName::Sync => run_mode::<SyncAll>(cfg.clone(), log.clone(), ready).await,
        ModeName::Raft => run_mode::<Raft>(cfg.clone(), log.clone(), ready).await,
        ModeName::LwwRing => run_mode::<LwwRing>(cfg.clone(), log.clone(), ready).await,
        ModeName::VclockRing => run_mode::<VClockRing>(cfg.clone(), log.clone(), ready).await,
        ModeName::MetadataMaster => run_mode::<MetadataMode>(cfg.clone(), log.clone(), ready).await,
    };
    if let Err(e) = &result {
        log_event!(log, "fatal", "{e:#}");
    }
    result
}

async fn run_mode<M: Mode>(
    cfg: Arc<Config>,
    log: Arc<EventLog>,
    ready: &mut Option<ReadySignal>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let node = M::open(cfg.clone(), log.clone())?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    if let Some(p) = &cfg.pid_file {
        write_pid_file(p)?;
    }
    log_event!(
        log,
        "listening",
        "addr={} pid={} peers={}",
        cfg.listen,
        std::process::id(),
        cfg.peers()
            .map(|(n, a)| format!("{n}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    if let Some(r) = ready.take() {
        r.ready();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    node.start(stop_rx.clone());
    let server = tokio::spawn(serve(listener, node.clone(), log.clone(), stop_rx));
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    log_event!(log, "shutdown", "signal={which}");
    node.stop();
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(p) = &cfg.pid_file {
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

/// Writes the pid atomically (temporary file, then rename).
pub(crate) fn write_pid_file(path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write pid file {}", path.display()))
}
