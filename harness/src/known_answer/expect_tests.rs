//! Tests of the expectations: the README table parses and covers every harness mode ×
//! fault, cell texts round-trip, catching and surprising, and availability windows.

use super::*;
use checkers::Process;
use serde_json::json;

fn r(text: &str) -> Results {
    Results::parse(text).unwrap()
}

#[test]
fn the_readme_table_covers_every_mode_and_fault() {
    let table = parse_readme(ZOO_README).unwrap();
    for mode in crate::systems::zoo::MODES {
        for fault in TargetedFault::ALL {
            let e = expected(mode, fault).unwrap();
            // Masterless modes are exactly the rows without a dual-master answer.
            let masterless = crate::systems::zoo::MASTERLESS.contains(mode);
            assert_eq!(e.dual.is_none(), masterless, "{mode} {}", fault.name());
        }
    }
    assert_eq!(
        table.len(),
        crate::systems::zoo::MODES.len() * TargetedFault::ALL.len(),
        "one row per harness mode, one column per fault"
    );
    assert!(expected("paxos", TargetedFault::KillMaster).is_err());
}

#[test]
fn cell_texts_round_trip_and_bad_ones_say_why() {
    for t in [
        "L yes, D yes, Lin no, U no",
        "L no, D n/a, Lin yes, U brief",
    ] {
        assert_eq!(r(t).to_string(), t);
    }
    assert!(Results::parse("L yes, D yes, Lin no")
        .unwrap_err()
        .contains("missing U"));
    assert!(Results::parse("L maybe, D yes, Lin no, U no")
        .unwrap_err()
        .contains("maybe"));
    assert!(Results::parse("D yes, L yes, Lin no, U no")
        .unwrap_err()
        .contains("expected L"));
    assert!(Results::parse("L no, D no, Lin yes, U soon")
        .unwrap_err()
        .contains("soon"));
    let bad = "## Known-answer matrix\n\n| mode | kill-master |\n|---|---|\n| `raft` | L no |\n";
    assert!(parse_readme(bad).is_err());
    let col = "## Known-answer matrix\n\n| mode | smash |\n|---|---|\n";
    assert!(parse_readme(col).unwrap_err().contains("smash"));
}

#[test]
fn caught_means_every_expected_anomaly_and_surprises_are_unexpected_ones() {
    let flawed = r("L yes, D yes, Lin no, U no");
    assert!(r("L yes, D yes, Lin no, U brief").catches(&flawed));
    assert!(!r("L yes, D no, Lin no, U no").catches(&flawed));
    let sound = r("L no, D no, Lin yes, U brief");
    assert!(!sound.anomalous());
    assert!(r("L yes, D no, Lin no, U brief").surprises(&sound));
    assert!(!r("L no, D no, Lin yes, U yes").surprises(&sound));
    let ring = r("L yes, D n/a, Lin no, U no");
    assert!(r("L yes, D n/a, Lin no, U no").catches(&ring));
    assert!(!r("L yes, D n/a, Lin yes, U no").catches(&ring));
}

fn op(time_ms: u64, process: Process, kind: OpType, f: &str) -> Op {
    Op::new(time_ms * 1_000_000, process, kind, f, json!(1))
}

fn history(acks_ms: &[u64], fault: (u64, u64)) -> Vec<Op> {
    let mut h = vec![
        op(fault.0, Process::Nemesis, OpType::Invoke, "start-kill"),
        // The kill returns later; the window starts at its invocation.
        op(fault.0 + 1500, Process::Nemesis, OpType::Info, "start-kill"),
        op(fault.1 - 20, Process::Nemesis, OpType::Invoke, "stop-kill"),
        op(fault.1, Process::Nemesis, OpType::Info, "stop-kill"),
    ];
    for t in acks_ms {
        h.push(op(*t, Process::Client(0), OpType::Ok, "add"));
    }
    // Reads and failed writes never count as acknowledged writes.
    h.push(op(fault.1 - 10, Process::Client(1), OpType::Ok, "read"));
    h.push(op(fault.1 - 10, Process::Client(1), OpType::Fail, "add"));
    h.sort_by_key(|o| o.time);
    h
}

#[test]
fn availability_is_the_longest_write_gap_inside_each_fault() {
    let steady: Vec<u64> = (1000..=6000).step_by(100).collect();
    assert_eq!(unavailability(&history(&steady, (1000, 6000))), Avail::No);
    let mut resumed: Vec<u64> = (1000..=2000).step_by(100).collect();
    resumed.extend((3500..=6000).step_by(100));
    assert_eq!(
        unavailability(&history(&resumed, (1000, 6000))),
        Avail::Brief
    );
    let stopped: Vec<u64> = (1000..=3000).step_by(100).collect();
    assert_eq!(unavailability(&history(&stopped, (1000, 6000))), Avail::Yes);
    assert_eq!(unavailability(&history(&[], (1000, 6000))), Avail::Yes);
    // Writes acknowledged while the heal runs (after stop-* is invoked) were
    // unblocked by it: still unavailable until the end.
    let mut healed = stopped.clone();
    healed.extend([5985, 5990, 5995]);
    assert_eq!(unavailability(&history(&healed, (1000, 6000))), Avail::Yes);
    // No fault, no unavailability.
    assert_eq!(unavailability(&[]), Avail::No);
}
