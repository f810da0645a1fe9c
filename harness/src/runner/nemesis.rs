//! Runs the nemesis schedule of a test: asks the system who is master, isolates it
//! for a while, heals, waits, repeats; records each fault as nemesis ops carrying the
//! exact grudge. Also the heal of every node, used on every exit path.

use super::stop::Stop;
use crate::config::NemesisKind;
use crate::store::Recorder;
use crate::systems::{current_masters, NodeHandle, System};
use checkers::{Op, OpType, Process};
use nemesis::iptables::apply_script;
use nemesis::{Grudge, Topology};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use crate::fault::exec::{on_all, FAULT_COMMAND_TIMEOUT};

/// Heals every network and clock fault on every node (partition rules, packet
/// faults, clock offsets and strobes). Idempotent; returns the failures.
pub async fn heal_all(nodes: &[NodeHandle]) -> Vec<String> {
    crate::fault::exec::heal_network_and_clocks(nodes).await
}

fn nemesis_op(kind: OpType, f: &str, value: Value) -> Op {
    Op::new(0, Process::Nemesis, kind, f, value)
}

/// One fault as it happened, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    pub topology: String,
    pub grudge: Grudge,
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
    pub deadline: Instant,
    pub recorder: Arc<Recorder>,
    pub stop: Stop,
    pub seed: u64,
}

/// Runs the schedule until the deadline or stop; the caller heals afterwards anyway.
pub async fn run_nemesis<S: System>(t: NemesisTask<S>) -> anyhow::Result<Vec<FaultRecord>> {
    let mut faults = Vec::new();
    if t.kind == NemesisKind::None {
        return Ok(faults);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(t.seed ^ 0x6e656d65);
    let names: Vec<String> = t.nodes.iter().map(|n| n.spec.name.clone()).collect();
    let addresses: BTreeMap<String, String> = t
        .nodes
        .iter()
        .map(|n| (n.spec.name.clone(), n.spec.host.clone()))
        .collect();
    let specs: Vec<_> = t.nodes.iter().map(|n| n.spec.clone()).collect();
    let gap = t.interval / 2;
    loop {
        if t.stop.sleep(gap).await || Instant::now() + Duration::from_secs(1) >= t.deadline {
            break;
        }
        let roles = t.system.roles(&specs, Duration::from_secs(1)).await;
        let masters = current_masters(&roles);
        let target = match masters.first() {
            Some(m) => m.clone(),
            None => names.choose(&mut rng).cloned().unwrap_or_default(),
        };
        let plan = Topology::Isolate { node: Some(target) }.plan(&names, &masters, &mut rng)?;
        let (topology, grudge) = (plan.description, plan.grudge);
        let value = json!({"topology": topology, "grudge": grudge, "masters": masters});
        let start_op =
            t.recorder
                .record(nemesis_op(OpType::Invoke, "start-partition", value.clone()))?;
        let errors = on_all(&t.nodes, |n| {
            apply_script(&n.spec.name, &grudge, &addresses)
        })
        .await;
        let mut done = value;
        if !errors.is_empty() {
            done["errors"] = json!(errors);
        }
        t.recorder
            .record(nemesis_op(OpType::Info, "start-partition", done))?;
        tracing::info!(%topology, ?errors, "partition started");
        let mut fault = FaultRecord {
            topology,
            grudge,
            start: start_op.time as f64 / 1e9,
            end: None,
            errors,
        };
        let left = t.deadline.saturating_duration_since(Instant::now());
        t.stop.sleep(t.interval.min(left)).await;
        t.recorder
            .record(nemesis_op(OpType::Invoke, "stop-partition", Value::Null))?;
        let heal_errors = heal_all(&t.nodes).await;
        let end = t.recorder.record(nemesis_op(
            OpType::Info,
            "stop-partition",
            json!({"errors": heal_errors}),
        ))?;
        tracing::info!(?heal_errors, "partition healed");
        fault.end = Some(end.time as f64 / 1e9);
        fault.errors.extend(heal_errors);
        faults.push(fault);
        if t.stop.is_stopped() {
            break;
        }
    }
    Ok(faults)
}
