//! Process faults with their markers: kill (SIGKILL) and pause (SIGSTOP) of the
//! system's process and its descendants on chosen nodes — every target's marker
//! written before any target is faulted — and their undo (restart, resume), which
//! removes the marker once it is done. The one path for `splitbrain fault kill|pause|resume|restart`,
//! the runner's scheduled and targeted nemeses and the runner's final heal, so a
//! controller that dies with a process fault in effect leaves the marker that
//! `splitbrain fault heal`, run from a new process, undoes.

use super::exec;
use crate::control::Remote;
use crate::nodes::NodeSpec;
use crate::systems::{NodeHandle, System};
use nemesis::marker::MarkedFault;
use nemesis::process::{await_reaped_script, ProcessState};

/// Bound on waiting for a dead process's zombie to be reaped (the script waits 10 s).
const REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A process fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessFault {
    Kill,
    Pause,
}

/// How a process fault is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessUndo {
    /// SIGCONT: ends a pause.
    Resume,
    /// Start the system again (data kept): ends a kill, and a pause too.
    Restart,
}

impl ProcessUndo {
    /// The undo of `fault`.
    pub fn of(fault: ProcessFault) -> ProcessUndo {
        match fault {
            ProcessFault::Kill => ProcessUndo::Restart,
            ProcessFault::Pause => ProcessUndo::Resume,
        }
    }

    /// The marker kinds this undo ends.
    fn ends(self) -> &'static [&'static str] {
        match self {
            ProcessUndo::Resume => &["pause"],
            ProcessUndo::Restart => &["kill", "pause"],
        }
    }
}

/// The marker of `fault` by `system` on `node` (one of `all`): the system and its pid
/// file, and for a kill the system's restart command there.
pub fn marker<S: System>(
    system: &S,
    node: &NodeHandle,
    all: &[NodeSpec],
    fault: ProcessFault,
) -> MarkedFault {
    let (name, pid_file) = (system.describe(), Some(system.pid_file(&node.spec)));
    match fault {
        ProcessFault::Kill => MarkedFault::Kill {
            system: name,
            pid_file,
            restart: system.restart_script(&node.spec, all),
        },
        ProcessFault::Pause => MarkedFault::Pause {
            system: name,
            pid_file,
        },
    }
}

/// Applies `fault` to the system's process on each of `targets`. The markers go
/// first, on every target at once; when one cannot be written no process is touched.
/// Then one target after another. Returns the failures as `node: reason` lines.
pub async fn apply<S: System>(
    system: &S,
    nodes: &[NodeHandle],
    targets: &[String],
    fault: ProcessFault,
) -> Vec<String> {
    let chosen = exec::pick(nodes, targets);
    let all: Vec<NodeSpec> = nodes.iter().map(|n| n.spec.clone()).collect();
    let marked = exec::on_all(&chosen, |n| {
        Ok(exec::marked(n, &marker(system, n, &all, fault), ":"))
    })
    .await;
    if !marked.is_empty() {
        let (noun, done) = match fault {
            ProcessFault::Kill => ("kill", "killed"),
            ProcessFault::Pause => ("pause", "paused"),
        };
        return marked
            .into_iter()
            .map(|e| format!("marking the {noun} fault (nothing {done}): {e}"))
            .collect();
    }
    let mut errors = Vec::new();
    for n in chosen {
        let r = match fault {
            ProcessFault::Kill => system.kill_node(&n).await,
            ProcessFault::Pause => system.pause_node(&n).await,
        };
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    errors
}

/// Undoes a process fault on each of `targets`, one after another; each node's
/// markers of the faults undone go once it is done. Returns the failures.
pub async fn undo<S: System>(
    system: &S,
    nodes: &[NodeHandle],
    targets: &[String],
    how: ProcessUndo,
) -> Vec<String> {
    let all: Vec<_> = nodes.iter().map(|n| n.spec.clone()).collect();
    let mut errors = Vec::new();
    for n in exec::pick(nodes, targets) {
        let r = match how {
            ProcessUndo::Resume => system.resume_node(&n).await,
            ProcessUndo::Restart => system.restart_node(&n, &all).await,
        };
        match r {
            Ok(()) => errors
                .extend(exec::unmark(nodes, std::slice::from_ref(&n.spec.name), how.ends()).await),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    errors
}

/// The runner's heal of every process fault, on all nodes at once: resumes the
/// system's process everywhere, starts it again where it is dead, and removes each
/// node's pause and kill markers once that node is healed. Returns the failures.
pub async fn heal_all<S: System>(system: &std::sync::Arc<S>, nodes: &[NodeHandle]) -> Vec<String> {
    let all: Vec<_> = nodes.iter().map(|n| n.spec.clone()).collect();
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let (system, n, all) = (system.clone(), n.clone(), all.clone());
        set.spawn(async move {
            if let Err(e) = system.resume_node(&n).await {
                return vec![format!("{e:#}")];
            }
            if let Ok(ProcessState::Dead { pid }) = system.process_state(&n).await {
                // Dead but maybe not reaped yet (a reboot's kill, a crash): the
                // restart's own "still running?" check must not see the zombie.
                let wait = await_reaped_script(&system.pid_file(&n.spec));
                if let Err(e) = n.remote.exec_ok(&wait, REAP_WAIT).await {
                    return vec![format!("{}: {e}", n.spec.name)];
                }
                if let Err(e) = system.restart_node(&n, &all).await {
                    return vec![format!("{e:#}")];
                }
                // Killed by a fault, a crash or the node's reboot: say it was started.
                tracing::info!(
                    "{}: {} was not running (pid {pid} gone); started it again",
                    n.spec.name,
                    system.describe()
                );
            }
            exec::unmark(
                std::slice::from_ref(&n),
                std::slice::from_ref(&n.spec.name),
                ProcessUndo::Restart.ends(),
            )
            .await
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(e) => errors.extend(e),
            Err(e) => errors.push(format!("process heal task failed: {e}")),
        }
    }
    errors.sort();
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{LocalExec, Remote, Target};
    use crate::nodes::NodeSpec;
    use crate::runner::generator::{NoopClient, NoopSystem};
    use crate::systems::RoleView;
    use nemesis::marker::{self, Marker};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// A "system" that is one `sleep` process per node, started on this machine.
    struct Sleeper;

    impl System for Sleeper {
        type Client = NoopClient;
        fn describe(&self) -> String {
            "sleeper".into()
        }
        async fn setup_node(&self, n: &NodeHandle, all: &[NodeSpec]) -> anyhow::Result<()> {
            self.restart_node(n, all).await
        }
        async fn await_ready(&self, _: &[NodeSpec], _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        async fn teardown_node(&self, n: &NodeHandle) -> anyhow::Result<()> {
            let p = crate::control::sh_quote(&self.pid_file(&n.spec));
            let cmd = format!("kill -CONT \"$(cat {p})\"; kill -TERM \"$(cat {p})\"");
            n.remote.exec_ok(&cmd, Duration::from_secs(5)).await?;
            Ok(())
        }
        async fn roles(&self, _: &[NodeSpec], _: Duration) -> Vec<RoleView> {
            Vec::new()
        }
        fn log_paths(&self, _: &NodeSpec) -> Vec<String> {
            Vec::new()
        }
        fn client(&self, node: &NodeSpec) -> NoopClient {
            NoopSystem.client(node)
        }
        fn pid_file(&self, node: &NodeSpec) -> String {
            format!("{}/sleeper.pid", node.workdir)
        }
        async fn restart_node(&self, n: &NodeHandle, _: &[NodeSpec]) -> anyhow::Result<()> {
            let cmd = format!(
                "sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {}",
                crate::control::sh_quote(&self.pid_file(&n.spec))
            );
            n.remote.exec_ok(&cmd, Duration::from_secs(5)).await?;
            Ok(())
        }
    }

    fn node(name: &str, workdir: &Path) -> NodeHandle {
        let spec = NodeSpec {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 22,
            user: None,
            workdir: workdir.to_str().unwrap().into(),
        };
        NodeHandle {
            spec: spec.clone(),
            remote: Arc::new(Target::Local(LocalExec::new(spec, Duration::from_secs(10)))),
        }
    }

    async fn state(system: &Sleeper, n: &NodeHandle) -> ProcessState {
        system.process_state(n).await.unwrap()
    }

    fn markers(workdir: &Path) -> Vec<Marker> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(marker::read_script(workdir.to_str().unwrap()))
            .output()
            .unwrap();
        let (m, bad) = marker::parse(&String::from_utf8_lossy(&out.stdout));
        assert!(bad.is_empty(), "{bad:?}");
        m
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_is_marked_before_it_is_applied_and_unmarked_by_its_resume_or_heal() {
        let tmp = tempfile::tempdir().unwrap();
        let (w1, w2) = (tmp.path().join("n 1"), tmp.path().join("n'2"));
        std::fs::create_dir_all(&w1).unwrap();
        std::fs::create_dir_all(&w2).unwrap();
        let nodes = vec![node("n1", &w1), node("n2", &w2)];
        let system = Arc::new(Sleeper);
        for n in &nodes {
            system.setup_node(n, &[]).await.unwrap();
        }
        let n1 = vec!["n1".to_string()];

        let errors = apply(system.as_ref(), &nodes, &n1, ProcessFault::Pause).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            matches!(
                state(&system, &nodes[0]).await,
                ProcessState::Alive { stopped: true, .. }
            ),
            "n1 paused"
        );
        assert!(
            matches!(
                state(&system, &nodes[1]).await,
                ProcessState::Alive { stopped: false, .. }
            ),
            "n2 untouched"
        );
        let m = markers(&w1);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            m[0].fault,
            MarkedFault::Pause {
                system: "sleeper".into(),
                pid_file: Some(system.pid_file(&nodes[0].spec)),
            }
        );
        assert_eq!(m[0].controller_pid, std::process::id());
        assert!(markers(&w2).is_empty(), "no marker on n2");

        let errors = undo(system.as_ref(), &nodes, &n1, ProcessUndo::Resume).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(
            state(&system, &nodes[0]).await,
            ProcessState::Alive { stopped: false, .. }
        ));
        assert!(markers(&w1).is_empty(), "the resume removes the marker");
        assert!(!w1.join("faults").exists());

        // Paused again, then healed the way the runner heals on every exit path.
        let both = vec!["n1".to_string(), "n2".to_string()];
        let errors = apply(system.as_ref(), &nodes, &both, ProcessFault::Pause).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(markers(&w2).len(), 1);
        let errors = heal_all(&system, &nodes).await;
        assert!(errors.is_empty(), "{errors:?}");
        for (n, w) in nodes.iter().zip([&w1, &w2]) {
            assert!(matches!(
                state(&system, n).await,
                ProcessState::Alive { stopped: false, .. }
            ));
            assert!(
                markers(w).is_empty(),
                "heal removes {}'s marker",
                n.spec.name
            );
        }

        // A marker that cannot be written: no process is touched.
        let blocked = tmp.path().join("file");
        std::fs::write(&blocked, "").unwrap();
        let mut bad = nodes.clone();
        bad[1].spec.workdir = blocked.join("w").to_str().unwrap().into();
        let errors = apply(system.as_ref(), &bad, &both, ProcessFault::Pause).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("marking the pause fault (nothing paused): n2 ")
                && errors[0].ends_with(&format!(
                    "cannot write the fault marker under {}/faults",
                    bad[1].spec.workdir
                )),
            "{errors:?}"
        );
        assert!(matches!(
            state(&system, &nodes[0]).await,
            ProcessState::Alive { stopped: false, .. }
        ));
        // n1's marker was written (markers go first, all at once); the heal removes it.
        assert!(heal_all(&system, &nodes).await.is_empty());
        assert!(markers(&w1).is_empty());
        for n in &nodes {
            system.teardown_node(n).await.unwrap();
        }
    }
}
