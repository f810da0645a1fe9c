//! Connections from a node to its peers: a small pool of idle connections per peer,
//! every connect and request bounded by a timeout (a partition drops packets, so
//! without one a peer call would hang), and the test-only simulated partition
//! (`--debug-fault-injection`) that makes calls to blocked peers behave as under an
//! iptables DROP rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::proto::{Request, Response};

/// Idle connections kept per peer.
const MAX_IDLE: usize = 8;

struct Slot {
    addr: SocketAddr,
    idle: Mutex<Vec<Client>>,
}

/// The peers of one node.
pub struct PeerPool {
    slots: BTreeMap<String, Slot>,
    connect_timeout: Duration,
    blocked: Mutex<BTreeSet<String>>,
}

/// A failed peer call.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("`{0}` is not a peer")]
    UnknownPeer(String),
    #[error(transparent)]
    Transport(#[from] ClientError),
}

impl PeerError {
    /// Whether the request may have reached the peer.
    pub fn request_sent(&self) -> bool {
        match self {
            PeerError::UnknownPeer(_) => false,
            PeerError::Transport(e) => e.request_sent(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerPool {
    pub fn new<'a>(
        peers: impl Iterator<Item = (&'a String, &'a SocketAddr)>,
        connect_timeout: Duration,
    ) -> PeerPool {
        PeerPool {
            slots: peers
                .map(|(n, a)| {
                    (
                        n.clone(),
                        Slot {
                            addr: *a,
                            idle: Mutex::new(Vec::new()),
                        },
                    )
                })
                .collect(),
            connect_timeout,
            blocked: Mutex::new(BTreeSet::new()),
        }
    }

    /// The peers' names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.slots.keys()
    }

    /// Sends `request` to `peer` and waits up to `deadline` for the answer.
    pub async fn call(
        &self,
        peer: &str,
        request: &Request,
        deadline: Duration,
    ) -> Result<Response, PeerError> {
        let slot = self
            .slots
            .get(peer)
            .ok_or_else(|| PeerError::UnknownPeer(peer.to_string()))?;
        let pooled = lock(&slot.idle).pop();
        if self.is_blocked(peer) {
            // Under a DROP rule a fresh connect hangs until its timeout; a request on
            // an already open connection is sent and never answered.
            return Err(match pooled {
                Some(_) => {
                    tokio::time::sleep(deadline).await;
                    ClientError::Timeout {
                        addr: slot.addr,
                        timeout: deadline,
                    }
                }
                None => {
                    tokio::time::sleep(self.connect_timeout).await;
                    ClientError::ConnectTimeout {
                        addr: slot.addr,
                        timeout: self.connect_timeout,
                    }
                }
            }
            .into());
        }
        let mut client = match pooled {
            Some(c) => c,
            None => Client::connect(slot.addr, self.connect_timeout).await?,
        };
        let response = client.call(request, deadline).await?;
        let mut idle = lock(&slot.idle);
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
        Ok(response)
    }

    /// Whether traffic with `peer` is blocked by simulated partition.
    pub fn is_blocked(&self, peer: &str) -> bool {
        lock(&self.blocked).contains(peer)
    }

    /// Replaces the set of blocked peers; `peers` must all be peers.
    pub fn set_blocked(&self, peers: &[String]) -> Result<Vec<String>, String> {
        let unknown: Vec<&String> = peers
            .iter()
            .filter(|p| !self.slots.contains_key(*p))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "not peers of this node: {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let set: BTreeSet<String> = peers.iter().cloned().collect();
        *lock(&self.blocked) = set.clone();
        Ok(set.into_iter().collect())
    }
}
