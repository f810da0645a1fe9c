//! `splitbrain fault heal`: undoes every fault of ours on every node, from any
//! controller process. It reads each node's fault markers first (what is in
//! effect, applied when and by which controller), then heals the network and clocks
//! (idempotent, read back), resumes the system's process everywhere, and starts
//! again the processes a `kill` marker says we killed — the one fault that leaves
//! nothing on a node to tell it from a crash. Markers go once their fault is undone.

use super::{exec, FaultCtx};
use crate::systems::System;
use nemesis::marker::{MarkedFault, Marker};
use nemesis::process::ProcessState;

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
        MarkedFault::Pause { system } => format!("pause of {system}"),
        MarkedFault::Kill { system } => format!("kill of {system}"),
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
        if let Err(e) = ctx.system.resume_node(n).await {
            errors.push(format!("{e:#}"));
            continue;
        }
        let killed = found.iter().find_map(|(node, m)| match &m.fault {
            MarkedFault::Kill { system } if node == name => Some(system),
            _ => None,
        });
        let mut done = vec!["pause"];
        if let Some(was) = killed {
            match ctx.system.process_state(n).await {
                Ok(ProcessState::Dead { .. }) if *was != system => {
                    errors.push(format!(
                        "{name}: killed while running {was}, but this heal would start {system}: pass --zoo-mode for {was}"
                    ));
                }
                Ok(ProcessState::Dead { .. }) => match ctx.system.restart_node(n, &all).await {
                    Ok(()) => done.push("kill"),
                    Err(e) => errors.push(format!("{e:#}")),
                },
                // Started again meanwhile (by `fault restart`, say): nothing to undo.
                Ok(_) => done.push("kill"),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        errors.extend(exec::unmark(&ctx.nodes, std::slice::from_ref(name), &done).await);
    }
    errors.sort();
    let undone = found
        .iter()
        .map(|(node, m)| format!("{node}: {}", describe(m)))
        .collect();
    HealReport { undone, errors }
}
