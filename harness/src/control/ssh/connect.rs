//! One SSH connection to one node, from nothing to logged in: TCP connect, the
//! handshake with the server key checked against known_hosts under the
//! `--strict-host-key-checking` policy (accept-new appends unknown keys under a
//! process-wide lock), and login, all within the connect timeout.
//! [`Session`](super::Session) keeps the connection open and calls [`establish`]
//! again to re-establish it.

use std::borrow::Cow;
use std::sync::{Arc, Mutex as StdMutex};

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::Preferred;

use crate::control::auth::{login, Credentials};
use crate::control::error::{one_line, HostKeyProblem};
use crate::control::known_hosts::{self, HostKeyStatus, KnownHosts};
use crate::control::{ControlError, SshOptions, StrictHostKeyChecking};
use crate::nodes::NodeSpec;

/// Serialises read-check-append of known_hosts files under accept-new.
static KNOWN_HOSTS_LOCK: StdMutex<()> = StdMutex::new(());

/// The russh event handler: checks the server key.
pub(super) struct Client {
    node: String,
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    policy: StrictHostKeyChecking,
}

#[derive(Debug)]
pub(super) enum HandlerError {
    Ssh(russh::Error),
    Rejected(Box<ControlError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl Client {
    fn verify(&self, key: &russh::keys::PublicKey) -> Result<(), ControlError> {
        if self.policy == StrictHostKeyChecking::No {
            return Ok(());
        }
        let file_err = |e: std::io::Error| ControlError::KnownHostsFile {
            path: self.known_hosts.clone(),
            reason: e.to_string(),
        };
        let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let kh = KnownHosts::load(&self.known_hosts).map_err(file_err)?;
        let entry = known_hosts::host_entry_name(&self.host, self.port);
        let fingerprint = known_hosts::fingerprint(key);
        let problem = |line: usize| HostKeyProblem {
            node: self.node.clone(),
            entry: entry.clone(),
            host: self.host.clone(),
            port: self.port,
            key_type: key.algorithm().to_string(),
            fingerprint: fingerprint.clone(),
            known_hosts: self.known_hosts.clone(),
            line,
        };
        match kh.check(&self.host, self.port, key) {
            HostKeyStatus::Known { .. } => Ok(()),
            HostKeyStatus::Changed { line } => {
                Err(ControlError::ChangedHostKey(Box::new(problem(line))))
            }
            HostKeyStatus::Revoked { line } => Err(ControlError::RevokedHostKey {
                node: self.node.clone(),
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            HostKeyStatus::Unknown { .. } if self.policy == StrictHostKeyChecking::AcceptNew => {
                known_hosts::append(&self.known_hosts, &self.host, self.port, key)
                    .map_err(file_err)?;
                tracing::info!(
                    "{}: added host key {fingerprint} for {entry} to {}",
                    self.node,
                    self.known_hosts.display()
                );
                Ok(())
            }
            HostKeyStatus::Unknown { .. } => {
                Err(ControlError::UnknownHostKey(Box::new(problem(0))))
            }
        }
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(HandlerError::Rejected(Box::new(ControlError::Handshake {
                    node: self.node.clone(),
                    reason: "server presented a host certificate, which is not supported".into(),
                })))
            }
        };
        self.verify(key)
            .map(|()| true)
            .map_err(|e| HandlerError::Rejected(Box::new(e)))
    }
}

pub(super) async fn establish(
    node: &NodeSpec,
    opts: &SshOptions,
    creds: &Credentials,
) -> Result<Handle<Client>, ControlError> {
    let label = node.to_string();
    let recorded = KnownHosts::load(&opts.known_hosts)
        .map(|kh| kh.recorded_algorithms(&node.host, node.port))
        .unwrap_or_default();
    let preferred = Preferred {
        key: Cow::Owned(known_hosts::prefer_recorded(
            &Preferred::DEFAULT.key,
            &recorded,
        )),
        ..Preferred::default()
    };
    let config = Arc::new(client::Config {
        keepalive_interval: opts.keepalive_interval,
        keepalive_max: opts.keepalive_max,
        nodelay: true,
        preferred,
        ..client::Config::default()
    });
    let handler = Client {
        node: label.clone(),
        host: node.host.clone(),
        port: node.port,
        known_hosts: opts.known_hosts.clone(),
        policy: opts.strict_host_key_checking,
    };
    let user = node.user.clone().unwrap_or_else(|| opts.username.clone());
    let work = async {
        let tcp = tokio::net::TcpStream::connect((node.host.as_str(), node.port))
            .await
            .map_err(|e| ControlError::Unreachable {
                node: label.clone(),
                reason: one_line(&e.to_string(), 200),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut handle =
            client::connect_stream(config, tcp, handler)
                .await
                .map_err(|e| match e {
                    HandlerError::Rejected(e) => *e,
                    HandlerError::Ssh(e) => ControlError::Handshake {
                        node: label.clone(),
                        reason: one_line(&e.to_string(), 200),
                    },
                })?;
        login(&mut handle, &label, &user, creds).await?;
        Ok(handle)
    };
    match tokio::time::timeout(opts.connect_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ControlError::ConnectTimeout {
            node: label,
            after: opts.connect_timeout,
        }),
    }
}
