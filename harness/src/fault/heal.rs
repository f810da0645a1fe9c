//! `splitbrain fault heal`: undoes every fault of ours on every node, from any
//! controller process. It reads each node's fault markers first (what is in
//! effect, applied when and by which controller), then heals the network and clocks
//! (idempotent, read back), resumes the system's process everywhere, and starts
//! again the processes a `kill` marker says we killed — the one fault that leaves
//! nothing on a node to tell it from a crash. Markers go once their fault is undone.

use super::{exec, FaultCtx};
use crate::control::Remote;
use crate::nodes::NodeSpec;
use crate::systems::zoo::{self, Zoo};
use crate::systems::{NodeHandle, System};
use nemesis::marker::{MarkedFault, Marker};
use nemesis::process::{signal_script, ProcessState, Signal};

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

/// Node `n`'s process heal: resumes the system's process (and the process a pause
/// marker names, when a system other than the zoo was paused), and starts again the
/// process a kill marker says was killed, in the zoo mode the marker names. Returns
/// the marker kinds undone, or the one failure.
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
        MarkedFault::Kill { system, .. } => Some(system.as_str()),
        _ => None,
    });
    let Some(was) = killed else {
        return Ok(done);
    };
    // The zoo in the mode it ran in; another system cannot be started from here.
    let zoo = match was.strip_prefix("zoo ") {
        Some(mode) if zoo::MODES.contains(&mode) => Zoo {
            mode: mode.to_string(),
            binary: ctx.system.binary.clone(),
            connect_timeout: ctx.system.connect_timeout,
            faketime: ctx.system.faketime,
        },
        _ => {
            return Err(format!(
                "{name}: {was} was killed here and is still marked so: `splitbrain fault` starts only the zoo ({system} here); start {was} again with a new `splitbrain test` or by hand, then `splitbrain fault heal` again"
            ))
        }
    };
    match zoo.process_state(n).await {
        Ok(ProcessState::Dead { .. }) => zoo
            .restart_node(n, all)
            .await
            .map_err(|e| format!("{e:#}"))?,
        // Started again meanwhile (by `fault restart`, say): nothing to undo.
        Ok(_) => {}
        Err(e) => return Err(format!("{e:#}")),
    }
    done.push("kill");
    Ok(done)
}
