//! `splitbrain fault status`: reads the real state back from every node — partition
//! rules (as the peers they cut), packet-fault qdiscs and rules, the system's process
//! (running, paused, dead; under libfaketime or not), the clock offset and the
//! fault markers (what a controller recorded applying there, by whom, since when) —
//! and renders it as a table or JSON.

use super::exec::{self, ClockReading};
use crate::systems::{NodeHandle, System};
use nemesis::iptables::{self, PartitionRules};
use nemesis::marker::{self, Marker};
use nemesis::netem;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One node's state as read back.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFaults {
    pub node: String,
    /// Peers (by name; unknown addresses as they are) cut both ways.
    pub cut_from: Vec<String>,
    /// Raw partition rules, for partial or foreign states.
    pub rules: PartitionRules,
    /// Packet-fault qdiscs and loss rules, one per line.
    pub packet: Vec<String>,
    pub process: String,
    /// Under libfaketime: the offset file the process reads.
    pub faketime_file: Option<String>,
    pub clock: Option<ClockReading>,
    /// The fault markers on the node.
    pub markers: Vec<Marker>,
    /// Kinds of the network markers whose fault is not in effect: a partition marker
    /// without our rules, a packet marker without our qdisc or rule. A node that
    /// rebooted keeps its markers (files) and loses its rules and qdiscs; `fault heal`
    /// removes such markers.
    pub stale_markers: Vec<String>,
    /// What could not be read.
    pub errors: Vec<String>,
}

impl NodeFaults {
    /// Whether no fault of ours is in effect on this node (the process is not looked
    /// at: a killed process is healed by restarting it, which status cannot judge).
    pub fn network_healed(&self) -> bool {
        self.rules.is_healed() && self.packet.is_empty()
    }
}

/// Reads the state of every node.
pub async fn read<S: System>(system: &S, nodes: &[NodeHandle], lab: bool) -> Vec<NodeFaults> {
    let name_of: BTreeMap<String, String> = exec::addresses(nodes)
        .into_iter()
        .map(|(n, a)| (a, n))
        .collect();
    let script = format!(
        "{}\necho '--- packet'\n{}",
        iptables::status_script(),
        netem::status_script()
    );
    let rules = exec::on_each(nodes, |n| {
        Ok(format!(
            "{script}\necho '--- markers'\n{}",
            marker::read_script(&n.spec.workdir)
        ))
    })
    .await;
    let (clocks, clock_errors) = exec::clock_offsets(nodes, lab).await;
    let mut out = Vec::new();
    for (n, (name, r)) in nodes.iter().zip(rules) {
        let mut f = NodeFaults {
            node: name.clone(),
            cut_from: Vec::new(),
            rules: PartitionRules::default(),
            packet: Vec::new(),
            process: "?".into(),
            faketime_file: None,
            clock: clocks.iter().find(|c| c.node == name).cloned(),
            markers: Vec::new(),
            stale_markers: Vec::new(),
            errors: clock_errors
                .iter()
                .filter(|e| e.starts_with(&format!("{name}:")) || e.contains(&format!("{name} (")))
                .cloned()
                .collect(),
        };
        match r {
            Ok(o) => {
                let text = o.stdout_str();
                let (text, marks) = text.split_once("--- markers").unwrap_or((&text, ""));
                let (markers, bad) = marker::parse(marks);
                f.markers = markers;
                f.errors.extend(bad);
                let (ipt, pkt) = text.split_once("--- packet").unwrap_or((text, ""));
                f.rules = PartitionRules::parse(ipt);
                f.cut_from = f
                    .rules
                    .cut_addresses()
                    .into_iter()
                    .map(|a| name_of.get(&a).cloned().unwrap_or(a))
                    .collect();
                f.packet = pkt
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                f.stale_markers = stale(&f);
            }
            Err(e) => f.errors.push(e),
        }
        match system.process_state(n).await {
            Ok(p) => {
                if let nemesis::process::ProcessState::Alive { faketime_file, .. } = &p {
                    f.faketime_file = faketime_file.clone();
                }
                f.process = p.to_string();
            }
            Err(e) => f.errors.push(format!("process: {e:#}")),
        }
        out.push(f);
    }
    out
}

/// The network markers of `f` whose fault the rules and qdiscs read back do not show.
fn stale(f: &NodeFaults) -> Vec<String> {
    f.markers
        .iter()
        .map(|m| m.fault.file_kind())
        .filter(|k| match *k {
            "partition" => f.rules.is_healed(),
            "packet" => f.packet.is_empty(),
            _ => false,
        })
        .map(String::from)
        .collect()
}

/// The state as a fixed-width table, one row per node, then any read errors.
pub fn render(rows: &[NodeFaults]) -> String {
    let header = ["NODE", "CUT FROM", "PACKETS", "PROCESS", "CLOCK", "MARKED"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let cut = if r.cut_from.is_empty() {
                if r.rules.is_healed() {
                    "-".into()
                } else {
                    "partial rules".into()
                }
            } else {
                r.cut_from.join(",")
            };
            let packet = if r.packet.is_empty() {
                "-".into()
            } else {
                format!("{} rule(s)", r.packet.len())
            };
            let clock = match &r.clock {
                Some(c) => format!("{:+.3}s ±{:.3}", c.offset_s, c.uncertainty_s),
                None => "?".into(),
            };
            let process = match &r.faketime_file {
                Some(_) => format!("{} faketime", r.process),
                None => r.process.clone(),
            };
            let marked = if r.markers.is_empty() {
                "-".to_string()
            } else {
                let kinds: Vec<&str> = r.markers.iter().map(|m| m.fault.file_kind()).collect();
                kinds.join(",")
            };
            [r.node.clone(), cut, packet, process, clock, marked]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            width[i] = width[i].max(v.len());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, v: [&str; 6]| {
        let parts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{x:<w$}", w = width[i]))
            .collect();
        let _ = writeln!(s, "{}", parts.join("  ").trim_end());
    };
    line(&mut s, header);
    for c in &cells {
        line(&mut s, [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]);
    }
    for r in rows {
        for p in &r.packet {
            let _ = writeln!(s, "{}: packet: {p}", r.node);
        }
        for m in &r.markers {
            let _ = writeln!(
                s,
                "{}: marker: {} since {:.3} by pid {} on {}",
                r.node,
                serde_json::to_string(&m.fault).unwrap_or_default(),
                m.since_unix_s,
                m.controller_pid,
                m.controller_host
            );
        }
        for k in &r.stale_markers {
            let _ = writeln!(
                s,
                "{}: marker {k}: not in effect (no {} of ours on the node: it rebooted, or they were removed by hand); `splitbrain fault heal` removes the marker",
                r.node,
                if k == "partition" { "rule" } else { "qdisc or rule" }
            );
        }
        for e in &r.errors {
            let _ = writeln!(s, "{}: could not read: {e}", r.node);
        }
        for x in &r.rules.foreign {
            let _ = writeln!(s, "{}: foreign rule in our chain: {x}", r.node);
        }
    }
    s
}
