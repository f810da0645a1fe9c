//! Client processes: one tokio task per logical process, bound to one node, doing
//! one operation at a time and recording its invocation and completion. An `info`
//! outcome retires the process id (the next op uses a new one, as in Jepsen).

use super::stop::Stop;
use crate::nodes::NodeSpec;
use crate::store::Recorder;
use crate::systems::{FailKind, Outcome, System, SystemClient};
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

/// The completion line for `outcome` (taken whole: its value and fields move into
/// the line instead of being copied, once per op).
pub fn complete_op(process: u64, node: &str, inv: &Invocation, outcome: Outcome) -> Op {
    let (kind, value, mut extra) = match outcome {
        Outcome::Ok { value, extra } => (OpType::Ok, value, extra),
        Outcome::Fail { error, kind } => {
            let mut extra = error_map(error);
            extra.insert("fail_kind".into(), json!(kind.as_str()));
            (OpType::Fail, inv.value.clone(), extra)
        }
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

fn error_map(error: String) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("error".into(), Value::String(error));
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

/// The least pause after an op the system could not serve ([`FailKind::Unavailable`]).
pub const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(50);

/// How long a client waits after `outcome` before its next op: the rate's interval,
/// and at least [`UNAVAILABLE_BACKOFF`] after a system that could not serve the op
/// (it answers at once, and a node that is down must not be hammered in a tight
/// loop). A declined op ([`FailKind::Rejected`], e.g. a `cas` that found another
/// value) is a normal completed op and waits no longer than an `ok`.
pub fn pause_after(outcome: &Outcome, interval: Duration) -> Duration {
    match outcome {
        Outcome::Fail {
            kind: FailKind::Unavailable,
            ..
        } => interval.max(UNAVAILABLE_BACKOFF),
        Outcome::Fail {
            kind: FailKind::Rejected,
            ..
        }
        | Outcome::Ok { .. }
        | Outcome::Info { .. } => interval,
    }
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
        tally.add(&outcome);
        let pause = pause_after(&outcome, t.interval);
        let retire = matches!(outcome, Outcome::Info { .. });
        t.recorder
            .record(complete_op(process, &t.node.name, &inv, outcome))?;
        done += 1;
        if retire {
            process += t.stride;
            client = t.system.client(&t.node);
        }
        if !pause.is_zero() {
            t.stop.sleep(pause).await;
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
            let (done, retire) = (
                matches!(outcome, Outcome::Ok { .. }),
                matches!(outcome, Outcome::Info { .. }),
            );
            recorder.record(complete_op(process, &node.name, &inv, outcome))?;
            if done {
                ok = true;
            } else if retire {
                process += stride;
                client = system.client(&node);
            } else {
                tokio::time::sleep(Duration::from_millis(250)).await;
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
            Outcome::Info {
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
        let f = complete_op(1, "n1", &add, Outcome::unavailable("no master"));
        assert_eq!((f.kind, f.value.clone()), (OpType::Fail, json!(3)));
        assert_eq!(f.extra["fail_kind"], json!("unavailable"));
        assert!(!f.extra.contains_key("final"));
        let r = complete_op(1, "n1", &add, Outcome::rejected("cas: another value"));
        assert_eq!(
            (r.kind, &r.extra["fail_kind"], &r.extra["error"]),
            (
                OpType::Fail,
                &json!("rejected"),
                &json!("cas: another value")
            )
        );
    }

    /// A system whose every op fails with one kind.
    struct Failing(FailKind);

    struct FailingClient(FailKind);

    impl SystemClient for FailingClient {
        async fn invoke(&mut self, _inv: &Invocation, _timeout: Duration) -> Outcome {
            Outcome::Fail {
                error: "declined".into(),
                kind: self.0,
            }
        }
    }

    impl System for Failing {
        type Client = FailingClient;
        fn describe(&self) -> String {
            "failing".into()
        }
        async fn setup_node(
            &self,
            _: &crate::systems::NodeHandle,
            _: &[NodeSpec],
        ) -> anyhow::Result<()> {
            Ok(())
        }
        async fn await_ready(&self, _: &[NodeSpec], _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        async fn teardown_node(&self, _: &crate::systems::NodeHandle) -> anyhow::Result<()> {
            Ok(())
        }
        async fn roles(&self, _: &[NodeSpec], _: Duration) -> Vec<crate::systems::RoleView> {
            Vec::new()
        }
        fn log_paths(&self, _: &NodeSpec) -> Vec<String> {
            Vec::new()
        }
        fn client(&self, _: &NodeSpec) -> FailingClient {
            FailingClient(self.0)
        }
        fn pid_file(&self, _: &NodeSpec) -> String {
            String::new()
        }
        async fn restart_node(
            &self,
            _: &crate::systems::NodeHandle,
            _: &[NodeSpec],
        ) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_unavailability_backs_off() {
        let ok = Outcome::Ok {
            value: Value::Null,
            extra: Default::default(),
        };
        let info = Outcome::Info {
            error: "timeout".into(),
        };
        let (rejected, unavailable) = (Outcome::rejected("cas"), Outcome::unavailable("down"));
        let ms = Duration::from_millis;
        for (o, at_full_speed, at_200ms) in [
            (&ok, ms(0), ms(200)),
            (&info, ms(0), ms(200)),
            (&rejected, ms(0), ms(200)),
            (&unavailable, UNAVAILABLE_BACKOFF, ms(200)),
        ] {
            assert_eq!(pause_after(o, Duration::ZERO), at_full_speed, "{o:?}");
            assert_eq!(pause_after(o, ms(200)), at_200ms, "{o:?}");
        }
        assert_eq!(pause_after(&unavailable, ms(10)), UNAVAILABLE_BACKOFF);
    }

    /// Runs 20 ops that all fail with `kind` (no rate limit); returns how long they
    /// took, the tally and the recorded `fail_kind`s.
    async fn twenty_failures(kind: FailKind) -> (Duration, Tally, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let recorder = Arc::new(Recorder::create(path.clone(), std::time::Instant::now()).unwrap());
        let generator: Box<dyn Generator> = Box::new(workloads::leader::RoleGenerator);
        let start = Instant::now();
        let tally = run_client(ClientTask {
            system: Arc::new(Failing(kind)),
            node: NodeSpec {
                name: "n1".into(),
                host: "127.0.0.1".into(),
                port: 22,
                user: None,
                workdir: "/tmp".into(),
            },
            first_process: 0,
            stride: 1,
            generator: Arc::new(Mutex::new(generator)),
            recorder: recorder.clone(),
            deadline: start + Duration::from_secs(3600),
            op_timeout: Duration::from_secs(1),
            interval: Duration::ZERO,
            max_ops: 20,
            stop: Stop::default(),
        })
        .await
        .unwrap();
        let took = start.elapsed();
        recorder.flush().unwrap();
        let kinds = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|o| o["type"] == "fail")
            .map(|o| o["fail_kind"].clone())
            .collect();
        (took, tally, kinds)
    }

    #[tokio::test]
    async fn the_client_loop_backs_off_after_unavailability_and_records_the_kind() {
        let (took, tally, kinds) = twenty_failures(FailKind::Unavailable).await;
        assert_eq!((tally.ok, tally.fail, tally.info), (0, 20, 0));
        assert_eq!(kinds, vec![json!("unavailable"); 20]);
        // Twenty back-offs at least (sleeps never end early).
        assert!(took >= UNAVAILABLE_BACKOFF * 20, "{took:?}");
        let (_, tally, kinds) = twenty_failures(FailKind::Rejected).await;
        assert_eq!((tally.ok, tally.fail, tally.info), (0, 20, 0));
        assert_eq!(kinds, vec![json!("rejected"); 20]);
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
