//! `--daemon`: the parent re-executes the binary without `--daemon` in a new session
//! (setsid), stdin from /dev/null and stdout/stderr appended to the `--log` file, and
//! hands it a readiness pipe as fd 3 (`ZOO_READY_FD=3`). The child writes
//! `ready <pid>` once it listens (pid file written), or `error <message>` if it cannot
//! start. The parent exits 0 only on `ready`, otherwise non-zero with the child's
//! error line, so an SSH `zoo --daemon ...` returns when the node is really up.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The environment variable naming the readiness fd in the child.
pub const READY_FD_ENV: &str = "ZOO_READY_FD";
const READY_FD: i32 = 3;

/// Starts the daemon child and waits for its readiness line. Returns the message to
/// print on success (`Ok`) or the error line (`Err`).
pub fn spawn_daemon(
    args: impl Iterator<Item = OsString>,
    log: Option<&Path>,
    ready_timeout: Duration,
) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let child_args: Vec<OsString> = args.skip(1).filter(|a| a != "--daemon").collect();
    let out = match log {
        Some(p) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?,
        None => File::options()
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("cannot open /dev/null: {e}"))?,
    };
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot duplicate log file handle: {e}"))?;
    let (reader, writer) =
        std::io::pipe().map_err(|e| format!("cannot create readiness pipe: {e}"))?;
    let wfd = writer.as_raw_fd();
    let mut cmd = Command::new(&exe);
    cmd.args(&child_args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env(READY_FD_ENV, READY_FD.to_string());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, dup2,
    // fcntl) are made, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if wfd == READY_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(wfd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    drop(writer);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(reader).read_line(&mut line).map(|_| line);
        let _ = tx.send(result);
    });
    let where_log = log.map_or("no --log given".to_string(), |p| {
        format!("see {}", p.display())
    });
    match rx.recv_timeout(ready_timeout) {
        Ok(Ok(line)) if line.starts_with("ready ") => Ok(format!(
            "zoo started, pid {}",
            line.trim_start_matches("ready ").trim()
        )),
        Ok(Ok(line)) if line.starts_with("error ") => {
            let _ = child.wait();
            Err(line.trim_start_matches("error ").trim().to_string())
        }
        Ok(Ok(_)) | Ok(Err(_)) => {
            let status = child
                .wait()
                .map_or("unknown status".to_string(), |s| s.to_string());
            Err(format!(
                "daemon exited ({status}) before listening; {where_log}"
            ))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "daemon did not report ready within {ready_timeout:?}; killed it; {where_log}"
            ))
        }
    }
}

/// The child's end of the readiness pipe.
pub struct ReadySignal(File);

impl ReadySignal {
    /// Takes the readiness fd named by `ZOO_READY_FD`, if any. Must run before any
    /// other thread starts (it clears the variable).
    pub fn from_env() -> Result<Option<ReadySignal>, String> {
        let Some(value) = std::env::var_os(READY_FD_ENV) else {
            return Ok(None);
        };
        std::env::remove_var(READY_FD_ENV);
        let fd: i32 = value
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{READY_FD_ENV}={value:?} is not a file descriptor above 2"))?;
        // SAFETY: fcntl only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!(
                "{READY_FD_ENV}={fd} is not an open file descriptor"
            ));
        }
        // SAFETY: the parent handed us this descriptor for our exclusive use and
        // nothing else in this process refers to it.
        Ok(Some(ReadySignal(unsafe { File::from_raw_fd(fd) })))
    }

    /// Reports readiness and closes the pipe.
    pub fn ready(mut self) {
        let _ = writeln!(self.0, "ready {}", std::process::id());
    }

    /// Reports a startup failure (one line) and closes the pipe.
    pub fn failed(mut self, message: &str) {
        let _ = writeln!(self.0, "error {}", message.replace('\n', " "));
    }
}
