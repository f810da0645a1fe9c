//! Process faults as shell text over a system's pid file: SIGKILL (and wait until the
//! process is gone), SIGSTOP, SIGCONT — each to the pid file's process and every
//! descendant of it (a PostgreSQL postmaster's backends, a Redis server's save or
//! sync fork) — and a status line read back from `/proc`.

use crate::shell::quote;

/// A signal the nemesis sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Stop,
    Cont,
}

/// Shell that defines `tree PID`: prints every descendant of PID (children first, then
/// theirs), one a line. Children are found by parent pid, not by process group: a
/// daemon's children may lead groups or sessions of their own (PostgreSQL's do).
const TREE: &str =
    "tree() { for c in $(pgrep -P \"$1\" 2>/dev/null); do echo \"$c\"; tree \"$c\"; done; }";

/// Sends `sig` to the process in `pid_file` and to all its descendants. Kill and stop
/// fail (exit 3, one line on stderr) when there is no such process; cont succeeds then
/// (resuming is part of every heal and must be idempotent). Kill waits up to 5 s for
/// the process to be gone and reaped, so that a restart right after (whose "still
/// running?" check is `kill -0`) finds it gone.
///
/// The order keeps the set exact: stop signals the process first (a stopped process
/// forks no new child), then its descendants; kill lists the descendants before the
/// process dies (after, they are re-parented and no longer found); cont resumes the
/// descendants first, so the process never runs beside a stopped child of the fault.
pub fn signal_script(pid_file: &str, sig: Signal) -> String {
    let f = quote(pid_file);
    let missing = format!("no running process: pid file {pid_file} missing or stale");
    match sig {
        Signal::Cont => format!(
            "{TREE}; if [ -f {f} ]; then p=$(cat {f}); if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null; then \
             c=$(tree \"$p\"); [ -z \"$c\" ] || kill -CONT $c 2>/dev/null; kill -CONT \"$p\" 2>/dev/null; fi; fi; true"
        ),
        Signal::Stop => format!(
            "{TREE}; p=$(cat {f} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null || {{ echo {} >&2; exit 3; }}; \
             kill -STOP \"$p\" && {{ c=$(tree \"$p\"); [ -z \"$c\" ] || kill -STOP $c 2>/dev/null || true; }}",
            quote(&missing)
        ),
        Signal::Kill => format!(
            "{TREE}; p=$(cat {f} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null || {{ echo {} >&2; exit 3; }}; \
             c=$(tree \"$p\"); kill -KILL \"$p\" && {{ [ -z \"$c\" ] || kill -KILL $c 2>/dev/null || true; }}; \
             for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done",
            quote(&missing)
        ),
    }
}

/// Waits (up to 10 s) until the process in `pid_file` no longer answers `kill -0`: a
/// dead process whose zombie its reaper has not collected yet still does, and a
/// restart's "is it still running?" check would take it for alive. Always exits 0.
pub fn await_reaped_script(pid_file: &str) -> String {
    format!(
        "p=$(cat {} 2>/dev/null); [ -z \"$p\" ] || for i in $(seq 100); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; true",
        quote(pid_file)
    )
}

/// Prints `PID STATE FAKETIME_FILE` for the process in `pid_file` (STATE is the
/// `/proc/PID/stat` letter, `-` when gone; FAKETIME_FILE `-` when not under
/// libfaketime), or `none` without a pid file.
pub fn status_script(pid_file: &str) -> String {
    let f = quote(pid_file);
    format!(
        "if [ -f {f} ]; then p=$(cat {f}); if [ -r /proc/$p/stat ]; then \
         s=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f1); \
         t=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | sed -n 's/^FAKETIME_TIMESTAMP_FILE=//p'); \
         echo \"$p $s ${{t:--}}\"; else echo \"$p - -\"; fi; else echo none; fi"
    )
}

/// What [`status_script`] reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// No pid file: the system is not started on this node.
    NotStarted,
    /// Pid file but no process (killed, crashed), or only its zombie.
    Dead { pid: u32 },
    /// Alive; `stopped` when SIGSTOPped (state `T`).
    Alive {
        pid: u32,
        stopped: bool,
        faketime_file: Option<String>,
    },
}

impl ProcessState {
    pub fn parse(line: &str) -> Result<ProcessState, String> {
        let line = line.trim();
        if line == "none" {
            return Ok(ProcessState::NotStarted);
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let [pid, state, ft] = w[..] else {
            return Err(format!("unexpected process status {line:?}"));
        };
        let pid: u32 = pid
            .parse()
            .map_err(|_| format!("unexpected pid in process status {line:?}"))?;
        Ok(match state {
            // A zombie is dead: it only waits for its reaper (a daemon's is the node's
            // init, which may reap only now and then).
            "-" | "Z" | "X" => ProcessState::Dead { pid },
            s => ProcessState::Alive {
                pid,
                stopped: s == "T" || s == "t",
                faketime_file: (ft != "-").then(|| ft.to_string()),
            },
        })
    }
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessState::NotStarted => f.write_str("not started"),
            ProcessState::Dead { pid } => write!(f, "dead (pid {pid})"),
            ProcessState::Alive { pid, stopped, .. } => {
                write!(
                    f,
                    "{} (pid {pid})",
                    if *stopped { "paused" } else { "running" }
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_status_parsing() {
        let k = signal_script("/w/zoo.pid", Signal::Kill);
        assert!(k.contains("kill -KILL \"$p\"") && k.contains("cat /w/zoo.pid"));
        assert!(signal_script("/w/a b.pid", Signal::Stop).contains("'/w/a b.pid'"));
        assert!(signal_script("/w/z.pid", Signal::Cont).contains("kill -CONT \"$p\""));
        assert_eq!(
            ProcessState::parse("none\n").unwrap(),
            ProcessState::NotStarted
        );
        assert_eq!(
            ProcessState::parse("42 - -").unwrap(),
            ProcessState::Dead { pid: 42 }
        );
        assert_eq!(
            ProcessState::parse("42 Z -").unwrap(),
            ProcessState::Dead { pid: 42 }
        );
        assert_eq!(
            ProcessState::parse("42 T /w/faketime.rc").unwrap(),
            ProcessState::Alive {
                pid: 42,
                stopped: true,
                faketime_file: Some("/w/faketime.rc".into())
            }
        );
        assert_eq!(
            ProcessState::parse("7 S -").unwrap().to_string(),
            "running (pid 7)"
        );
        assert!(ProcessState::parse("x S -").is_err());
        assert!(ProcessState::parse("").is_err());
    }

    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    /// `/proc/PID/stat`'s state letter, `None` once the process is gone or a zombie.
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let c = stat.rsplit_once(") ")?.1.chars().next()?;
        (c != 'Z').then_some(c)
    }

    fn children(pid: u32) -> Vec<u32> {
        let out = sh(&format!("pgrep -P {pid}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// A process with two children and a grandchild (each `sleep`), all in the same
    /// process group as this test, so the tree is found by parent pid alone.
    #[test]
    fn signals_reach_the_process_and_every_descendant() {
        let dir = std::env::temp_dir().join(format!("nemesis-tree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("d's.pid");
        let pf = pid_file.to_str().unwrap();
        let root = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 60 & sh -c 'sleep 60 & wait' & wait")
            .spawn()
            .unwrap();
        let pid = root.id();
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        let all = || {
            let mut v = vec![pid];
            let mut i = 0;
            while i < v.len() {
                let more = children(v[i]);
                v.extend(more);
                i += 1;
            }
            v
        };
        let t = std::time::Instant::now();
        while all().len() < 4 {
            assert!(t.elapsed().as_secs() < 10, "tree never formed: {:?}", all());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let tree = all();
        // Reaped as soon as it dies, so the kill's wait sees it gone, not a zombie.
        let reaper = std::thread::spawn(move || {
            let mut root = root;
            root.wait()
        });
        // A signal takes effect when its target next runs: wait (bounded) for it.
        let settle = |want_stopped: bool| {
            let t = std::time::Instant::now();
            while !tree
                .iter()
                .all(|p| (state(*p) == Some('T')) == want_stopped)
            {
                assert!(
                    t.elapsed().as_secs() < 10,
                    "{tree:?} not all {}",
                    if want_stopped { "stopped" } else { "resumed" }
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        assert!(sh(&signal_script(pf, Signal::Stop)).status.success());
        settle(true);
        assert!(sh(&signal_script(pf, Signal::Cont)).status.success());
        settle(false);
        let out = sh(&signal_script(pf, Signal::Kill));
        assert!(out.status.success(), "{out:?}");
        let _ = reaper.join();
        let t = std::time::Instant::now();
        while tree.iter().any(|p| state(*p).is_some()) {
            assert!(t.elapsed().as_secs() < 10, "a descendant outlived the kill");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Gone: stop and kill say so, cont is a no-op.
        let out = sh(&signal_script(pf, Signal::Stop));
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("missing or stale"));
        assert!(sh(&signal_script(pf, Signal::Cont)).status.success());
        std::fs::remove_file(&pid_file).unwrap();
        assert!(sh(&signal_script(pf, Signal::Cont)).status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
