//! `splitbrain fault heal`: undoes every fault of ours on every node, from any
//! controller process. It reads each node's fault markers first (what is in
//! effect, applied when and by which controller), then heals the network and clocks
//! (idempotent, read back), resumes the system's processes everywhere (those a
//! `pause` marker names too, whatever the system), and starts again the processes a
//! `kill` marker says we killed, with the restart command the marker carries (a kill
//! is the one fault that leaves nothing on a node to tell it from a crash). Markers go
//! once their fault is undone.

use super::{exec, FaultCtx};
use crate::control::Remote;
use crate::nodes::NodeSpec;
use crate::systems::zoo::{self, Zoo};
use crate::systems::{NodeHandle, System};
use nemesis::marker::{MarkedFault, Marker};
use nemesis::process::{await_reaped_script, signal_script, status_script, ProcessState, Signal};

/// What a heal did, for the command's output.
pub struct HealReport {
    /// `node: what`, one per marker found and undone.
    pub undone: Vec<String>,
    pub errors: Vec<String>,
}

fn describe(m: &Marker) -> String {
    let what = match &m.fault {
        MarkedFault::Partition { grudge } => format!(
            "partition {}",
            serde_json::to_string(grudge).unwrap_or_default()
        ),
        MarkedFault::Packet { fault, method } => format!("packet {fault} ({method})"),
        MarkedFault::Clock { offset_s } => format!("clock bump {offset_s:+.3}s"),
        MarkedFault::ClockStrobe { a_s, b_s, .. } => {
            format!("clock strobe {a_s:+.3}s/{b_s:+.3}s")
        }
        MarkedFault::Pause { system, .. } => format!("pause of {system}"),
        MarkedFault::Kill { system, .. } => format!("kill of {system}"),
    };
    format!(
        "{what}, applied at {:.3} by pid {} on {}",
        m.since_unix_s, m.controller_pid, m.controller_host
    )
}

/// Heals every node of `ctx`.
pub async fn heal(ctx: &FaultCtx) -> HealReport {
    let mut errors = Vec::new();
    let mut found: Vec<(String, Marker)> = Vec::new();
    for (node, r) in exec::read_markers(&ctx.nodes).await {
        match r {
            Ok((markers, bad)) => {
                found.extend(markers.into_iter().map(|m| (node.clone(), m)));
                errors.extend(bad.into_iter().map(|e| format!("{node}: {e}")));
            }
            Err(e) => errors.push(format!("{node}: reading fault markers: {e}")),
        }
    }
    errors.extend(exec::heal_network_and_clocks(&ctx.nodes).await);
    let all = ctx.specs();
    let system = ctx.system.describe();
    for n in &ctx.nodes {
        let name = &n.spec.name;
        let marks: Vec<&MarkedFault> = found
            .iter()
            .filter(|(node, _)| node == name)
            .map(|(_, m)| &m.fault)
            .collect();
        match heal_processes(ctx, n, &marks, &all, &system).await {
            Ok(done) => {
                errors.extend(exec::unmark(&ctx.nodes, std::slice::from_ref(name), &done).await)
            }
            Err(e) => errors.push(e),
        }
    }
    errors.sort();
    let undone = found
        .iter()
        .map(|(node, m)| format!("{node}: {}", describe(m)))
        .collect();
    HealReport { undone, errors }
}

/// Node `n`'s process heal: resumes the system's process and its descendants (and the
/// process a pause marker names, with its descendants, when a system other than the
/// zoo was paused), and starts again the process a kill marker says was killed, with
/// the restart command the marker carries. Returns the marker kinds undone, or the one
/// failure.
async fn heal_processes(
    ctx: &FaultCtx,
    n: &NodeHandle,
    marks: &[&MarkedFault],
    all: &[NodeSpec],
    system: &str,
) -> Result<Vec<&'static str>, String> {
    let name = &n.spec.name;
    ctx.system
        .resume_node(n)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let ours = ctx.system.pid_file(&n.spec);
    for m in marks {
        if let MarkedFault::Pause {
            pid_file: Some(p), ..
        } = m
        {
            if *p != ours {
                n.remote
                    .exec_ok(&signal_script(p, Signal::Cont), exec::FAULT_COMMAND_TIMEOUT)
                    .await
                    .map_err(|e| format!("{name}: resuming the process of {p}: {e}"))?;
            }
        }
    }
    let mut done = vec!["pause"];
    let killed = marks.iter().find_map(|m| match m {
        MarkedFault::Kill {
            system,
            pid_file,
            restart,
        } => Some((system.as_str(), pid_file.as_deref(), restart.as_deref())),
        _ => None,
    });
    let Some((was, pid_file, restart)) = killed else {
        return Ok(done);
    };
    match (pid_file, restart) {
        // The marker carries the system's own restart command: whatever the system.
        (Some(pid_file), Some(script)) => {
            let state = n
                .remote
                .exec_ok(&status_script(pid_file), exec::FAULT_COMMAND_TIMEOUT)
                .await
                .map_err(|e| format!("{name}: reading the state of {was} ({pid_file}): {e}"))
                .and_then(|o| {
                    ProcessState::parse(&o.stdout_str()).map_err(|e| format!("{name}: {e}"))
                })?;
            // Alive: started again meanwhile (by `fault restart`, say). No pid file:
            // torn down since. Either way nothing is left to undo.
            if let ProcessState::Dead { .. } = state {
                // A zombie not yet reaped still answers `kill -0`, and the restart
                // would take it for a live process: wait (bounded) for the reaper.
                let script = format!("{}; {script}", await_reaped_script(pid_file));
                n.remote
                    .exec_ok(&script, RESTART_TIMEOUT)
                    .await
                    .map_err(|e| {
                        format!(
                            "{name}: starting {was} again with the marker's restart command: {e}"
                        )
                    })?;
            }
        }
        // A marker written before markers carried the command.
        _ => restart_zoo_of_old_marker(ctx, n, was, all, system).await?,
    }
    done.push("kill");
    Ok(done)
}

/// How long a restart from a kill marker may take (PostgreSQL waits up to 60 s for
/// its postmaster to accept connections).
const RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Starts the zoo again, in the mode named, from a kill marker that carries no restart
/// command (written by an older controller). Any other system cannot be started from
/// here: the error says so.
async fn restart_zoo_of_old_marker(
    ctx: &FaultCtx,
    n: &NodeHandle,
    was: &str,
    all: &[NodeSpec],
    system: &str,
) -> Result<(), String> {
    let name = &n.spec.name;
    let zoo = match was.strip_prefix("zoo ") {
        Some(mode) if zoo::MODES.contains(&mode) => Zoo {
            mode: mode.to_string(),
            binary: ctx.system.binary.clone(),
            connect_timeout: ctx.system.connect_timeout,
            faketime: ctx.system.faketime,
        },
        _ => {
            return Err(format!(
                "{name}: {was} was killed here and its marker (written by an older splitbrain) has no restart command: `splitbrain fault` starts only the zoo ({system} here); start {was} again with a new `splitbrain test` or by hand, then `splitbrain fault heal` again"
            ))
        }
    };
    match zoo.process_state(n).await {
        Ok(ProcessState::Dead { .. }) => {
            zoo.restart_node(n, all).await.map_err(|e| format!("{e:#}"))
        }
        // Started again meanwhile (by `fault restart`, say): nothing to undo.
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{LocalExec, Target};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let c = stat.rsplit_once(") ")?.1.chars().next()?;
        (c != 'Z').then_some(c)
    }

    /// `pid` and every descendant of it.
    fn tree(pid: u32) -> Vec<u32> {
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            let out = std::process::Command::new("pgrep")
                .args(["-P", &all[i].to_string()])
                .output()
                .unwrap();
            all.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
            i += 1;
        }
        all
    }

    fn ctx(workdir: &Path) -> (FaultCtx, NodeHandle) {
        let spec = NodeSpec {
            name: "n1".into(),
            host: "127.0.0.1".into(),
            port: 22,
            user: None,
            workdir: workdir.to_str().unwrap().into(),
        };
        let n = NodeHandle {
            spec: spec.clone(),
            remote: Arc::new(Target::Local(LocalExec::new(spec, Duration::from_secs(30)))),
        };
        let zoo = Zoo {
            mode: "async-failover".into(),
            binary: Default::default(),
            connect_timeout: Duration::from_secs(1),
            faketime: false,
        };
        let ctx = FaultCtx {
            nodes: vec![n.clone()],
            system: zoo,
            lab: false,
        };
        (ctx, n)
    }

    /// What a controller killed mid-fault leaves for a system `fault` does not know:
    /// a paused daemon with workers (every one stopped), and a killed one whose marker
    /// carries its restart command. The heal resumes the whole tree and restarts the
    /// killed one from the marker alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn markers_of_another_system_are_healed_from_what_they_carry() {
        let tmp = tempfile::tempdir().unwrap();
        let (ctx, n) = ctx(tmp.path());
        let all = ctx.specs();
        let pid_file = tmp.path().join("db's.pid");
        let pf = pid_file.to_str().unwrap().to_string();
        // A "postmaster" with two workers, each in a session of its own (as
        // PostgreSQL's backends are), started detached like a daemon.
        let start = format!(
            "setsid sh -c 'setsid sleep 60 & setsid sleep 60 & wait' </dev/null >/dev/null 2>&1 & echo $! > {}",
            crate::control::sh_quote(&pf)
        );
        n.remote
            .exec_ok(&start, Duration::from_secs(10))
            .await
            .unwrap();
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let t = std::time::Instant::now();
        while tree(pid).len() < 3 {
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", tree(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let procs = tree(pid);
        n.remote
            .exec_ok(&signal_script(&pf, Signal::Stop), Duration::from_secs(10))
            .await
            .unwrap();
        // A signal takes effect when its target next runs: wait for it.
        let t = std::time::Instant::now();
        while !procs.iter().all(|p| state(*p) == Some('T')) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{procs:?} not all stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pause = MarkedFault::Pause {
            system: "postgres streaming".into(),
            pid_file: Some(pf.clone()),
        };
        let done = heal_processes(&ctx, &n, &[&pause], &all, "zoo async-failover")
            .await
            .unwrap();
        assert_eq!(done, vec!["pause"]);
        let t = std::time::Instant::now();
        while !procs
            .iter()
            .all(|p| matches!(state(*p), Some(c) if c != 'T'))
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{procs:?} not all resumed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Killed (the whole tree), with the restart command in the marker. SIGKILL
        // without waiting: until the node's init reaps it, the daemon is a zombie,
        // which the heal must take for dead (and wait out) rather than for running.
        for p in &procs {
            unsafe { libc::kill(*p as i32, libc::SIGKILL) };
        }
        let kill = MarkedFault::Kill {
            system: "postgres streaming".into(),
            pid_file: Some(pf.clone()),
            restart: Some(format!(
                "if [ -f {p} ] && kill -0 \"$(cat {p})\" 2>/dev/null; then exit 3; fi; {start}",
                p = crate::control::sh_quote(&pf)
            )),
        };
        let done = heal_processes(&ctx, &n, &[&kill], &all, "zoo async-failover")
            .await
            .unwrap();
        assert_eq!(done, vec!["pause", "kill"]);
        let again: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(again, pid, "started again");
        assert!(state(again).is_some(), "the restarted process runs");
        // Running now: a second heal of the same marker starts nothing.
        heal_processes(&ctx, &n, &[&kill], &all, "zoo async-failover")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            again.to_string()
        );

        // A kill marker of an older controller (no restart command): the error says
        // what to do.
        let old = MarkedFault::Kill {
            system: "postgres streaming".into(),
            pid_file: Some(pf.clone()),
            restart: None,
        };
        let e = heal_processes(&ctx, &n, &[&old], &all, "zoo async-failover")
            .await
            .unwrap_err();
        assert!(
            e.starts_with("n1: postgres streaming was killed here and its marker")
                && e.contains("start postgres streaming again"),
            "{e}"
        );
        // Cleanup without waiting for the reaper.
        let procs = tree(again);
        for p in procs {
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
    }
}
