//! [`ControlError`]: everything that can go wrong reaching or driving a node, each
//! variant rendered as one line that names the node, what failed, and the fix when
//! there is one.

use std::path::PathBuf;
use std::time::Duration;

use super::ExitStatus;

/// Collapses text from the network or the OS to one printable line of bounded length.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "...";
    }
    out
}

/// A command shortened for error lines.
pub(crate) fn short_cmd(cmd: &str) -> String {
    one_line(cmd, 120)
}

/// A host key known_hosts does not vouch for.
#[derive(Debug, Clone)]
pub struct HostKeyProblem {
    /// `n1 (10.77.77.2:22)`.
    pub node: String,
    /// The known_hosts name: `host` or `[host]:port`.
    pub entry: String,
    pub host: String,
    pub port: u16,
    pub key_type: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    pub known_hosts: PathBuf,
    /// The line holding the other key (changed keys only; 0 otherwise).
    pub line: usize,
}

/// Errors of the control layer. `node` fields hold the node's name and address
/// (`n1 (10.77.77.2:22)`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{node}: cannot connect: {reason}; check that sshd runs there and that the address and port in the nodes file are right")]
    Unreachable { node: String, reason: String },

    #[error("{node}: no SSH connection within {}s (TCP connect, handshake and login); check the address, the firewall and that the node is up", after.as_secs_f64())]
    ConnectTimeout { node: String, after: Duration },

    #[error("{node}: SSH handshake failed: {reason}")]
    Handshake { node: String, reason: String },

    #[error("{node}: login as {user:?} rejected (tried: {tried}); install the matching public key in ~{user}/.ssh/authorized_keys on the node, or pass the right --ssh-private-key / --username")]
    AuthRejected {
        node: String,
        user: String,
        tried: String,
    },

    #[error("no SSH credentials to try: no --ssh-private-key, no default key in ~/.ssh, no usable ssh-agent and no password; pass --ssh-private-key")]
    NoCredentials,

    #[error("SSH private key {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },

    #[error("{}: host key {} {} for {} is not in {}; after checking the fingerprint run `ssh-keyscan -p {} {} >> {}`, or pass --strict-host-key-checking accept-new", .0.node, .0.key_type, .0.fingerprint, .0.entry, .0.known_hosts.display(), .0.port, .0.host, .0.known_hosts.display())]
    UnknownHostKey(Box<HostKeyProblem>),

    #[error("{}: HOST KEY CHANGED: server offers {} {} but {}:{} holds another key for {} (possible man-in-the-middle); if the node was reinstalled, remove the old key with `ssh-keygen -R '{}' -f {}`", .0.node, .0.key_type, .0.fingerprint, .0.known_hosts.display(), .0.line, .0.entry, .0.entry, .0.known_hosts.display())]
    ChangedHostKey(Box<HostKeyProblem>),

    #[error("{node}: host key {fingerprint} is marked @revoked in {}:{line}; refusing to connect", known_hosts.display())]
    RevokedHostKey {
        node: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },

    #[error("known_hosts file {}: {reason}", path.display())]
    KnownHostsFile { path: PathBuf, reason: String },

    #[error("{node}: command timed out after {}s: {command}", after.as_secs_f64())]
    CommandTimeout {
        node: String,
        command: String,
        after: Duration,
    },

    #[error("{node}: command failed ({status}): {command}: {stderr}")]
    CommandFailed {
        node: String,
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    #[error(
        "{node}: refusing command with a NUL byte (a shell would silently cut it there): {command}"
    )]
    NulInCommand { node: String, command: String },

    #[error("{node}: {what} produced more than {limit} bytes of output; redirect large output to a file and download it")]
    OutputTooLarge {
        node: String,
        what: String,
        limit: usize,
    },

    #[error("{node}: SSH channel failed: {reason}")]
    Channel { node: String, reason: String },

    #[error("{node}: connection lost: {reason}")]
    Disconnected { node: String, reason: String },

    #[error("{node}: {what}: {reason}")]
    Transfer {
        node: String,
        what: String,
        reason: String,
    },

    #[error("{node}: cannot run local command: {reason}")]
    Spawn { node: String, reason: String },

    #[error("no node named {name:?} (known: {known})")]
    UnknownNode { name: String, known: String },

    #[error("{} of {total} nodes failed: {}", failures.len(), failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(" | "))]
    Nodes {
        total: usize,
        failures: Vec<ControlError>,
    },
}
