//! Client processes: one tokio task per logical process, bound to one node, doing
//! one operation at a time and recording its invocation and completion. An `info`
//! outcome retires the process id (the next op uses a new one, as in Jepsen).

use super::stop::Stop;
use crate::nodes::NodeSpec;
use crate::store::Recorder;
use crate::systems::{Outcome, System, SystemClient};
use checkers::{Op, OpType, Process};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use workloads::{Generator, Invocation};

/// Records the invocation of `inv` by `process` on `node`.
pub fn invoke_op(process: u64, node: &str, inv: &Invocation) -> Op {
    let mut op = Op::new(
        0,
        Process::Client(process),
        OpType::Invoke,
        inv.f.as_str(),
        inv.value.clone(),
    );
    op.key = inv.key.clone();
    op.node = Some(node.to_string());
    if inv.is_final {
        op.extra.insert("final".into(), json!(true));
    }
    op
}

/// The completion line for `outcome`.
pub fn complete_op(process: u64, node: &str, inv: &Invocation, outcome: &Outcome) -> Op {
    let (kind, value, mut extra) = match outcome {
        Outcome::Ok { value, extra } => (OpType::Ok, value.clone(), extra.clone()),
        Outcome::Fail { error } => (OpType::Fail, inv.value.clone(), error_map(error)),
        Outcome::Info { error } => (OpType::Info, inv.value.clone(), error_map(error)),
    };
    if inv.is_final {
        extra.insert("final".into(), json!(true));
    }
    let mut op = Op::new(0, Process::Client(process), kind, inv.f.as_str(), value);
    op.key = inv.key.clone();
    op.node = Some(node.to_string());
    op.extra = extra;
    op
}

fn error_map(error: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("error".into(), json!(error));
    m
}

/// Counts of a client's outcomes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Ok { .. } => self.ok += 1,
            Outcome::Fail { .. } => self.fail += 1,
            Outcome::Info { .. } => self.info += 1,
        }
    }
}

/// Everything one client task needs.
pub struct ClientTask<S: System> {
    pub system: Arc<S>,
    pub node: NodeSpec,
    pub first_process: u64,
    /// Process ids advance by this much when one is retired (the concurrency).
    pub stride: u64,
    pub generator: Arc<Mutex<Box<dyn Generator>>>,
    pub recorder: Arc<Recorder>,
    pub deadline: Instant,
    pub op_timeout: Duration,
    /// Pause between this client's ops (from `--rate`).
    pub interval: Duration,
    /// This client's share of the run's op cap.
    pub max_ops: u64,
    pub stop: Stop,
}

/// Runs one client until the deadline, the stop flag or the op cap.
pub async fn run_client<S: System>(t: ClientTask<S>) -> anyhow::Result<Tally> {
    let mut process = t.first_process;
    let mut client = t.system.client(&t.node);
    let mut tally = Tally::default();
    let mut done = 0u64;
    // Under a rate limit, clients start evenly spread over one interval.
    t.stop
        .sleep(super::generator::stagger(
            t.first_process,
            t.stride,
            t.interval,
        ))
        .await;
    while Instant::now() < t.deadline && !t.stop.is_stopped() && done < t.max_ops {
        let inv = {
            let mut g = t.generator.lock().unwrap_or_else(|p| p.into_inner());
            g.next(process)
        };
        t.recorder.record(invoke_op(process, &t.node.name, &inv))?;
        let outcome = client.invoke(&inv, t.op_timeout).await;
        t.recorder
            .record(complete_op(process, &t.node.name, &inv, &outcome))?;
        tally.add(&outcome);
        done += 1;
        match &outcome {
            Outcome::Info { .. } => {
                process += t.stride;
                client = t.system.client(&t.node);
            }
            // A refused or failed op returns at once: back off a little so a node
            // that is down is not hammered in a tight loop.
            Outcome::Fail { .. } => {
                t.stop
                    .sleep(t.interval.max(Duration::from_millis(50)))
                    .await;
                continue;
            }
            Outcome::Ok { .. } => {}
        }
        if !t.interval.is_zero() {
            t.stop.sleep(t.interval).await;
        }
    }
    Ok(tally)
}

/// Process ids of the leader observers start here, clear of clients and final reads.
pub const ROLE_PROCESS_BASE: u64 = 2_000_000;

/// How often each node is asked for its role.
pub const ROLE_INTERVAL: Duration = Duration::from_millis(20);

/// Starts the leader observation group: one process per node asking that node for
/// its role every [`ROLE_INTERVAL`] (`role` ops), until `stop` or `deadline`.
pub fn spawn_role_observers<S: System>(
    system: &Arc<S>,
    nodes: &[NodeSpec],
    recorder: &Arc<Recorder>,
    deadline: Instant,
    op_timeout: Duration,
    stop: &Stop,
) -> tokio::task::JoinSet<anyhow::Result<Tally>> {
    let mut set = tokio::task::JoinSet::new();
    let span = deadline.saturating_duration_since(Instant::now());
    let max_ops = (span.as_millis() / ROLE_INTERVAL.as_millis()) as u64 + 1;
    for (i, node) in nodes.iter().enumerate() {
        let generator: Box<dyn Generator> = Box::new(workloads::leader::RoleGenerator);
        set.spawn(run_client(ClientTask {
            system: system.clone(),
            node: node.clone(),
            first_process: ROLE_PROCESS_BASE + i as u64,
            stride: nodes.len() as u64,
            generator: Arc::new(Mutex::new(generator)),
            recorder: recorder.clone(),
            deadline,
            op_timeout: op_timeout.min(Duration::from_secs(1)),
            interval: ROLE_INTERVAL,
            max_ops,
            stop: stop.clone(),
        }));
    }
    set
}

/// One node's final reads.
pub struct FinalReads<S: System> {
    pub system: Arc<S>,
    pub node: NodeSpec,
    pub first_process: u64,
    pub stride: u64,
    pub reads: Vec<Invocation>,
    pub recorder: Arc<Recorder>,
    pub op_timeout: Duration,
    /// How long to keep retrying until one read succeeds.
    pub budget: Duration,
}

/// Performs one node's final reads, each retried (bounded by the budget) until it
/// succeeds, every attempt recorded; returns whether all succeeded.
pub async fn final_reads<S: System>(t: FinalReads<S>) -> anyhow::Result<bool> {
    let FinalReads {
        system,
        node,
        first_process,
        stride,
        reads,
        recorder,
        op_timeout,
        budget,
    } = t;
    let mut process = first_process;
    let until = Instant::now() + budget;
    let mut client = system.client(&node);
    let mut all_ok = true;
    for inv in reads {
        let mut ok = false;
        while !ok && Instant::now() < until {
            recorder.record(invoke_op(process, &node.name, &inv))?;
            let outcome = client.invoke(&inv, op_timeout).await;
            recorder.record(complete_op(process, &node.name, &inv, &outcome))?;
            match outcome {
                Outcome::Ok { .. } => ok = true,
                Outcome::Info { .. } => {
                    process += stride;
                    client = system.client(&node);
                }
                Outcome::Fail { .. } => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        all_ok &= ok;
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::OpFn;

    #[test]
    fn ops_carry_key_node_final_and_errors() {
        let inv = Invocation {
            f: OpFn::Read,
            key: Some("set".into()),
            value: Value::Null,
            is_final: true,
        };
        let i = invoke_op(7, "n2", &inv);
        assert_eq!(
            (i.kind, i.key.as_deref(), i.node.as_deref()),
            (OpType::Invoke, Some("set"), Some("n2"))
        );
        assert_eq!(i.extra["final"], json!(true));
        let c = complete_op(
            7,
            "n2",
            &inv,
            &Outcome::Info {
                error: "timeout".into(),
            },
        );
        assert_eq!(c.kind, OpType::Info);
        assert_eq!(c.extra["error"], json!("timeout"));
        let add = Invocation {
            f: OpFn::Add,
            key: None,
            value: json!(3),
            is_final: false,
        };
        let f = complete_op(
            1,
            "n1",
            &add,
            &Outcome::Fail {
                error: "no master".into(),
            },
        );
        assert_eq!((f.kind, f.value.clone()), (OpType::Fail, json!(3)));
        assert!(!f.extra.contains_key("final"));
    }

    #[tokio::test]
    async fn stop_flag_cuts_sleep_short() {
        let s = Stop::default();
        let s2 = s.clone();
        let t = std::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s2.stop();
        });
        assert!(s.sleep(Duration::from_secs(10)).await);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
