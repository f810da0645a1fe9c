//! Leader observation: a separate group of processes, one per node, asks its node
//! for its role every few milliseconds (`role` ops); every write already records the
//! master that accepted it. This module yields those invocations and judges the
//! result with the dual-master checker.

use crate::{CheckerResult, Generator, Invocation, OpFn};
use checkers::scan::OpView;
use checkers::{dual_master, Op, OpType};
use serde_json::Value;

/// Always asks for the role.
pub struct RoleGenerator;

impl Generator for RoleGenerator {
    fn next(&mut self, _process: u64) -> Invocation {
        Invocation {
            f: OpFn::Role,
            key: None,
            value: Value::Null,
            is_final: false,
        }
    }

    fn final_reads(&self) -> Vec<Invocation> {
        Vec::new()
    }
}

/// Role observations of the history: (how many, how many from a masterless system).
/// A masterless system (a ring where every node accepts writes) marks each of its
/// role answers `"masterless": true`.
fn masterless_observations(history: &[Op]) -> (usize, usize) {
    let mut count = RoleCount::default();
    for op in history {
        count.observe(&OpView::of(op));
    }
    (count.observed, count.masterless)
}

/// Counts role observations and those from a masterless system, one entry at a time.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoleCount {
    pub observed: usize,
    pub masterless: usize,
}

impl RoleCount {
    pub fn observe(&mut self, op: &OpView<'_>) {
        if op.f == "role" && op.kind == OpType::Ok {
            self.observed += 1;
            let m = op.value.get("masterless").map(|v| v.to_value()) == Some(Value::Bool(true));
            self.masterless += usize::from(m);
        }
    }
}

/// Runs the dual-master checker and summarises it. For a masterless system the
/// question does not apply: the result is valid, says "not applicable" and carries
/// `"applicable": false` in its details.
pub fn analyse(history: &[Op]) -> CheckerResult {
    let (observed, masterless) = masterless_observations(history);
    result(
        RoleCount {
            observed,
            masterless,
        },
        || dual_master::check(history),
    )
}

/// The dual-master verdict as a [`CheckerResult`]: "not applicable" when every role
/// observation in `roles` came from a masterless system, else `report()` summarised.
pub fn result(roles: RoleCount, report: impl FnOnce() -> dual_master::Report) -> CheckerResult {
    let RoleCount {
        observed,
        masterless,
    } = roles;
    if observed > 0 && masterless == observed {
        return CheckerResult {
            checker: "dual-master",
            valid: checkers::Validity::Valid,
            summary: format!(
                "not applicable: the system is masterless (every node accepts writes by design); {observed} role observations"
            ),
            details: serde_json::json!({
                "applicable": false,
                "reason": "masterless system",
                "observations": observed,
                "intervals": [],
            }),
        };
    }
    let r = report();
    let lost: usize = r
        .intervals
        .iter()
        .flat_map(|i| &i.masters)
        .map(|s| s.writes_lost)
        .sum();
    let mut summary = format!(
        "{} dual-master intervals ({} same term, {} both accepted writes, {} only claimed; {:.1}s in all), {} writes accepted meanwhile were lost; {} role observations",
        r.intervals.len(),
        r.same_term,
        r.both_accepted_writes,
        r.claimed,
        r.dual_ns as f64 / 1e9,
        lost,
        r.observations
    );
    for s in &r.same_epoch_acks {
        summary.push_str(&format!(
            "; epoch {} acknowledged writes on {}",
            s.epoch,
            s.nodes.join(" and ")
        ));
    }
    if r.stale_acks > 0 {
        let lost = r.stale_ack_examples.iter().filter(|s| s.lost).count();
        let first = &r.stale_ack_examples[0];
        summary.push_str(&format!(
            "; {} writes acknowledged by a master of an older epoch while another was master throughout (first: history index {}, {} in epoch {} while {} held epoch {}; {lost} of the {} listed lost)",
            r.stale_acks,
            first.write.index,
            first.node,
            first.write.epoch.unwrap_or_default(),
            first.master,
            first.master_epoch,
            r.stale_ack_examples.len()
        ));
    }
    CheckerResult {
        checker: "dual-master",
        valid: r.valid,
        summary,
        details: serde_json::to_value(&r).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkers::{OpType, Process, Validity};
    use serde_json::json;

    #[test]
    fn summary_counts_kinds() {
        let mut h = Vec::new();
        for (t, node, epoch) in [(0, "n1", 1), (5, "n2", 2), (10, "n1", 1), (15, "n2", 2)] {
            let mut op = Op::new(
                t,
                Process::Client(9),
                OpType::Ok,
                "role",
                json!({"role": "master", "epoch": epoch}),
            );
            op.node = Some(node.into());
            h.push(op);
        }
        let r = analyse(&h);
        assert_eq!(r.valid, Validity::Valid, "only claimed");
        assert!(
            r.summary.starts_with(
                "1 dual-master intervals (0 same term, 0 both accepted writes, 1 only claimed"
            ),
            "{}",
            r.summary
        );
        assert_eq!(RoleGenerator.next(3).f.as_str(), "role");
    }

    #[test]
    fn stale_acknowledgements_make_it_invalid_and_are_summarised() {
        let mut h = Vec::new();
        let mut add = |t: u64, p: u64, v: i64, node: &str, epoch: u64| {
            let mut inv = Op::new(t, Process::Client(p), OpType::Invoke, "add", json!(v));
            inv.key = Some("set".into());
            let mut ok = Op::new(t + 1, Process::Client(p), OpType::Ok, "add", json!(v));
            ok.key = Some("set".into());
            ok.extra.insert("acked_by".into(), json!(node));
            ok.extra.insert("epoch".into(), json!(epoch));
            h.extend([inv, ok]);
        };
        add(10, 1, 1, "n2", 2);
        add(20, 2, 2, "n1", 1);
        add(30, 1, 3, "n2", 2);
        h.push(obs(0, "n2", json!({"role": "master", "epoch": 2})));
        for (i, o) in h.iter_mut().enumerate() {
            o.index = i as u64;
        }
        let r = analyse(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(
            r.summary.contains("; 1 writes acknowledged by a master of an older epoch while another was master throughout (first: history index 3, n1 in epoch 1 while n2 held epoch 2"),
            "{}",
            r.summary
        );
        assert_eq!(r.details["stale_acks"], 1);
    }

    fn obs(t: u64, node: &str, value: Value) -> Op {
        let mut op = Op::new(t, Process::Client(9), OpType::Ok, "role", value);
        op.node = Some(node.into());
        op
    }

    #[test]
    fn masterless_systems_are_not_applicable_and_mixed_histories_are_judged() {
        let peer = || json!({"role": "peer", "epoch": 0, "masterless": true});
        let h = vec![obs(0, "n1", peer()), obs(1, "n2", peer())];
        let r = analyse(&h);
        assert_eq!(r.valid, Validity::Valid);
        assert!(r.summary.starts_with("not applicable"), "{}", r.summary);
        assert_eq!(r.details["applicable"], false);
        // One real master claim beside them: the checker runs (two claims at once).
        let h = vec![
            obs(0, "n1", json!({"role": "master", "epoch": 1})),
            obs(1, "n2", json!({"role": "master", "epoch": 2})),
            obs(2, "n3", peer()),
            obs(3, "n1", json!({"role": "master", "epoch": 1})),
            obs(4, "n2", json!({"role": "master", "epoch": 2})),
        ];
        let r = analyse(&h);
        assert!(!r.summary.starts_with("not applicable"), "{}", r.summary);
        assert!(
            r.summary.starts_with("1 dual-master intervals"),
            "{}",
            r.summary
        );
        // No role observations at all: judged (and empty), not waved through.
        assert!(!analyse(&[]).summary.starts_with("not applicable"));
    }
}
