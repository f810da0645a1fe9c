//! Availability of every workload under faults: wraps the availability checker
//! (time to the first write after each fault, to steady throughput, failed and
//! indeterminate shares, latency percentiles) as a [`CheckerResult`].

use crate::CheckerResult;
use checkers::{availability, Op};
use serde_json::Value;
use std::time::Duration;

fn secs(ns: Option<u64>) -> String {
    ns.map_or_else(|| "never".into(), |n| format!("{:.2}s", n as f64 / 1e9))
}

/// Runs the availability checker; `budget` makes it a verdict.
pub fn analyse(history: &[Op], budget: Option<Duration>) -> CheckerResult {
    result(availability::check(history, budget_ns(budget)), budget)
}

/// The budget as the checker takes it.
pub fn budget_ns(budget: Option<Duration>) -> Option<u64> {
    budget.map(|b| b.as_nanos() as u64)
}

/// The availability checker's report (made with `budget`) as a [`CheckerResult`].
pub fn result(r: availability::Report, budget: Option<Duration>) -> CheckerResult {
    let (ops, bad) = r.faults.iter().fold((0, 0), |(o, b), f| {
        (o + f.ops, b + f.failed + f.indeterminate)
    });
    let mut summary = format!(
        "{} faults; worst time to first write after a fault {}; p99 latency {}",
        r.faults.len(),
        if r.faults.is_empty() {
            "-".into()
        } else if r.faults.iter().any(|f| f.first_write_ns.is_none()) {
            "never".into()
        } else {
            secs(r.worst_recovery_ns)
        },
        secs(r.latency_p99_ns)
    );
    if ops > 0 {
        summary.push_str(&format!(
            "; {:.0}% of ops during faults failed or indeterminate",
            100.0 * bad as f64 / ops as f64
        ));
    }
    if let Some(b) = budget {
        let over = r
            .faults
            .iter()
            .filter(|f| f.within_budget == Some(false))
            .count();
        summary.push_str(&format!("; {over} over the {:.2}s budget", b.as_secs_f64()));
    }
    CheckerResult {
        checker: "availability",
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
    fn budget_changes_the_verdict_and_summary_names_it() {
        let ms = 1_000_000;
        let mut h = vec![Op::new(
            0,
            Process::Nemesis,
            OpType::Info,
            "start-partition",
            Value::Null,
        )];
        h.push(Op::new(
            ms,
            Process::Client(1),
            OpType::Invoke,
            "add",
            json!(1),
        ));
        h.push(Op::new(
            900 * ms,
            Process::Client(1),
            OpType::Ok,
            "add",
            json!(1),
        ));
        h.push(Op::new(
            950 * ms,
            Process::Nemesis,
            OpType::Info,
            "stop-partition",
            Value::Null,
        ));
        let none = analyse(&h, None);
        assert_eq!(none.valid, Validity::Valid);
        assert!(
            none.summary.contains("first write after a fault 0.90s"),
            "{}",
            none.summary
        );
        let tight = analyse(&h, Some(Duration::from_millis(500)));
        assert_eq!(tight.valid, Validity::Invalid);
        assert!(
            tight.summary.ends_with("1 over the 0.50s budget"),
            "{}",
            tight.summary
        );
    }
}
