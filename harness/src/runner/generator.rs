//! Scheduling of client operations: the phases of a run ([`Phase`]: warm-up, faults,
//! heal, recovery, final reads), each recorded in the history and harness.log as it
//! begins, and the nemesis held back until the warm-up is over; the even staggering
//! of clients under `--rate` (client `i` of `n` starts `i/n` of an interval late, so
//! ops are spread evenly instead of arriving in bursts); and [`NoopSystem`], an
//! in-process system that accepts every op at once — used to show that the same seed
//! gives the same op schedule and to benchmark the runner and recorder without a
//! network.

use super::stop::Stop;
use crate::nodes::NodeSpec;
use crate::store::{Recorder, StoreError};
use crate::systems::{NodeHandle, Outcome, RoleView, System, SystemClient};
use checkers::{Op, OpType, Process};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;
use workloads::{Invocation, OpFn};

/// The phases of a run, in order. Clients run through warm-up and faults; the
/// nemesis only in the fault phase; leader observation until the final reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Clients only (`--warmup`), so the system is under load before the first fault.
    WarmUp,
    /// Clients and the nemesis schedule, until the time limit.
    Faults,
    /// Every fault undone on every node.
    Heal,
    /// Waiting `--recovery-time` for the system to settle.
    Recovery,
    /// Every node read once more.
    FinalReads,
}

impl Phase {
    /// Its name in the history (`{"f": "phase", "value": {"phase": ...}}`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::WarmUp => "warm-up",
            Phase::Faults => "faults",
            Phase::Heal => "heal",
            Phase::Recovery => "recovery",
            Phase::FinalReads => "final-reads",
        }
    }
}

/// Records the start of `phase` as a nemesis `info` op (`f` = `phase`, which no
/// checker reads as a fault) and in harness.log.
pub fn record_phase(recorder: &Recorder, phase: Phase) -> Result<(), StoreError> {
    let value = json!({ "phase": phase.name() });
    let op = recorder.record(Op::new(0, Process::Nemesis, OpType::Info, "phase", value))?;
    tracing::info!(phase = phase.name(), time_s = op.time as f64 / 1e9, "phase");
    Ok(())
}

/// Runs `nemesis` once `warmup` is over, recording the start of the fault phase
/// then; when `stop` is set during the warm-up the nemesis never starts.
pub async fn after_warmup<T, F>(
    warmup: Duration,
    recorder: std::sync::Arc<Recorder>,
    stop: Stop,
    nemesis: F,
) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<Vec<T>>>,
{
    if !warmup.is_zero() {
        if stop.sleep(warmup).await {
            return Ok(Vec::new());
        }
        record_phase(&recorder, Phase::Faults)?;
    }
    nemesis.await
}

/// How long the client whose first process id is `first_process` waits before its
/// first op: its slot's share of one `interval`.
pub fn stagger(first_process: u64, stride: u64, interval: Duration) -> Duration {
    if stride == 0 || interval.is_zero() {
        return Duration::ZERO;
    }
    let slot = (first_process % stride) as u32;
    interval * slot / stride as u32
}

/// A system that lives in the controller and does nothing: every op succeeds at
/// once (writes echo their value and are acknowledged by `n1` in epoch 1, reads
/// return nothing, `n1` is always master).
pub struct NoopSystem;

pub struct NoopClient {
    node: String,
}

impl SystemClient for NoopClient {
    async fn invoke(&mut self, inv: &Invocation, _timeout: Duration) -> Outcome {
        let mut extra = Map::new();
        let value = match inv.f {
            OpFn::Role => {
                json!({"role": if self.node == "n1" { "master" } else { "replica" }, "epoch": 1})
            }
            OpFn::Read | OpFn::ReadList => json!([]),
            OpFn::ReadRegister => Value::Null,
            _ => {
                extra.insert("acked_by".into(), json!("n1"));
                extra.insert("epoch".into(), json!(1));
                inv.value.clone()
            }
        };
        Outcome::Ok { value, extra }
    }
}

impl System for NoopSystem {
    type Client = NoopClient;

    fn describe(&self) -> String {
        "noop (in-process)".into()
    }

    async fn setup_node(&self, _node: &NodeHandle, _all: &[NodeSpec]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn await_ready(&self, _nodes: &[NodeSpec], _timeout: Duration) -> anyhow::Result<()> {
        Ok(())
    }

    async fn teardown_node(&self, _node: &NodeHandle) -> anyhow::Result<()> {
        Ok(())
    }

    async fn roles(&self, nodes: &[NodeSpec], _timeout: Duration) -> Vec<RoleView> {
        nodes
            .iter()
            .map(|n| RoleView {
                node: n.name.clone(),
                is_master: n.name == "n1",
                epoch: Some(1),
                master: Some("n1".into()),
            })
            .collect()
    }

    fn log_paths(&self, _node: &NodeSpec) -> Vec<String> {
        Vec::new()
    }

    fn client(&self, node: &NodeSpec) -> NoopClient {
        NoopClient {
            node: node.name.clone(),
        }
    }

    fn pid_file(&self, _node: &NodeSpec) -> String {
        String::new()
    }

    async fn restart_node(&self, _node: &NodeHandle, _all: &[NodeSpec]) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::clients::{run_client, ClientTask};
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;
    use workloads::WorkloadKind;

    #[test]
    fn stagger_spreads_clients_over_one_interval() {
        let i = Duration::from_millis(100);
        let got: Vec<u128> = (0..4).map(|p| stagger(p, 4, i).as_millis()).collect();
        assert_eq!(got, vec![0, 25, 50, 75]);
        // A retired process keeps its slot.
        assert_eq!(stagger(6, 4, i), stagger(2, 4, i));
        assert_eq!(stagger(3, 4, Duration::ZERO), Duration::ZERO);
    }

    fn node() -> NodeSpec {
        NodeSpec {
            name: "n1".into(),
            host: "127.0.0.1".into(),
            port: 22,
            user: None,
            workdir: "/tmp".into(),
        }
    }

    /// The invocations one client recorded: (process, f, key, value).
    async fn schedule(workload: WorkloadKind, seed: u64) -> Vec<(String, String, Value)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = Arc::new(Recorder::create(path.clone(), std::time::Instant::now()).unwrap());
        let t = run_client(ClientTask {
            system: Arc::new(NoopSystem),
            node: node(),
            first_process: 0,
            stride: 1,
            generator: Arc::new(Mutex::new(workload.generator(seed, 1))),
            recorder: recorder.clone(),
            deadline: Instant::now() + Duration::from_secs(60),
            op_timeout: Duration::from_secs(1),
            interval: Duration::ZERO,
            max_ops: 300,
            stop: Stop::default(),
        })
        .await
        .unwrap();
        assert_eq!(t.ok, 300);
        recorder.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        checkers::history::read_jsonl(text.as_bytes())
            .unwrap()
            .into_iter()
            .filter(|o| o.kind == checkers::OpType::Invoke)
            .map(|o| (o.f, o.key.unwrap_or_default(), o.value))
            .collect()
    }

    #[tokio::test]
    async fn same_seed_same_op_schedule_through_the_runner() {
        for w in WorkloadKind::ALL {
            let a = schedule(*w, 11).await;
            assert_eq!(a.len(), 300);
            assert_eq!(a, schedule(*w, 11).await, "{w}");
            assert_ne!(a, schedule(*w, 12).await, "{w}");
        }
    }

    #[tokio::test]
    async fn the_nemesis_waits_for_the_warm_up_and_phases_are_recorded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = Arc::new(Recorder::create(path.clone(), std::time::Instant::now()).unwrap());
        record_phase(&recorder, Phase::WarmUp).unwrap();
        let rec = recorder.clone();
        let nemesis = async move {
            let op = rec.record(Op::new(
                0,
                Process::Nemesis,
                OpType::Info,
                "start-partition",
                Value::Null,
            ))?;
            anyhow::Ok(vec![op.time])
        };
        let warmup = Duration::from_millis(60);
        let started = after_warmup(warmup, recorder.clone(), Stop::default(), nemesis)
            .await
            .unwrap();
        assert!(started[0] >= warmup.as_nanos() as u64, "{started:?}");
        record_phase(&recorder, Phase::Heal).unwrap();
        // Stopped during the warm-up: the nemesis never runs.
        let stop = Stop::default();
        stop.stop();
        let ran = std::sync::atomic::AtomicBool::new(false);
        let never = async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            anyhow::Ok(vec![0u64])
        };
        let none = after_warmup(warmup, recorder.clone(), stop, never)
            .await
            .unwrap();
        assert!(none.is_empty() && !ran.load(std::sync::atomic::Ordering::SeqCst));
        recorder.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ops = checkers::history::read_jsonl(text.as_bytes()).unwrap();
        let fs: Vec<String> = ops
            .iter()
            .map(|o| match o.value.get("phase") {
                Some(p) => format!("phase {}", p.as_str().unwrap()),
                None => o.f.clone(),
            })
            .collect();
        assert_eq!(
            fs,
            [
                "phase warm-up",
                "phase faults",
                "start-partition",
                "phase heal"
            ]
        );
        // Phase markers are not faults to the availability checker.
        let a = checkers::availability::check(&ops, None);
        assert_eq!(a.faults.len(), 1);
    }
}
