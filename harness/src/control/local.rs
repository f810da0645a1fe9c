//! [`LocalExec`]: the [`Remote`] interface on the controller itself (`sh -c` here),
//! for lab setup and for commands that must run where the harness runs.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::error::{one_line, short_cmd};
use super::transfer::temp_sibling;
use super::{ControlError, ExecOutput, ExitStatus, Remote, MAX_OUTPUT};
use crate::nodes::{NodeSpec, DEFAULT_WORKDIR};

/// Runs commands on this machine. Each command gets its own process group, which is
/// killed as a whole on timeout.
#[derive(Debug, Clone)]
pub struct LocalExec {
    node: NodeSpec,
    command_timeout: Duration,
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        other => return format!("SIG{other}"),
    };
    name.to_string()
}

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(r) = r {
        r.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut out).await?;
    }
    Ok(out)
}

impl LocalExec {
    /// Local execution presented as `node` (its name is used in errors and results).
    pub fn new(node: NodeSpec, command_timeout: Duration) -> LocalExec {
        LocalExec {
            node,
            command_timeout,
        }
    }

    /// The controller itself, named `local`.
    pub fn controller() -> LocalExec {
        LocalExec::new(
            NodeSpec {
                name: "local".into(),
                host: "localhost".into(),
                port: 0,
                user: None,
                workdir: DEFAULT_WORKDIR.into(),
            },
            Duration::from_secs(60),
        )
    }

    fn label(&self) -> String {
        self.node.to_string()
    }

    async fn copy_atomic(
        &self,
        from: &Path,
        to: &Path,
        mode: Option<u32>,
        what: String,
    ) -> Result<(), ControlError> {
        let err = |reason: String| ControlError::Transfer {
            node: self.label(),
            what: what.clone(),
            reason,
        };
        let meta = tokio::fs::metadata(from)
            .await
            .map_err(|e| err(format!("cannot read {}: {e}", from.display())))?;
        if !meta.is_file() {
            return Err(err(format!("{} is not a regular file", from.display())));
        }
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let tmp = temp_sibling(to);
        let work = async {
            tokio::fs::copy(from, &tmp)
                .await
                .map_err(|e| err(format!("copy failed: {e}")))?;
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
                    .await
                    .map_err(|e| err(format!("chmod failed: {e}")))?;
            }
            tokio::fs::rename(&tmp, to)
                .await
                .map_err(|e| err(format!("cannot rename into place: {e}")))
        };
        let r = work.await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }
}

impl Remote for LocalExec {
    fn node(&self) -> &NodeSpec {
        &self.node
    }

    fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ControlError> {
        if cmd.contains('\0') {
            return Err(ControlError::NulInCommand {
                node: self.label(),
                command: short_cmd(cmd),
            });
        }
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ControlError::Spawn {
                node: self.label(),
                reason: format!("sh: {e}"),
            })?;
        let pid = child.id();
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let work = async {
            let (o, e, s) = tokio::join!(read_bounded(out), read_bounded(err), child.wait());
            (o, e, s)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: plain syscall; the group leader is our unreaped child, so
                    // the group id cannot have been reused.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
                let _ = child.wait().await;
                return Err(ControlError::CommandTimeout {
                    node: self.label(),
                    command: short_cmd(cmd),
                    after: timeout,
                });
            }
        };
        let io = |e: std::io::Error| ControlError::Spawn {
            node: self.label(),
            reason: one_line(&e.to_string(), 200),
        };
        let (stdout, stderr, status) = (
            stdout.map_err(io)?,
            stderr.map_err(io)?,
            status.map_err(io)?,
        );
        for (what, buf) in [("stdout", &stdout), ("stderr", &stderr)] {
            if buf.len() > MAX_OUTPUT {
                return Err(ControlError::OutputTooLarge {
                    node: self.label(),
                    what: format!("{what} of {}", short_cmd(cmd)),
                    limit: MAX_OUTPUT,
                });
            }
        }
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c as u32),
            (None, Some(s)) => ExitStatus::Signal(signal_name(s)),
            (None, None) => ExitStatus::Signal("unknown".into()),
        };
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
        })
    }

    async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<(), ControlError> {
        let what = format!("copy of {} to {remote}", local.display());
        self.copy_atomic(local, Path::new(remote), Some(mode), what)
            .await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ControlError> {
        let what = format!("copy of {remote} to {}", local.display());
        self.copy_atomic(Path::new(remote), local, None, what).await
    }
}
