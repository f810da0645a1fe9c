//! [`Session`]: one SSH connection per node, kept open; every command is a channel on
//! it, at most `max_channels` at once. Host keys are checked against known_hosts in
//! the handshake ([`connect`]); a connection that dies (keepalives unanswered, sshd killed, node
//! rebooted) is re-established by the next command, retrying with bounded exponential
//! backoff ([`Backoff::reconnect`]) within the session's reconnect budget and the
//! command's own deadline, every attempt logged. A command cut by the loss is not
//! re-run (it may have happened): it fails with [`ControlError::Disconnected`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::Channel;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::auth::Credentials;
use super::chan::{self, ChanDone, ChanFailure, Sink};
use super::error::{one_line, short_cmd};
use super::transfer::{download_command, temp_sibling, upload_script, with_remote_deadline};
use super::{Backoff, ControlError, ExecOutput, Remote, SshOptions};
use crate::nodes::NodeSpec;

mod connect;
use connect::{establish, Client};

/// The connection in use, and when and why the last reconnect gave up (so commands
/// that queued behind that reconnect fail at once instead of each waiting it out again).
struct Conn {
    handle: Arc<Handle<Client>>,
    gave_up: Option<(Instant, String)>,
}

struct Inner {
    node: NodeSpec,
    label: String,
    opts: SshOptions,
    creds: Arc<Credentials>,
    conn: Mutex<Conn>,
    slots: Arc<Semaphore>,
    /// Connections re-established.
    reconnects: AtomicU64,
    /// Connect attempts made to re-establish them, failed ones included.
    reconnect_attempts: AtomicU64,
}

/// How often a session lost its connection and what it took to get it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconnectStats {
    /// Connections re-established.
    pub reconnects: u64,
    /// Connect attempts made for that, failed ones included.
    pub attempts: u64,
}

/// A kept-open SSH connection to one node. Cheap to share behind an `Arc`; all methods
/// take `&self` and may run concurrently.
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.inner.label)
            .field("free_channels", &self.free_channels())
            .finish()
    }
}

impl Session {
    /// Connects, checks the host key and logs in, all within `opts.connect_timeout`.
    pub async fn connect(node: &NodeSpec, opts: &SshOptions) -> Result<Session, ControlError> {
        let creds = Arc::new(Credentials::load(opts)?);
        Session::connect_with(node, opts, creds).await
    }

    /// Like [`Session::connect`] with credentials loaded once for many nodes.
    pub async fn connect_with(
        node: &NodeSpec,
        opts: &SshOptions,
        creds: Arc<Credentials>,
    ) -> Result<Session, ControlError> {
        let handle = establish(node, opts, &creds).await?;
        Ok(Session {
            inner: Arc::new(Inner {
                label: node.to_string(),
                node: node.clone(),
                opts: opts.clone(),
                creds,
                conn: Mutex::new(Conn {
                    handle: Arc::new(handle),
                    gave_up: None,
                }),
                slots: Arc::new(Semaphore::new(opts.max_channels.max(1))),
                reconnects: AtomicU64::new(0),
                reconnect_attempts: AtomicU64::new(0),
            }),
        })
    }

    /// Ends the connection politely, waiting at most 5 s (a reconnect in progress or
    /// a dead peer must not hold up a teardown). Later commands reconnect.
    pub async fn close(&self) {
        let polite = async {
            let handle = self.inner.conn.lock().await.handle.clone();
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        };
        if tokio::time::timeout(Duration::from_secs(5), polite)
            .await
            .is_err()
        {
            tracing::warn!(
                "{}: closing the connection took over 5s; left",
                self.inner.label
            );
        }
    }

    /// Reconnects so far (for tests, diagnostics and harness.log).
    pub fn reconnect_stats(&self) -> ReconnectStats {
        ReconnectStats {
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
            attempts: self.inner.reconnect_attempts.load(Ordering::Relaxed),
        }
    }

    /// Channels currently free (for tests and diagnostics).
    pub fn free_channels(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// Runs a channel job on a spawned task, so that a caller that gives up (drops the
    /// future) still leaves the channel closed at the deadline.
    async fn job(
        &self,
        cmd: String,
        stdin: Option<std::path::PathBuf>,
        stdout: Sink,
        timeout: Duration,
    ) -> Result<ChanDone, ControlError> {
        let inner = self.inner.clone();
        let deadline = Instant::now() + timeout;
        let task =
            tokio::spawn(async move { inner.run_job(cmd, stdin, stdout, deadline, timeout).await });
        task.await.map_err(|e| ControlError::Channel {
            node: self.inner.label.clone(),
            reason: format!("command task failed: {e}"),
        })?
    }
}

impl Inner {
    /// The open connection, re-established first if it was lost.
    async fn current(&self) -> Result<Arc<Handle<Client>>, ControlError> {
        let asked = Instant::now();
        let mut conn = self.conn.lock().await;
        if !conn.handle.is_closed() {
            return Ok(conn.handle.clone());
        }
        if let Some((at, why)) = &conn.gave_up {
            if *at >= asked {
                return Err(ControlError::Disconnected {
                    node: self.label.clone(),
                    reason: format!("connection lost and not re-established: {why}"),
                });
            }
        }
        // Within a budget's length of a give-up the node is taken as still down: one
        // attempt, no backoff, so each later command (log collection, teardown) costs
        // one connect, not another budget.
        let window = self.opts.reconnect_window();
        let single = conn
            .gave_up
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < window);
        match self.reconnect(single).await {
            Ok(handle) => {
                conn.handle = Arc::new(handle);
                conn.gave_up = None;
                Ok(conn.handle.clone())
            }
            Err(e) => {
                conn.gave_up = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Connects again, retrying what a rebooting or restarting node answers
    /// (refused, reset, timed out, handshake cut) with backoff within the reconnect
    /// budget (`single`: one attempt); a rejected login or host key fails at once.
    async fn reconnect(&self, single: bool) -> Result<Handle<Client>, ControlError> {
        let budget = match single {
            true => Duration::ZERO,
            false => self.opts.reconnect_window(),
        };
        let policy = Backoff::reconnect(budget);
        let started = Instant::now();
        let mut n: u32 = 0;
        match single {
            true => tracing::warn!(
                "{}: connection still lost (reconnecting gave up lately); one attempt",
                self.label
            ),
            false => tracing::warn!(
                "{}: connection lost; reconnecting (budget {:.1}s)",
                self.label,
                policy.budget.as_secs_f64()
            ),
        }
        loop {
            n += 1;
            self.reconnect_attempts.fetch_add(1, Ordering::Relaxed);
            let e = match establish(&self.node, &self.opts, &self.creds).await {
                Ok(handle) => {
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "{}: reconnected at attempt {n} after {:.2}s",
                        self.label,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(handle);
                }
                Err(e) => e,
            };
            if !worth_retrying(&e) {
                tracing::error!(
                    "{}: reconnect attempt {n} refused for good: {e}",
                    self.label
                );
                return Err(e);
            }
            match policy.next_wait_random(n, started.elapsed()) {
                Some(wait) => {
                    tracing::warn!(
                        "{}: reconnect attempt {n} failed: {e}; next in {:.2}s",
                        self.label,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                None => {
                    let after = started.elapsed().as_secs_f64();
                    tracing::error!(
                        "{}: reconnect attempt {n} failed: {e}; giving up after {after:.1}s",
                        self.label
                    );
                    let reason = match single {
                        true => format!("still unreachable after reconnecting gave up: {e}"),
                        false => format!(
                            "gave up reconnecting after {n} attempts in {after:.1}s (last: {e})"
                        ),
                    };
                    return Err(ControlError::Disconnected {
                        node: self.label.clone(),
                        reason,
                    });
                }
            }
        }
    }

    async fn open(&self) -> Result<Channel<Msg>, ControlError> {
        let handle = self.current().await?;
        match handle.channel_open_session().await {
            Ok(c) => Ok(c),
            // The connection died under us; the command was never sent, so one
            // retry on a fresh connection is safe.
            Err(_) if handle.is_closed() => {
                let handle = self.current().await?;
                handle
                    .channel_open_session()
                    .await
                    .map_err(|e| ControlError::Disconnected {
                        node: self.label.clone(),
                        reason: one_line(&e.to_string(), 200),
                    })
            }
            Err(e) => Err(ControlError::Channel {
                node: self.label.clone(),
                reason: format!(
                    "server refused a new channel ({}); lower max_channels below the node's sshd MaxSessions",
                    one_line(&e.to_string(), 200)
                ),
            }),
        }
    }

    async fn run_job(
        &self,
        cmd: String,
        stdin: Option<std::path::PathBuf>,
        stdout: Sink,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ChanDone, ControlError> {
        let timed_out = || ControlError::CommandTimeout {
            node: self.label.clone(),
            command: short_cmd(&cmd),
            after: timeout,
        };
        let setup = async {
            let permit = self.slots.clone().acquire_owned().await;
            let channel = self.open().await?;
            Ok::<_, ControlError>((permit, channel))
        };
        let (_permit, channel) = tokio::time::timeout_at(deadline, setup)
            .await
            .map_err(|_| timed_out())??;
        let wrapped = with_remote_deadline(&cmd, timeout);
        chan::run(channel, &wrapped, stdin, stdout, deadline)
            .await
            .map_err(|f| match f {
                ChanFailure::Timeout => timed_out(),
                ChanFailure::Refused => ControlError::Channel {
                    node: self.label.clone(),
                    reason: format!("server refused to run: {}", short_cmd(&cmd)),
                },
                ChanFailure::TooLarge(what) => ControlError::OutputTooLarge {
                    node: self.label.clone(),
                    what: format!("{what} of {}", short_cmd(&cmd)),
                    limit: super::MAX_OUTPUT,
                },
                ChanFailure::Lost(reason) => ControlError::Disconnected {
                    node: self.label.clone(),
                    reason: format!("{} (running {})", one_line(&reason, 200), short_cmd(&cmd)),
                },
                ChanFailure::LocalIo(reason) => ControlError::Transfer {
                    node: self.label.clone(),
                    what: short_cmd(&cmd),
                    reason: one_line(&reason, 200),
                },
            })
    }
}

/// Whether a failed connect may succeed later: a node that is rebooting or whose sshd
/// restarts refuses, resets or ignores connections for a while. Rejected logins and
/// host keys, and local key or known_hosts problems, do not heal by waiting.
fn worth_retrying(e: &ControlError) -> bool {
    matches!(
        e,
        ControlError::Unreachable { .. }
            | ControlError::ConnectTimeout { .. }
            | ControlError::Handshake { .. }
            | ControlError::Disconnected { .. }
            | ControlError::Channel { .. }
    )
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no stderr)");
    one_line(last, 300)
}

impl Remote for Session {
    fn node(&self) -> &NodeSpec {
        &self.inner.node
    }

    fn command_timeout(&self) -> Duration {
        self.inner.opts.command_timeout
    }

    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ControlError> {
        if cmd.contains('\0') {
            return Err(ControlError::NulInCommand {
                node: self.inner.label.clone(),
                command: short_cmd(cmd),
            });
        }
        let done = self
            .job(cmd.to_string(), None, Sink::Memory(Vec::new()), timeout)
            .await?;
        let stdout = match done.stdout {
            Sink::Memory(v) => v,
            Sink::File(_) => Vec::new(),
        };
        Ok(ExecOutput {
            stdout,
            stderr: done.stderr,
            status: done.status,
        })
    }

    async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<(), ControlError> {
        let what = format!("upload of {} to {remote}", local.display());
        let err = |reason: String| ControlError::Transfer {
            node: self.inner.label.clone(),
            what: what.clone(),
            reason,
        };
        if remote.is_empty() || remote.contains('\0') {
            return Err(err("empty remote path or NUL in it".into()));
        }
        let meta = tokio::fs::metadata(local)
            .await
            .map_err(|e| err(format!("cannot read local file: {e}")))?;
        if !meta.is_file() {
            return Err(err("local path is not a regular file".into()));
        }
        let script = upload_script(remote, meta.len(), mode);
        let done = self
            .job(
                script,
                Some(local.to_path_buf()),
                Sink::Memory(Vec::new()),
                self.inner.opts.transfer_timeout,
            )
            .await?;
        if done.status != super::ExitStatus::Code(0) {
            return Err(err(format!("{}: {}", done.status, last_line(&done.stderr))));
        }
        Ok(())
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ControlError> {
        let what = format!("download of {remote} to {}", local.display());
        let err = |reason: String| ControlError::Transfer {
            node: self.inner.label.clone(),
            what: what.clone(),
            reason,
        };
        if remote.contains('\0') {
            return Err(err("NUL in remote path".into()));
        }
        if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let tmp = temp_sibling(local);
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| err(format!("cannot create {}: {e}", tmp.display())))?;
        let result = self
            .job(
                download_command(remote),
                None,
                Sink::File(file),
                self.inner.opts.transfer_timeout,
            )
            .await;
        let finish = async {
            let done = result?;
            if done.status != super::ExitStatus::Code(0) {
                return Err(err(format!("{}: {}", done.status, last_line(&done.stderr))));
            }
            if let Sink::File(mut f) = done.stdout {
                use tokio::io::AsyncWriteExt;
                f.flush().await.map_err(|e| err(e.to_string()))?;
                f.sync_all().await.map_err(|e| err(e.to_string()))?;
            }
            tokio::fs::rename(&tmp, local)
                .await
                .map_err(|e| err(format!("cannot rename into place: {e}")))
        };
        let r = finish.await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }
}
