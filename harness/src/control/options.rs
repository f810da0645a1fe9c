//! [`SshOptions`]: how the controller logs in to nodes and how long it waits, and
//! [`StrictHostKeyChecking`], the `--strict-host-key-checking` policy.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// What to do with a server key that known_hosts does not list. A key that differs
/// from the one recorded is refused under every policy but `No`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys (the default).
    #[default]
    Yes,
    /// Trust on first use: append unknown keys to known_hosts; refuse changed ones.
    AcceptNew,
    /// Accept any key, changed ones included, and record nothing.
    No,
}

impl FromStr for StrictHostKeyChecking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yes" => Ok(Self::Yes),
            "accept-new" => Ok(Self::AcceptNew),
            "no" => Ok(Self::No),
            other => Err(format!(
                "--strict-host-key-checking: unknown value {other:?} (use yes, accept-new or no)"
            )),
        }
    }
}

impl fmt::Display for StrictHostKeyChecking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "yes",
            Self::AcceptNew => "accept-new",
            Self::No => "no",
        })
    }
}

/// Login and timing options shared by all nodes of a test. A node's own `user` (from
/// the nodes file) wins over `username`.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Login user when the node does not name one (default `root`).
    pub username: String,
    /// Private key file (OpenSSH or PEM; ed25519, ECDSA or RSA). When `None`, the
    /// default identities `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exist are tried.
    pub private_key: Option<PathBuf>,
    /// Passphrase of an encrypted private key.
    pub key_passphrase: Option<String>,
    /// Password to try after the keys (off when `None`).
    pub password: Option<String>,
    /// Try the keys of the ssh-agent at `$SSH_AUTH_SOCK`, if set (default true).
    pub use_agent: bool,
    /// known_hosts file to check host keys against (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// Bound on TCP connect + handshake + login (default 10 s).
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence (default 5 s); `None` turns them off.
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives before the connection counts as lost (default 3).
    pub keepalive_max: usize,
    /// Channels open at once per session (default 8; OpenSSH's MaxSessions is 10).
    pub max_channels: usize,
    /// Default bound on one command (default 60 s).
    pub command_timeout: Duration,
    /// Bound on one upload or download (default 600 s).
    pub transfer_timeout: Duration,
    /// How long a session keeps re-establishing a lost connection, with backoff,
    /// before a command fails (`None`: three connect timeouts, 30 s by default).
    /// A command's own deadline bounds it too.
    pub reconnect_budget: Option<Duration>,
}

impl SshOptions {
    /// The reconnect budget in effect: [`SshOptions::reconnect_budget`] or three
    /// connect timeouts.
    pub fn reconnect_window(&self) -> Duration {
        self.reconnect_budget
            .unwrap_or(self.connect_timeout.saturating_mul(3))
    }
}

/// The user's home directory, from `$HOME`.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            username: "root".to_string(),
            private_key: None,
            key_passphrase: None,
            password: None,
            use_agent: true,
            known_hosts: home_dir().join(".ssh").join("known_hosts"),
            strict_host_key_checking: StrictHostKeyChecking::Yes,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_max: 3,
            max_channels: 8,
            command_timeout: Duration::from_secs(60),
            transfer_timeout: Duration::from_secs(600),
            reconnect_budget: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_round_trips_and_rejects_junk() {
        for s in ["yes", "accept-new", "no"] {
            assert_eq!(s.parse::<StrictHostKeyChecking>().unwrap().to_string(), s);
        }
        let e = "maybe".parse::<StrictHostKeyChecking>().unwrap_err();
        assert!(e.contains("use yes, accept-new or no"), "{e}");
    }
}
