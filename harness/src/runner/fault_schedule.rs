//! The fault-schedule planner of the seeded nemesis (`--nemesis partition,clock,...`):
//! which fault comes next — its kind, topology, targets and parameters — drawn from
//! the run's seed and the nodes the runner sees. Pure (no I/O), so the same seed is
//! shown to give the same schedule without a lab; `runner::nemesis` draws through it
//! and executes what it returns.

use crate::config::FaultKind;
use nemesis::{Grudge, Targets, Topology};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::time::Duration;

/// Topologies a schedule draws from (primaries only when the system names one).
pub const SCHEDULE_TOPOLOGIES: &[&str] = &[
    "primaries",
    "isolate",
    "halves",
    "random-halves",
    "majority-minority",
    "majorities-ring",
    "bridge",
];

/// The nemesis' random source for a run with `seed` (its own stream, apart from the
/// clients').
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x6e656d65)
}

/// One fault as planned, before it is executed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub kind: FaultKind,
    /// The history's function without `start-`/`stop-`: `partition`, `clock`, ...
    pub f: &'static str,
    pub description: String,
    /// The partition (empty for other kinds).
    pub grudge: Grudge,
    pub targets: Vec<String>,
    /// Kind-specific parameters (masters seen, clock offset and strobe).
    pub detail: Value,
}

/// The next fault kind of a schedule over `kinds`.
pub fn pick_kind(kinds: &[FaultKind], rng: &mut ChaCha8Rng) -> FaultKind {
    kinds.choose(rng).copied().unwrap_or(FaultKind::Partition)
}

/// Plans one fault of `kind` over `names`, given the nodes that claim master now.
pub fn plan(
    kind: FaultKind,
    names: &[String],
    masters: &[String],
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<FaultPlan> {
    let small = [Targets::One, Targets::Minority];
    let masters_seen = json!({ "masters": masters });
    let (f, description, grudge, targets, detail) = match kind {
        FaultKind::Partition => {
            let mut choices: Vec<&str> = SCHEDULE_TOPOLOGIES.to_vec();
            if masters.is_empty() {
                choices.retain(|t| *t != "primaries");
            }
            if names.len() < 4 {
                choices.retain(|t| *t != "majorities-ring");
            }
            if names.len() < 3 {
                choices.retain(|t| !["bridge", "majority-minority"].contains(t));
            }
            let name = choices.choose(rng).copied().unwrap_or("isolate");
            let plan = Topology::parse(name, None)?.plan(names, masters, rng)?;
            let targets: Vec<String> = plan.grudge.0.keys().cloned().collect();
            let g = plan.grudge;
            ("partition", plan.description, g, targets, masters_seen)
        }
        FaultKind::Clock => {
            let t = small
                .choose(rng)
                .cloned()
                .unwrap_or(Targets::One)
                .resolve(names, masters, rng)?;
            let secs = rng.gen_range(0.25..8.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            let strobe = rng.gen_bool(0.3);
            let offset = nemesis::clock::Offset(secs);
            let d = if strobe {
                format!("strobe {} between +0s and {offset}", t.join(","))
            } else {
                format!("bump {} by {offset}", t.join(","))
            };
            let detail = json!({"offset_s": secs, "strobe": strobe});
            ("clock", d, Grudge::default(), t, detail)
        }
        FaultKind::Kill | FaultKind::Pause => {
            let mut choices = small.to_vec();
            if !masters.is_empty() {
                choices.push(Targets::Primaries);
            }
            let t = choices
                .choose(rng)
                .cloned()
                .unwrap_or(Targets::One)
                .resolve(names, masters, rng)?;
            let f = if kind == FaultKind::Kill {
                "kill"
            } else {
                "pause"
            };
            let d = format!("{f} {}", t.join(","));
            (f, d, Grudge::default(), t, masters_seen)
        }
        FaultKind::Packet => {
            let t = small
                .choose(rng)
                .cloned()
                .unwrap_or(Targets::One)
                .resolve(names, masters, rng)?;
            let d = format!("packet faults from {}", t.join(","));
            ("packet", d, Grudge::default(), t, Value::Null)
        }
    };
    Ok(FaultPlan {
        kind,
        f,
        description,
        grudge,
        targets,
        detail,
    })
}

/// One fault of a planned schedule, at its nominal time.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// When it starts, from the start of the fault phase, if applying and undoing
    /// faults took no time (the runner waits half an interval, holds the fault one
    /// interval, undoes it, repeats; real starts trail by the commands' latency,
    /// which the history records).
    pub at: Duration,
    pub hold: Duration,
    pub fault: FaultPlan,
}

/// The whole schedule a run with `seed` draws over `kinds` and `names` in a fault
/// phase of `phase`, with `masters` claiming master throughout (the runner asks the
/// system before each fault, so a failover changes what later faults aim at).
pub fn schedule(
    seed: u64,
    kinds: &[FaultKind],
    names: &[String],
    masters: &[String],
    interval: Duration,
    phase: Duration,
) -> anyhow::Result<Vec<Planned>> {
    let mut rng = rng(seed);
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    // The runner stops drawing faults within a second of the end, and always
    // advances at least a little, so the count is bounded.
    let gap = (interval / 2).max(Duration::from_millis(1));
    loop {
        t += gap;
        if t + Duration::from_secs(1) >= phase {
            return Ok(out);
        }
        let kind = pick_kind(kinds, &mut rng);
        let fault = plan(kind, names, masters, &mut rng)?;
        let hold = interval.min(phase - t);
        out.push(Planned { at: t, hold, fault });
        t += hold;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn the_same_seed_plans_the_same_faults_and_another_seed_does_not() {
        let kinds = FaultKind::ALL.iter().map(|(_, k)| *k).collect::<Vec<_>>();
        let (five, master) = (names(5), vec!["n1".to_string()]);
        let plan = |seed| {
            schedule(
                seed,
                &kinds,
                &five,
                &master,
                Duration::from_secs(10),
                Duration::from_secs(600),
            )
            .unwrap()
        };
        let a = plan(7);
        // Starts at 5 s, then every 15 s (hold 10 s, recover 5 s) while a second is left.
        assert_eq!(a.len(), 40);
        assert_eq!(a[39].at, Duration::from_secs(590));
        assert_eq!(a, plan(7));
        let b = plan(8);
        assert_ne!(a, b);
        // The difference is in what is drawn, not only somewhere deep: kinds,
        // targets and topologies all vary between seeds.
        let kinds_of = |s: &[Planned]| s.iter().map(|p| p.fault.kind).collect::<Vec<_>>();
        assert_ne!(kinds_of(&a), kinds_of(&b));
        let descs = |s: &[Planned]| {
            s.iter()
                .map(|p| p.fault.description.clone())
                .collect::<Vec<_>>()
        };
        assert_ne!(descs(&a), descs(&b));
        // Times relative to the start depend on interval and phase, never on the seed.
        let times = |s: &[Planned]| s.iter().map(|p| (p.at, p.hold)).collect::<Vec<_>>();
        assert_eq!(times(&a), times(&b));
        assert_eq!(
            (a[0].at, a[1].at),
            (Duration::from_secs(5), Duration::from_secs(20))
        );
        // Every kind of the set shows up over a long schedule, and each fault is
        // well-formed: partitions carry a grudge over the nodes, others targets.
        for k in &kinds {
            assert!(a.iter().any(|p| p.fault.kind == *k), "{k:?} never drawn");
        }
        for p in &a {
            match p.fault.kind {
                FaultKind::Partition => assert!(!p.fault.grudge.0.is_empty(), "{p:?}"),
                _ => assert!(!p.fault.targets.is_empty(), "{p:?}"),
            }
            assert!(p.fault.targets.iter().all(|t| five.contains(t)), "{p:?}");
        }
    }

    #[test]
    fn plans_fit_the_cluster() {
        let three = names(3);
        let mut rng = rng(1);
        for _ in 0..200 {
            let p = plan(FaultKind::Partition, &three, &[], &mut rng).unwrap();
            assert!(
                !p.description.contains("ring") && !p.description.contains("primar"),
                "{}",
                p.description
            );
        }
        let kinds = [FaultKind::Clock];
        let s = schedule(
            3,
            &kinds,
            &three,
            &[],
            Duration::from_secs(4),
            Duration::from_secs(30),
        )
        .unwrap();
        for p in &s {
            let secs = p.fault.detail["offset_s"].as_f64().unwrap();
            assert!((0.25..8.0).contains(&secs.abs()), "{secs}");
            assert_eq!(p.fault.f, "clock");
        }
        // A phase too short for any fault plans none.
        assert!(schedule(
            3,
            &kinds,
            &three,
            &[],
            Duration::from_secs(4),
            Duration::from_secs(2)
        )
        .unwrap()
        .is_empty());
    }
}
