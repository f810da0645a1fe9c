//! Process faults as shell text over a system's pid file: SIGKILL (and wait until the
//! process is gone), SIGSTOP, SIGCONT, and a status line read back from `/proc`.

use crate::shell::quote;

/// A signal the nemesis sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Stop,
    Cont,
}

/// Sends `sig` to the process in `pid_file`. Kill and stop fail (exit 3, one line on
/// stderr) when there is no such process; cont succeeds then (resuming is part of
/// every heal and must be idempotent). Kill waits up to 5 s for the process to go.
pub fn signal_script(pid_file: &str, sig: Signal) -> String {
    let f = quote(pid_file);
    let missing = format!("no running process: pid file {pid_file} missing or stale");
    match sig {
        Signal::Cont => {
            format!("if [ -f {f} ]; then kill -CONT \"$(cat {f})\" 2>/dev/null || true; fi")
        }
        Signal::Stop | Signal::Kill => {
            let name = if sig == Signal::Kill { "KILL" } else { "STOP" };
            let wait = if sig == Signal::Kill {
                "; for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done"
            } else {
                ""
            };
            format!(
                "p=$(cat {f} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null || {{ echo {} >&2; exit 3; }}; kill -{name} \"$p\"{wait}",
                quote(&missing)
            )
        }
    }
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
    /// Pid file but no process (killed, crashed).
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
            "-" => ProcessState::Dead { pid },
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
        assert!(signal_script("/w/z.pid", Signal::Cont).contains("|| true"));
        assert_eq!(
            ProcessState::parse("none\n").unwrap(),
            ProcessState::NotStarted
        );
        assert_eq!(
            ProcessState::parse("42 - -").unwrap(),
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
}
