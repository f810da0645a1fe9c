//! The architectures the zoo implements, one module per mode, and the interface the
//! process lifecycle ([`crate::run`]) drives them through.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::eventlog::EventLog;
use crate::server::Handler;

pub mod async_failover;

/// The `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeName {
    /// Master-slave, asynchronous replication, naive automatic failover: loses
    /// acknowledged writes and runs two masters when the master is cut off.
    AsyncFailover,
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
