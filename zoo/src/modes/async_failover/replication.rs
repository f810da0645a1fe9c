//! Asynchronous replication of `async-failover`: a replica long-polls its master for
//! the operations after its (lineage, offset) and applies them in order; when its
//! history cannot be continued (it diverged, e.g. a master that stepped down with
//! writes nobody else has) the master sends a snapshot and the replica replaces its
//! data with it: a full resync, which is where acknowledged writes get lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{error, lock, AsyncFailover};
use crate::data::Data;
use crate::log_event;
use crate::proto::{DataImage, ErrorCode, Lineage, LineageFork, Op, Request, Response, RoleKind};
use crate::server::stopped;
use crate::store::Meta;

/// Most operations sent in one batch.
const MAX_BATCH: usize = 1000;

impl AsyncFailover {
    /// Master side of a fetch.
    pub(super) async fn serve_fetch(
        &self,
        from: &str,
        lineage: Lineage,
        offset: u64,
        wait_ms: u64,
    ) -> Response {
        let wait = Duration::from_millis(wait_ms.min(5_000));
        let mut waited = false;
        loop {
            {
                let st = lock(&self.state);
                if st.role != RoleKind::Master {
                    return error(
                        ErrorCode::NotMaster,
                        format!("{} is not master (fetch from {from})", self.cfg.node),
                    );
                }
                let store = lock(&self.store);
                let meta = store.meta();
                let current = store.offset();
                let continues = (lineage == meta.lineage && offset <= current)
                    || meta
                        .previous
                        .as_ref()
                        .is_some_and(|f| f.lineage == lineage && offset <= f.offset);
                let ops = if continues {
                    store.ops_after(offset, MAX_BATCH)
                } else {
                    None
                };
                match ops {
                    Some(ops) if !ops.is_empty() || waited || wait.is_zero() => {
                        return Response::Ops {
                            lineage: meta.lineage.clone(),
                            previous: meta.previous.clone(),
                            start: offset,
                            ops,
                        }
                    }
                    Some(_) => {}
                    None => {
                        log_event!(
                            self.log,
                            "serve-full-resync",
                            "to={from} their_lineage={lineage} their_offset={offset} our_lineage={} our_offset={current} elements={}",
                            meta.lineage,
                            store.element_count()
                        );
                        return Response::Snapshot {
                            lineage: meta.lineage.clone(),
                            previous: meta.previous.clone(),
                            offset: current,
                            image: store.snapshot(),
                        };
                    }
                }
            }
            // Caught up: wait for the next append (or the deadline), then answer.
            let mut rx = self.offset_tx.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|o| *o != offset)).await;
            waited = true;
        }
    }

    /// Replica side: applies a batch from `master`, unless this node's role or
    /// position changed while the fetch was in flight.
    fn apply_ops(
        &self,
        master: &str,
        lineage: Lineage,
        previous: Option<LineageFork>,
        start: u64,
        ops: Vec<Op>,
    ) {
        let mut st = lock(&self.state);
        if st.role != RoleKind::Replica || st.master.as_deref() != Some(master) {
            return;
        }
        st.master_contact = Instant::now();
        let mut store = lock(&self.store);
        if store.offset() != start {
            return;
        }
        if store.meta().lineage != lineage || store.meta().previous != previous {
            log_event!(
                self.log,
                "adopt-lineage",
                "master={master} lineage={} -> {lineage} at offset={start}",
                store.meta().lineage
            );
            let meta = Meta {
                epoch: store.meta().epoch.max(st.epoch),
                lineage,
                previous,
            };
            if let Err(e) = store.set_meta(meta) {
                log_event!(self.log, "storage-error", "lineage not persisted: {e}");
                return;
            }
        }
        if ops.is_empty() {
            return;
        }
        match store.append_batch(start, ops) {
            Ok(offset) => {
                self.offset_tx.send_replace(offset);
            }
            Err(e) => log_event!(self.log, "storage-error", "replicated batch: {e}"),
        }
    }

    /// Replica side: discards all local data and takes the master's.
    fn apply_snapshot(
        &self,
        master: &str,
        lineage: Lineage,
        previous: Option<LineageFork>,
        offset: u64,
        image: DataImage,
    ) {
        let mut st = lock(&self.state);
        if st.role != RoleKind::Replica || st.master.as_deref() != Some(master) {
            return;
        }
        st.master_contact = Instant::now();
        let mut store = lock(&self.store);
        let incoming = Data::from_image(image.clone()).element_count();
        log_event!(
            self.log,
            "full-resync",
            "master={master} discarding lineage={} offset={} elements={}; taking lineage={lineage} offset={offset} elements={incoming}",
            store.meta().lineage,
            store.offset(),
            store.element_count()
        );
        let meta = Meta {
            epoch: store.meta().epoch.max(st.epoch),
            lineage,
            previous,
        };
        match store.replace_with_snapshot(meta, offset, image) {
            Ok(()) => {
                self.offset_tx.send_replace(offset);
            }
            Err(e) => log_event!(self.log, "storage-error", "full resync: {e}"),
        }
    }
}

/// Spawns the replica's fetch loop; it idles while this node is master.
pub(super) fn spawn(node: &Arc<AsyncFailover>, mut shutdown: watch::Receiver<bool>) {
    let node = node.clone();
    tokio::spawn(async move {
        let me = node.cfg.node.clone();
        let wait = node.cfg.heartbeat;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let target = {
                let st = lock(&node.state);
                match (&st.role, &st.master) {
                    (RoleKind::Replica, Some(m)) if *m != me => Some(m.clone()),
                    _ => None,
                }
            };
            let Some(master) = target else {
                pause(&mut shutdown, wait).await;
                continue;
            };
            let (lineage, offset) = {
                let store = lock(&node.store);
                (store.meta().lineage.clone(), store.offset())
            };
            let fetch = Request::Fetch {
                from: me.clone(),
                lineage,
                offset,
                wait_ms: wait.as_millis() as u64,
            };
            let deadline = wait + node.cfg.peer_timeout;
            let answer = tokio::select! {
                a = node.peers.call(&master, &fetch, deadline) => a,
                _ = stopped(&mut shutdown) => return,
            };
            match answer {
                Ok(Response::Ops {
                    lineage,
                    previous,
                    start,
                    ops,
                }) => node.apply_ops(&master, lineage, previous, start, ops),
                Ok(Response::Snapshot {
                    lineage,
                    previous,
                    offset,
                    image,
                }) => node.apply_snapshot(&master, lineage, previous, offset, image),
                // Not master (any more) or unreachable: the heartbeats will sort out
                // whom to follow; try again shortly.
                Ok(_) | Err(_) => pause(&mut shutdown, wait).await,
            }
        }
    });
}

async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    let _ = tokio::time::timeout(d, stopped(shutdown)).await;
}
