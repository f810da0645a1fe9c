//! The architectures the zoo implements, one module per mode, and the interface the
//! process lifecycle ([`crate::run`]) drives them through.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::eventlog::EventLog;
use crate::server::Handler;

pub mod async_failover;
mod gate;
pub mod metadata;
pub mod ops;
pub mod replog;
pub mod ring;

/// The `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeName {
    /// Master-slave, asynchronous replication, naive automatic failover: loses
    /// acknowledged writes and runs two masters when the master is cut off.
    AsyncFailover,
    /// Master-slave with one configured master, asynchronous replication and no
    /// failover: writes are unavailable while the master is down or cut off.
    FixedMaster,
    /// Master + one replica acknowledge before the client does, degrading to
    /// asynchronous after a timeout; majority elections, most up-to-date log wins.
    SemiSync,
    /// Every replica acknowledges before the client does; majority elections.
    Sync,
    /// Consensus: majority commit, read-index reads, check-quorum. Linearizable.
    Raft,
    /// Masterless ring, any node accepts writes, asynchronous push to all peers,
    /// wall-clock last-write-wins: concurrent or skewed writes are silently lost.
    LwwRing,
    /// Masterless ring with vector clocks: concurrent writes kept as siblings and
    /// merged on read (sets and lists by union).
    VclockRing,
    /// A coordinator (with a standby) owns the key-to-group map and assigns each
    /// data group's master; groups replicate to their whole in-sync set before the
    /// ack. Data operations go on without the coordinator.
    MetadataMaster,
}

/// A running mode: opened (data recovered) before the node reports ready, then
/// started, then served until shutdown.
pub trait Mode: Handler + Sized {
    /// Recovers this node's data and builds its state; errors stop the node.
    fn open(cfg: Arc<Config>, log: Arc<EventLog>) -> anyhow::Result<Arc<Self>>;
    /// Spawns the background tasks (heartbeats, replication ...), which end when
    /// `shutdown` turns true.
    fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>);
    /// Refuses new operations and makes the data durable.
    fn stop(&self);
}
