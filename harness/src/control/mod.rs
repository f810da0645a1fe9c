//! Control of nodes: SSH sessions kept open per node ([`Session`]), local execution on
//! the controller ([`LocalExec`]), the whole cluster at once ([`Cluster`]), shell
//! quoting ([`quote`]), known_hosts handling ([`known_hosts`]) and the reconnect
//! backoff ([`backoff`]).
//!
//! Everything a test does to a node goes through the [`Remote`] trait: run a command
//! with a deadline, upload a file, download a file.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::nodes::NodeSpec;

mod auth;
pub mod backoff;
mod chan;
mod cluster;
mod error;
pub mod known_hosts;
mod local;
mod options;
pub mod quote;
mod ssh;
mod transfer;

pub use auth::Credentials;
pub use backoff::Backoff;
pub use cluster::{Cluster, PerNode};
pub use error::{ControlError, HostKeyProblem};
pub use local::LocalExec;
pub use options::{home_dir, SshOptions, StrictHostKeyChecking};
pub use quote::{sh_quote, Cmd};
pub use ssh::{ReconnectStats, Session};
pub use transfer::{upload_unless_identical, Upload};

/// Most bytes kept of one command's stdout or stderr; more is an error, not a silent cut.
pub const MAX_OUTPUT: usize = 64 << 20;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(u32),
    /// Killed by this signal (name without `SIG`, e.g. `KILL`).
    Signal(String),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl ExecOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `Ok(self)` on exit 0, else [`ControlError::CommandFailed`] naming node, command,
    /// status and the last line of stderr.
    pub fn check(self, node: &NodeSpec, command: &str) -> Result<ExecOutput, ControlError> {
        if self.success() {
            return Ok(self);
        }
        let stderr = self.stderr_str();
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no stderr)");
        Err(ControlError::CommandFailed {
            node: node.to_string(),
            command: error::short_cmd(command),
            status: self.status,
            stderr: error::one_line(last, 300),
        })
    }
}

/// A place commands run: a node over SSH, or this machine.
///
/// `cmd` is shell text for `sh -c`; every piece of data in it must have gone through
/// [`sh_quote`] or [`Cmd`].
pub trait Remote: Send + Sync {
    /// The node this talks to.
    fn node(&self) -> &NodeSpec;

    /// Default deadline for [`Remote::exec`] callers that have no better one.
    fn command_timeout(&self) -> Duration;

    /// Runs `cmd` and waits for it, at most `timeout` (including waiting for a free
    /// channel). A non-zero exit is not an error here; see [`ExecOutput::check`].
    fn exec(
        &self,
        cmd: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, ControlError>> + Send;

    /// Runs `cmd` and fails unless it exits 0.
    fn exec_ok(
        &self,
        cmd: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, ControlError>> + Send {
        async move { self.exec(cmd, timeout).await?.check(self.node(), cmd) }
    }

    /// Copies the local file to `remote_path` with permission bits `mode`, replacing
    /// any existing file atomically (rename), so a running binary can be replaced.
    /// The parent directory is created when missing.
    fn upload(
        &self,
        local_path: &Path,
        remote_path: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// Copies `remote_path` to the local file, written atomically (temp + rename).
    fn download(
        &self,
        remote_path: &str,
        local_path: &Path,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;
}

/// Either kind of [`Remote`], for code that holds both.
pub enum Target {
    Ssh(std::sync::Arc<Session>),
    Local(LocalExec),
}

impl Remote for Target {
    fn node(&self) -> &NodeSpec {
        match self {
            Target::Ssh(s) => s.node(),
            Target::Local(l) => l.node(),
        }
    }

    fn command_timeout(&self) -> Duration {
        match self {
            Target::Ssh(s) => s.command_timeout(),
            Target::Local(l) => l.command_timeout(),
        }
    }

    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ControlError> {
        match self {
            Target::Ssh(s) => s.exec(cmd, timeout).await,
            Target::Local(l) => l.exec(cmd, timeout).await,
        }
    }

    async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<(), ControlError> {
        match self {
            Target::Ssh(s) => s.upload(local, remote, mode).await,
            Target::Local(l) => l.upload(local, remote, mode).await,
        }
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ControlError> {
        match self {
            Target::Ssh(s) => s.download(remote, local).await,
            Target::Local(l) => l.download(remote, local).await,
        }
    }
}
