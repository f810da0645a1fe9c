//! Scheduling of client operations: the even staggering of clients under `--rate`
//! (client `i` of `n` starts `i/n` of an interval late, so ops are spread evenly
//! instead of arriving in bursts), and [`NoopSystem`], an in-process system that
//! accepts every op at once — used to show that the same seed gives the same op
//! schedule and to benchmark the runner and recorder without a network.

use crate::nodes::NodeSpec;
use crate::systems::{NodeHandle, Outcome, RoleView, System, SystemClient};
use serde_json::{json, Map, Value};
use std::time::Duration;
use workloads::{Invocation, OpFn};

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
    use crate::runner::stop::Stop;
    use crate::store::Recorder;
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
}
