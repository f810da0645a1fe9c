//! Runs the nemesis schedule of a test and records each fault as nemesis ops in the
//! history. `partition` alone isolates the current master, heals, repeats; a list
//! (`partition,clock,kill,pause,packet`) draws one fault at a time with a seeded
//! generator — its kind, targets, topology and size — holds it for the nemesis
//! interval, undoes it, and leaves half an interval to recover before the next;
//! `isolate-master`, `kill-master`, ... aim one fixed fault at the master
//! (`nemesis_targeted.rs`).
//! Also the heal of every node (network, clocks, processes) used on every exit path.

use super::fault_schedule;
use super::stop::Stop;
use crate::config::{FaultKind, NemesisKind};
use crate::fault::exec;
use crate::fault::process::{self, ProcessFault, ProcessUndo};
use crate::store::Recorder;
use crate::systems::{current_masters, NodeHandle, System};
use checkers::{Op, OpType, Process};
use nemesis::clock::Offset;
use nemesis::netem::{PacketFault, PacketMethod};
use nemesis::process::ProcessState;
use nemesis::{Grudge, Topology};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use crate::fault::exec::{on_all, FAULT_COMMAND_TIMEOUT};

#[path = "nemesis_targeted.rs"]
mod targeted;

/// Heals every network and clock fault on every node (partition rules, packet
/// faults, clock offsets and strobes). Idempotent; returns the failures.
pub async fn heal_all(nodes: &[NodeHandle]) -> Vec<String> {
    exec::heal_network_and_clocks(nodes).await
}

/// Resumes every paused process of the system and restarts every killed one, on all
/// nodes at once, removing each node's process-fault markers once it is healed.
/// Returns the failures.
pub async fn heal_processes<S: System>(system: &Arc<S>, nodes: &[NodeHandle]) -> Vec<String> {
    process::heal_all(system, nodes).await
}

fn nemesis_op(kind: OpType, f: &str, value: Value) -> Op {
    Op::new(0, Process::Nemesis, kind, f, value)
}

/// One fault as it happened, for the summary and the reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// partition, clock, kill, pause or packet.
    pub kind: String,
    /// What was done, every random choice spelled out (e.g. `isolate n3`).
    pub topology: String,
    /// The partition's grudge (empty for other faults).
    pub grudge: Grudge,
    pub targets: Vec<String>,
    /// Seconds since the test began.
    pub start: f64,
    pub end: Option<f64>,
    pub errors: Vec<String>,
}

pub struct NemesisTask<S: System> {
    pub system: Arc<S>,
    pub nodes: Vec<NodeHandle>,
    pub kind: NemesisKind,
    pub interval: Duration,
    /// At most this many faults (`None`: until the deadline).
    pub max_faults: Option<u32>,
    pub deadline: Instant,
    pub recorder: Arc<Recorder>,
    pub stop: Stop,
    pub seed: u64,
    /// Whether the nodes are the lab (clock faults through libfaketime).
    pub lab: bool,
}

/// A fault whose commands have run: what [`NemesisTask::started`] records.
struct Started<'a> {
    /// The history's name for the fault kind (`partition`, `clock`, ...).
    f: &'a str,
    /// The recorded invocation of the fault.
    start: Op,
    value: Value,
    description: String,
    grudge: Grudge,
    targets: Vec<String>,
    errors: Vec<String>,
}

/// A fault chosen and applied, to be undone after the interval.
struct Applied {
    record: FaultRecord,
    undo: Undo,
}

enum Undo {
    Partition,
    Clock,
    Kill,
    Pause,
    Packet,
}

impl<S: System> NemesisTask<S> {
    fn names(&self) -> Vec<String> {
        exec::names(&self.nodes)
    }

    async fn masters(&self) -> Vec<String> {
        let specs: Vec<_> = self.nodes.iter().map(|n| n.spec.clone()).collect();
        current_masters(&self.system.roles(&specs, Duration::from_secs(1)).await)
    }

    fn record(&self, kind: OpType, f: &str, value: Value) -> anyhow::Result<Op> {
        Ok(self.recorder.record(nemesis_op(kind, f, value))?)
    }

    /// Records every node's clock offset as the system's processes see it.
    async fn record_offsets(&self) -> anyhow::Result<()> {
        let (readings, errors) = exec::clock_offsets(&self.nodes, self.lab).await;
        let offsets: serde_json::Map<String, Value> = readings
            .iter()
            .map(|r| {
                (
                    r.node.clone(),
                    json!({"offset_s": r.offset_s, "uncertainty_s": r.uncertainty_s}),
                )
            })
            .collect();
        self.record(
            OpType::Info,
            "clock-offsets",
            json!({"offsets": offsets, "errors": errors}),
        )?;
        Ok(())
    }

    /// Picks and applies one fault of `kind`; records its start.
    async fn apply(&self, kind: FaultKind, rng: &mut ChaCha8Rng) -> anyhow::Result<Applied> {
        let names = self.names();
        let masters = self.masters().await;
        let fault_schedule::FaultPlan {
            f,
            description,
            grudge,
            targets,
            detail,
            ..
        } = fault_schedule::plan(kind, &names, &masters, rng)?;
        let undo = match kind {
            FaultKind::Partition => Undo::Partition,
            FaultKind::Clock => Undo::Clock,
            FaultKind::Kill => Undo::Kill,
            FaultKind::Pause => Undo::Pause,
            FaultKind::Packet => Undo::Packet,
        };
        let mut value = json!({"description": description, "targets": targets, "detail": detail});
        if kind == FaultKind::Partition {
            value["topology"] = json!(description);
            value["grudge"] = json!(grudge);
        }
        let start = self.record(OpType::Invoke, &format!("start-{f}"), value.clone())?;
        let errors = match kind {
            FaultKind::Partition => exec::partition(&self.nodes, &grudge).await,
            FaultKind::Clock => {
                let secs = detail["offset_s"].as_f64().unwrap_or(1.0);
                let mut errors = Vec::new();
                if self.lab {
                    errors.extend(self.faketime_problems(&targets).await);
                }
                if errors.is_empty() {
                    errors = if detail["strobe"] == true {
                        exec::clock_strobe(
                            &self.nodes,
                            &targets,
                            (Offset(0.0), Offset(secs)),
                            Duration::from_millis(10),
                            self.interval,
                            self.lab,
                        )
                        .await
                    } else {
                        exec::clock_bump(&self.nodes, &targets, Offset(secs), self.lab).await
                    };
                }
                errors
            }
            // Each target's marker first, as `splitbrain fault` does.
            FaultKind::Kill | FaultKind::Pause => {
                let pf = if kind == FaultKind::Kill {
                    ProcessFault::Kill
                } else {
                    ProcessFault::Pause
                };
                process::apply(self.system.as_ref(), &self.nodes, &targets, pf).await
            }
            FaultKind::Packet => {
                // Delay and loss where netem exists; loss alone through iptables elsewhere.
                let methods = exec::detect_packet_methods(&exec::pick(&self.nodes, &targets)).await;
                let netem = methods
                    .iter()
                    .all(|(_, m)| matches!(m, Ok(PacketMethod::Netem)));
                let spec = if netem {
                    "delay=50ms,jitter=20ms,loss=10%"
                } else {
                    "loss=30%"
                };
                value["packet"] = json!(spec);
                let how: serde_json::Map<String, Value> = methods
                    .iter()
                    .map(|(n, m)| {
                        let how = match m {
                            Ok(PacketMethod::Netem) => "tc netem".to_string(),
                            Ok(PacketMethod::IptablesLoss { why }) => {
                                format!("iptables statistic (no netem: {why})")
                            }
                            Err(e) => format!("probe failed: {e}"),
                        };
                        (n.clone(), Value::String(how))
                    })
                    .collect();
                value["methods"] = Value::Object(how);
                let fault = PacketFault::parse(spec).map_err(anyhow::Error::msg)?;
                match exec::packet(&self.nodes, &targets, &fault).await {
                    Ok(_) => Vec::new(),
                    Err(e) => e,
                }
            }
        };
        self.started(
            Started {
                f,
                start,
                value,
                description,
                grudge,
                targets,
                errors,
            },
            undo,
        )
        .await
    }

    /// Records that a fault has started (its errors, and every node's clock offset
    /// after a clock fault) and returns it as applied, to be undone later.
    async fn started(&self, s: Started<'_>, undo: Undo) -> anyhow::Result<Applied> {
        let mut done = s.value;
        if !s.errors.is_empty() {
            done["errors"] = json!(s.errors);
        }
        self.record(OpType::Info, &format!("start-{}", s.f), done)?;
        if matches!(undo, Undo::Clock) {
            self.record_offsets().await?;
        }
        tracing::info!(description = %s.description, errors = ?s.errors, "fault started");
        Ok(Applied {
            record: FaultRecord {
                kind: s.f.to_string(),
                topology: s.description,
                grudge: s.grudge,
                targets: s.targets,
                start: s.start.time as f64 / 1e9,
                end: None,
                errors: s.errors,
            },
            undo,
        })
    }

    /// Lab clock faults reach only processes under libfaketime: say so per node.
    async fn faketime_problems(&self, targets: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for n in exec::pick(&self.nodes, targets) {
            match self.system.process_state(&n).await {
                Ok(ProcessState::Alive { faketime_file: Some(_), .. }) => {}
                Ok(ProcessState::Alive { pid, .. }) => out.push(format!(
                    "{}: the system's process (pid {pid}) is not under libfaketime: a lab clock fault cannot reach it (Go binaries ignore libfaketime)",
                    n.spec.name
                )),
                Ok(other) => out.push(format!("{}: no system process to skew ({other})", n.spec.name)),
                Err(e) => out.push(format!("{e:#}")),
            }
        }
        out
    }

    /// Undoes an applied fault; records its end.
    async fn undo(&self, mut a: Applied) -> anyhow::Result<FaultRecord> {
        let f = a.record.kind.clone();
        self.record(
            OpType::Invoke,
            &format!("stop-{f}"),
            json!({"targets": a.record.targets}),
        )?;
        let errors = match a.undo {
            Undo::Partition | Undo::Packet => heal_all(&self.nodes).await,
            Undo::Clock => exec::clock_reset(&self.nodes, &a.record.targets, self.lab).await,
            Undo::Kill | Undo::Pause => {
                let how = if matches!(a.undo, Undo::Kill) {
                    ProcessUndo::Restart
                } else {
                    ProcessUndo::Resume
                };
                process::undo(self.system.as_ref(), &self.nodes, &a.record.targets, how).await
            }
        };
        let end = self.record(
            OpType::Info,
            &format!("stop-{f}"),
            json!({"errors": errors}),
        )?;
        if matches!(a.undo, Undo::Clock) {
            self.record_offsets().await?;
        }
        tracing::info!(fault = %a.record.topology, ?errors, "fault healed");
        a.record.end = Some(end.time as f64 / 1e9);
        a.record.errors.extend(errors);
        Ok(a.record)
    }
}

/// Runs the schedule until the deadline or stop; the caller heals afterwards anyway.
pub async fn run_nemesis<S: System>(t: NemesisTask<S>) -> anyhow::Result<Vec<FaultRecord>> {
    let mut faults = Vec::new();
    let kinds: Vec<FaultKind> = match t.kind {
        NemesisKind::None => return Ok(faults),
        NemesisKind::PartitionMaster => vec![FaultKind::Partition],
        NemesisKind::Schedule(set) => set.kinds(),
        NemesisKind::Targeted(f) => vec![f.kind()],
    };
    let mut rng = fault_schedule::rng(t.seed);
    if t.kind.includes(FaultKind::Clock) {
        t.record_offsets().await?;
    }
    let gap = t.interval / 2;
    while below_limit(faults.len(), t.max_faults) {
        if t.stop.sleep(gap).await || !time_for_another(Instant::now(), t.deadline) {
            break;
        }
        let applied = if t.kind == NemesisKind::PartitionMaster {
            master_partition(&t, &mut rng).await?
        } else if let NemesisKind::Targeted(f) = t.kind {
            targeted::apply(&t, f, &mut rng).await?
        } else {
            let kind = fault_schedule::pick_kind(&kinds, &mut rng);
            t.apply(kind, &mut rng).await?
        };
        panic_if_testing();
        let left = t.deadline.saturating_duration_since(Instant::now());
        t.stop.sleep(t.interval.min(left)).await;
        faults.push(t.undo(applied).await?);
        if t.stop.is_stopped() {
            break;
        }
    }
    Ok(faults)
}

/// Whether `applied` faults leave room for another under `--max-faults`.
fn below_limit(applied: usize, max_faults: Option<u32>) -> bool {
    max_faults.is_none_or(|n| applied < n as usize)
}

/// Whether a fault started `now` (after its gap) would have a second before the
/// deadline; one that would not is not started.
fn time_for_another(now: Instant, deadline: Instant) -> bool {
    now + Duration::from_secs(1) < deadline
}

/// Test-only (`fault_panic_lab.rs`): with `SPLITBRAIN_TEST_PANIC_AFTER_FAULT=1` in
/// the environment the nemesis panics right after its first fault is applied, so a
/// test can prove that a panic (a bug) still ends in heal and teardown. Ignored
/// unless set to exactly `1`; not a flag and not meant for users.
pub const TEST_PANIC_ENV: &str = "SPLITBRAIN_TEST_PANIC_AFTER_FAULT";

fn panic_if_testing() {
    if std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == "1") {
        panic!("test-only panic with a fault in effect ({TEST_PANIC_ENV}=1)");
    }
}

/// The `partition` nemesis: isolate the current master (a random node if none).
async fn master_partition<S: System>(
    t: &NemesisTask<S>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Applied> {
    let names = t.names();
    let masters = t.masters().await;
    let target = match masters.first() {
        Some(m) => m.clone(),
        None => names.choose(rng).cloned().unwrap_or_default(),
    };
    let plan = Topology::Isolate {
        node: Some(target.clone()),
    }
    .plan(&names, &masters, rng)?;
    let value = json!({"topology": plan.description, "grudge": plan.grudge, "masters": masters});
    let start = t.record(OpType::Invoke, "start-partition", value.clone())?;
    let errors = exec::partition(&t.nodes, &plan.grudge).await;
    let mut done = value;
    if !errors.is_empty() {
        done["errors"] = json!(errors);
    }
    t.record(OpType::Info, "start-partition", done)?;
    tracing::info!(topology = %plan.description, ?errors, "partition started");
    Ok(Applied {
        record: FaultRecord {
            kind: "partition".into(),
            topology: plan.description,
            grudge: plan.grudge,
            targets: vec![target],
            start: start.time as f64 / 1e9,
            end: None,
            errors,
        },
        undo: Undo::Partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_stop_at_the_limit_and_a_second_before_the_deadline() {
        assert!(below_limit(0, Some(1)) && !below_limit(1, Some(1)));
        assert!(below_limit(2, Some(3)) && !below_limit(3, Some(3)));
        assert!(below_limit(10_000, None));
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert!(time_for_another(now, now + ms(1001)));
        assert!(!time_for_another(now, now + ms(1000)));
        assert!(!time_for_another(now, now));
    }
}
