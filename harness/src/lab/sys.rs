//! Low-level host access for the lab: running external commands (every failure becomes a
//! [`LabError`] naming the command and its stderr), file locks, `/proc` process facts,
//! signalling, and TCP probes from the root namespace or from inside a node's namespace.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

/// Joins stderr (or stdout when stderr is empty) into one line.
pub(crate) fn one_line(text: &str) -> String {
    let joined: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if joined.is_empty() {
        "no output".to_string()
    } else {
        joined.join("; ")
    }
}

fn show(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs a command to completion; non-zero exit is an error carrying its stderr.
/// The program is looked up as [`which`] does, so what preflight found is what runs.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let path = which(program).unwrap_or_else(|| PathBuf::from(program));
    let out = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Spawn {
            command: show(program, args),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(LabError::Command {
            command: show(program, args),
            message: format!("{} ({})", one_line(&text), out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip` with the given arguments.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// Finds an executable on `PATH` (plus the sbin directories, which non-login root shells
/// sometimes lack).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn io_err(path: &Path, e: io::Error) -> LabError {
    LabError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// An exclusive `flock` on a file, released on drop.
#[derive(Debug)]
pub struct LabLock {
    _file: File,
    path: PathBuf,
}

impl LabLock {
    /// The lock file this guard holds.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes an exclusive lock on `path`, waiting at most `timeout`.
pub(crate) fn lock(path: &Path, timeout: Duration) -> Result<LabLock, LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    if timeout >= BLOCKING_WAIT {
        return lock_blocking(file, path, timeout);
    }
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: the descriptor is open for as long as `file` lives.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(LabLock {
                _file: file,
                path: path.to_path_buf(),
            });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(path, err));
        }
        if Instant::now() >= deadline {
            return Err(LabError::Busy {
                lock: path.to_path_buf(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits at least this long are spent blocked in `flock(2)` rather than polling: a
/// poller loses every hand-over to a process blocked on the lock (`flock -w` in a
/// script), and can wait forever behind a queue of them.
const BLOCKING_WAIT: Duration = Duration::from_secs(2);

/// The lock taken by a thread blocked in `flock(2)`, waited for at most `timeout`.
/// When the wait ends first the thread is left blocked; if it gets the lock later it
/// finds nobody to hand it to and drops it at once (the file closes, the lock goes).
fn lock_blocking(file: File, path: &Path, timeout: Duration) -> Result<LabLock, LabError> {
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<File>>();
    std::thread::spawn(move || {
        // SAFETY: the descriptor is open for as long as `file` lives (moved here).
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        let r = if rc == 0 {
            Ok(file)
        } else {
            Err(io::Error::last_os_error())
        };
        // A closed receiver (the wait is over) drops the file and with it the lock.
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok(LabLock {
            _file: file,
            path: path.to_path_buf(),
        }),
        Ok(Err(e)) => Err(io_err(path, e)),
        Err(_) => Err(LabError::Busy {
            lock: path.to_path_buf(),
            waited: timeout,
        }),
    }
}

/// True when `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// The short command name of `pid` (`/proc/PID/comm`).
pub(crate) fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The command line of `pid`, arguments separated by spaces.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// (device, inode) identifying a network namespace file.
pub(crate) fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The path of a named network namespace.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// True when process `pid` lives in the named network namespace.
pub(crate) fn in_netns(pid: u32, ns: &str) -> bool {
    match (
        ns_id(&netns_path(ns)),
        ns_id(Path::new(&format!("/proc/{pid}/ns/net"))),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; ESRCH is fine.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Whether a TCP connection to `addr` succeeds within `timeout`, from the root namespace.
pub(crate) fn tcp_open(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Whether a TCP connection to `addr` succeeds within `timeout` when made from inside the
/// named network namespace. Uses a short-lived thread that joins the namespace, so the
/// rest of the process stays where it is.
pub(crate) fn tcp_open_from(
    ns: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<bool, LabError> {
    let path = netns_path(ns);
    let file = File::open(&path).map_err(|e| io_err(&path, e))?;
    let handle = std::thread::spawn(move || -> Result<bool, io::Error> {
        // SAFETY: `file` is an open namespace descriptor; setns only affects this thread,
        // which ends right after the probe.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::connect_timeout(&addr, timeout).is_ok())
    });
    match handle.join() {
        Ok(Ok(open)) => Ok(open),
        Ok(Err(e)) => Err(LabError::Io {
            path,
            message: format!("joining the namespace: {e}"),
        }),
        Err(_) => Err(LabError::Io {
            path,
            message: "the namespace probe thread panicked".into(),
        }),
    }
}

/// Every live process whose network namespace is the named one (the same scan as
/// `ip netns pids`, done in-process so polling stays cheap).
pub(crate) fn pids_in_netns(ns: &str) -> Vec<u32> {
    let Some(want) = ns_id(&netns_path(ns)) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| ns_id(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(want))
        .filter(|pid| alive(*pid))
        .collect()
}

/// Stops every process `scan` reports: SIGTERM at once (and to any that appear later),
/// SIGKILL to those still alive after `grace`, and an error naming the survivors if any
/// remain `grace` later still. `what` names the group in that error.
pub(crate) fn terminate(
    what: &str,
    grace: Duration,
    mut scan: impl FnMut() -> Vec<u32>,
) -> Result<(), LabError> {
    let start = Instant::now();
    let mut termed: Vec<u32> = Vec::new();
    let mut killed = false;
    loop {
        let live: Vec<u32> = scan().into_iter().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            return Ok(());
        }
        let elapsed = start.elapsed();
        if elapsed >= grace * 2 {
            return Err(LabError::Leftover(format!(
                "processes {live:?} in {what} survived SIGKILL for {:?}",
                grace
            )));
        }
        for pid in &live {
            if !termed.contains(pid) {
                signal(*pid, libc::SIGTERM);
                termed.push(*pid);
            }
        }
        if elapsed >= grace || killed {
            for pid in &live {
                signal(*pid, libc::SIGKILL);
            }
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_and_trims() {
        assert_eq!(one_line("  a\n\n b \n"), "a; b");
        assert_eq!(one_line("\n"), "no output");
    }

    #[test]
    fn failing_command_names_command_and_stderr() {
        let err = run("sh", &["-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c echo oops >&2; exit 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
        let err = run("/nonexistent/tool", &[]).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/tool"), "{err}");
        assert_eq!(run("sh", &["-c", "echo hi"]).unwrap(), "hi\n");
    }

    #[test]
    fn process_facts_of_self() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(comm(me).is_some());
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn lock_is_exclusive_within_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = lock(&path, Duration::from_secs(1)).unwrap();
        let err = lock(&path, Duration::from_millis(120))
            .unwrap_err()
            .to_string();
        assert!(err.contains("busy"), "{err}");
        drop(held);
        lock(&path, Duration::from_millis(120)).unwrap();
    }

    #[test]
    fn a_long_wait_blocks_in_flock_and_an_abandoned_one_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = lock(&path, Duration::from_secs(1)).unwrap();
        let t = Instant::now();
        let err = lock(&path, BLOCKING_WAIT).unwrap_err().to_string();
        assert!(err.contains("busy"), "{err}");
        assert!(t.elapsed() >= BLOCKING_WAIT);
        // A waiter blocked in flock gets the lock as soon as it is released.
        let p = path.clone();
        let waiter = std::thread::spawn(move || lock(&p, Duration::from_secs(30)).map(|_| ()));
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        waiter.join().unwrap().unwrap();
        // The abandoned waiter's thread took the lock too and let it go at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&path, Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "the lock stayed held");
        }
    }

    #[test]
    fn terminate_escalates_to_sigkill() {
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        let pid = stubborn.id();
        std::thread::sleep(Duration::from_millis(100));
        // The child stays a zombie until reaped, and `alive` treats zombies as gone.
        terminate("test", Duration::from_millis(200), || vec![pid]).unwrap();
        let status = stubborn.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
