//! Executes the nemesis crate's fault scripts on a cluster: partitions, packet
//! faults, clock faults and their heal, in parallel on every node, collecting each
//! node's failure as one `node: reason` line. Used by `splitbrain fault` and by the
//! runner's nemesis schedule.

use crate::control::{ExecOutput, Remote};
use crate::systems::NodeHandle;
use nemesis::clock::{self, ClockTarget, Offset};
use nemesis::marker::{self, MarkedFault, Marker};
use nemesis::netem::{self, PacketFault, PacketMethod};
use nemesis::{iptables, Grudge};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Per-node command deadline for applying or healing a fault.
pub const FAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the script `script` gives each node (`Err`: that node's error) on all nodes
/// at once; returns each node's output in node order.
pub async fn on_each(
    nodes: &[NodeHandle],
    script: impl Fn(&NodeHandle) -> Result<String, String>,
) -> Vec<(String, Result<ExecOutput, String>)> {
    let mut set = tokio::task::JoinSet::new();
    let mut out: Vec<(String, Result<ExecOutput, String>)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match script(n) {
            Ok(cmd) => {
                let n = n.clone();
                set.spawn(async move {
                    let r = n.remote.exec_ok(&cmd, FAULT_COMMAND_TIMEOUT).await;
                    (i, r.map_err(|e| e.to_string()))
                });
            }
            Err(e) => out.push((n.spec.name.clone(), Err(e))),
        }
    }
    let mut done: Vec<(usize, Result<ExecOutput, String>)> = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(x) => done.push(x),
            Err(e) => out.push(("?".into(), Err(format!("fault task failed: {e}")))),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    out.extend(
        done.into_iter()
            .map(|(i, r)| (nodes[i].spec.name.clone(), r)),
    );
    out
}

/// Like [`on_each`], keeping only the failures as `node: reason` lines (sorted).
pub async fn on_all(
    nodes: &[NodeHandle],
    script: impl Fn(&NodeHandle) -> Result<String, String>,
) -> Vec<String> {
    let mut errors: Vec<String> = on_each(nodes, script)
        .await
        .into_iter()
        .filter_map(|(n, r)| r.err().map(|e| prefixed(&n, &e)))
        .collect();
    errors.sort();
    errors
}

/// `node: reason`, without doubling a prefix the control layer already wrote.
fn prefixed(node: &str, e: &str) -> String {
    if e.starts_with(node) {
        e.to_string()
    } else {
        format!("{node}: {e}")
    }
}

/// Node name to the address peers use to reach it.
pub fn addresses(nodes: &[NodeHandle]) -> BTreeMap<String, String> {
    nodes
        .iter()
        .map(|n| (n.spec.name.clone(), n.spec.host.clone()))
        .collect()
}

pub fn names(nodes: &[NodeHandle]) -> Vec<String> {
    nodes.iter().map(|n| n.spec.name.clone()).collect()
}

/// A marker for `fault` applied now by this process.
pub fn marker_now(fault: MarkedFault) -> Marker {
    Marker {
        fault,
        since_unix_s: now_epoch(),
        controller_pid: std::process::id(),
        controller_host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// `script` preceded by writing the marker of `fault` on node `n` (the marker goes
/// first: a crash in between leaves a marker without its fault, never the reverse).
pub fn marked(n: &NodeHandle, fault: &MarkedFault, script: &str) -> String {
    format!(
        "{} || {{ echo {} >&2; exit 3; }}\n{script}",
        marker::write_script(&n.spec.workdir, &marker_now(fault.clone())),
        crate::control::sh_quote(&format!(
            "cannot write the fault marker under {}",
            marker::dir(&n.spec.workdir)
        ))
    )
}

/// Removes the markers of `kinds` on each of `targets`; returns the failures.
pub async fn unmark(nodes: &[NodeHandle], targets: &[String], kinds: &[&str]) -> Vec<String> {
    on_all(&pick(nodes, targets), |n| {
        Ok(marker::remove_script(&n.spec.workdir, kinds))
    })
    .await
}

/// The markers on every node: per node, the markers and the unreadable ones, or
/// why they could not be read.
pub async fn read_markers(
    nodes: &[NodeHandle],
) -> Vec<(String, Result<(Vec<Marker>, Vec<String>), String>)> {
    on_each(nodes, |n| Ok(marker::read_script(&n.spec.workdir)))
        .await
        .into_iter()
        .map(|(n, r)| (n, r.map(|o| marker::parse(&o.stdout_str()))))
        .collect()
}

/// Applies `grudge` on every node (replacing any earlier partition): one restore
/// transaction per node, all nodes at once, each node's rules read back and checked.
/// Each node's partition marker is written in the same exec.
pub async fn partition(nodes: &[NodeHandle], grudge: &Grudge) -> Vec<String> {
    let addrs = addresses(nodes);
    let fault = MarkedFault::Partition {
        grudge: grudge.clone(),
    };
    let mut errors: Vec<String> = on_each(nodes, |n| {
        iptables::apply_script(&n.spec.name, grudge, &addrs).map(|s| marked(n, &fault, &s))
    })
    .await
    .into_iter()
    .filter_map(|(n, r)| {
        r.and_then(|o| iptables::verify_applied(&n, grudge, &addrs, &o.stdout_str()))
            .err()
            .map(|e| prefixed(&n, &e))
    })
    .collect();
    errors.sort();
    errors
}

/// Seconds since the epoch on the controller.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One node's heal of every network and clock fault of ours: iptables rules
/// (partition chains and the loss chain, one restore transaction, read back), packet
/// qdiscs, clock offset and strobe (lab), and on a real node whose clock we set: the
/// controller's time and time sync restarted. Each part runs even when an earlier
/// one failed; the script fails if any did. No subshells: on a loaded node every
/// fork shows in the heal time. Idempotent, needs no memory of what was
/// done, so it works after the controller crashed. When everything healed, the
/// partition, packet and clock markers go too (process markers are the process
/// heal's).
pub fn heal_node_script(n: &NodeHandle) -> String {
    let w = &n.spec.workdir;
    format!(
        "rc=0\n{}\n{}\n{} || rc=3\nif [ -f {st} ]; then {} || rc=3; fi\nif [ $rc = 0 ]; then {}; fi\nexit $rc\n",
        iptables::heal_script(),
        netem::heal_qdisc_script(),
        clock::lab_reset_script(&clock::lab_offset_file(w), &clock::strobe_pid_file(w)),
        clock::real_reset_script(now_epoch()),
        marker::remove_script(w, &NETWORK_AND_CLOCK),
        st = clock::SYNC_STATE
    )
}

/// The marker kinds [`heal_node_script`] undoes.
pub const NETWORK_AND_CLOCK: [&str; 3] = ["partition", "packet", "clock"];

/// Heals every network and clock fault on every node, checking each node's rules
/// read back afterwards; returns the failures.
pub async fn heal_network_and_clocks(nodes: &[NodeHandle]) -> Vec<String> {
    let mut errors: Vec<String> = on_each(nodes, |n| Ok(heal_node_script(n)))
        .await
        .into_iter()
        .filter_map(|(n, r)| {
            r.and_then(|o| iptables::verify_healed(&o.stdout_str()))
                .err()
                .map(|e| prefixed(&n, &e))
        })
        .collect();
    errors.sort();
    errors
}

/// Which packet-fault method each node supports.
pub async fn detect_packet_methods(
    nodes: &[NodeHandle],
) -> Vec<(String, Result<PacketMethod, String>)> {
    on_each(nodes, |_| Ok(netem::detect_script()))
        .await
        .into_iter()
        .map(|(n, r)| (n, r.map(|o| netem::parse_detect(&o.stdout_str()))))
        .collect()
}

/// Applies `fault` on each of `targets` to its packets toward every other node;
/// returns what each target used, or the failures.
pub async fn packet(
    nodes: &[NodeHandle],
    targets: &[String],
    fault: &PacketFault,
) -> Result<Vec<(String, PacketMethod)>, Vec<String>> {
    let chosen = pick(nodes, targets);
    let mut methods = Vec::new();
    let mut errors = Vec::new();
    for (n, r) in detect_packet_methods(&chosen).await {
        match r {
            Ok(m) => methods.push((n, m)),
            Err(e) => errors.push(prefixed(&n, &format!("probing for netem: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let method_of: BTreeMap<String, PacketMethod> = methods.iter().cloned().collect();
    let errors = on_all(&chosen, |n| {
        let method = match method_of.get(&n.spec.name) {
            Some(PacketMethod::Netem) => "tc netem".to_string(),
            Some(PacketMethod::IptablesLoss { .. }) => "iptables statistic".to_string(),
            None => "?".to_string(),
        };
        let mark = MarkedFault::Packet {
            fault: fault.to_string(),
            method,
        };
        let peers: Vec<String> = nodes
            .iter()
            .filter(|p| p.spec.name != n.spec.name)
            .map(|p| p.spec.host.clone())
            .collect();
        let m = method_of
            .get(&n.spec.name)
            .ok_or_else(|| "no packet method detected".to_string())?;
        netem::apply_script(m, fault, &peers).map(|s| marked(n, &mark, &s))
    })
    .await;
    if errors.is_empty() {
        Ok(methods)
    } else {
        Err(errors)
    }
}

/// Where clock faults act on node `n`.
pub fn clock_target(n: &NodeHandle, lab: bool) -> ClockTarget {
    if lab {
        ClockTarget::Lab {
            offset_file: clock::lab_offset_file(&n.spec.workdir),
        }
    } else {
        ClockTarget::Real
    }
}

/// The handles of the nodes named in `targets`.
pub fn pick(nodes: &[NodeHandle], targets: &[String]) -> Vec<NodeHandle> {
    nodes
        .iter()
        .filter(|n| targets.contains(&n.spec.name))
        .cloned()
        .collect()
}

/// Bumps the clocks of `targets` by `offset`.
pub async fn clock_bump(
    nodes: &[NodeHandle],
    targets: &[String],
    offset: Offset,
    lab: bool,
) -> Vec<String> {
    let mark = MarkedFault::Clock { offset_s: offset.0 };
    on_all(&pick(nodes, targets), |n| {
        let script = match clock_target(n, lab) {
            ClockTarget::Lab { offset_file } => clock::lab_bump_script(&offset_file, offset),
            ClockTarget::Real => clock::real_bump_script(offset),
        };
        Ok(marked(n, &mark, &script))
    })
    .await
}

/// Starts a strobe between offsets `a` and `b` on `targets`.
pub async fn clock_strobe(
    nodes: &[NodeHandle],
    targets: &[String],
    (a, b): (Offset, Offset),
    period: Duration,
    duration: Duration,
    lab: bool,
) -> Vec<String> {
    let mark = MarkedFault::ClockStrobe {
        a_s: a.0,
        b_s: b.0,
        period_ms: period.as_millis() as u64,
        until_unix_s: now_epoch() + duration.as_secs().max(1) as f64,
    };
    on_all(&pick(nodes, targets), |n| {
        let pid = clock::strobe_pid_file(&n.spec.workdir);
        let script = format!(
            "{}; {}",
            clock::stop_strobe_script(&pid),
            clock::strobe_script(
                &clock_target(n, lab),
                a,
                b,
                period.as_millis() as u64,
                duration.as_secs().max(1),
                &pid,
            )
        );
        Ok(marked(n, &mark, &script))
    })
    .await
}

/// Resets the clocks of `targets` (and stops any strobe).
pub async fn clock_reset(nodes: &[NodeHandle], targets: &[String], lab: bool) -> Vec<String> {
    on_all(&pick(nodes, targets), |n| {
        let w = &n.spec.workdir;
        let pid = clock::strobe_pid_file(w);
        let reset = match clock_target(n, lab) {
            ClockTarget::Lab { offset_file } => clock::lab_reset_script(&offset_file, &pid),
            ClockTarget::Real => format!(
                "{}; {}",
                clock::stop_strobe_script(&pid),
                clock::real_reset_script(now_epoch())
            ),
        };
        Ok(format!(
            "{reset} && {}",
            marker::remove_script(w, &["clock"])
        ))
    })
    .await
}

/// One node's clock offset from the controller, as the system's processes see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClockReading {
    pub node: String,
    /// Seconds ahead of the controller (negative: behind).
    pub offset_s: f64,
    /// Half the round trip: the reading is within this of the truth.
    pub uncertainty_s: f64,
}

/// Reads every node's clock; failures as `node: reason` lines.
pub async fn clock_offsets(nodes: &[NodeHandle], lab: bool) -> (Vec<ClockReading>, Vec<String>) {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let (n, script) = (n.clone(), clock::read_clock_script(&clock_target(n, lab)));
        set.spawn(async move {
            let sent = now_epoch();
            let r = n.remote.exec_ok(&script, FAULT_COMMAND_TIMEOUT).await;
            let received = now_epoch();
            let name = n.spec.name.clone();
            let out = r.map_err(|e| e.to_string())?.stdout_str();
            let node_epoch: f64 = out
                .trim()
                .parse()
                .map_err(|_| format!("{name}: unexpected clock reading {:?}", out.trim()))?;
            let (offset_s, uncertainty_s) = clock::offset_from(node_epoch, sent, received);
            Ok::<_, String>(ClockReading {
                node: name,
                offset_s,
                uncertainty_s,
            })
        });
    }
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(c)) => ok.push(c),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("clock task failed: {e}")),
        }
    }
    ok.sort_by(|a: &ClockReading, b| a.node.cmp(&b.node));
    errors.sort();
    (ok, errors)
}
