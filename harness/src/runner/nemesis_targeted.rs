//! The targeted nemeses (`isolate-master`, `majorities-ring`, `clock-skew-master`,
//! `kill-master`, `pause-master`): one fault aimed at the node the system reports as
//! master — a seeded node when none is (masterless systems) — recorded like every
//! other fault and undone by [`NemesisTask::undo`]. These are the fixed scenarios of
//! the known-answer matrix, so every choice is either fixed or drawn from the seed.

use super::{Applied, NemesisTask, Started, Undo};
use crate::config::{TargetedFault, TargetedFault as T};
use crate::fault::exec;
use crate::fault::process::{self, ProcessFault};
use crate::systems::System;
use checkers::OpType;
use nemesis::clock::Offset;
use nemesis::{Grudge, Topology};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// The partition of `fault` around `target` over `names`: the target cut off from
/// all; or a majorities ring — with 3 nodes, the target loses only the lowest-named
/// other node (which then sees the third node, as the target does: each side keeps a
/// majority), with more, Jepsen's ring in a seeded order.
fn ring_or_isolate(
    fault: TargetedFault,
    target: &str,
    names: &[String],
    masters: &[String],
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<(String, Grudge)> {
    if fault == T::IsolateMaster {
        let plan = Topology::Isolate {
            node: Some(target.to_string()),
        }
        .plan(names, masters, rng)?;
        return Ok((plan.description, plan.grudge));
    }
    if names.len() >= 4 {
        let plan = Topology::MajoritiesRing.plan(names, masters, rng)?;
        return Ok((plan.description, plan.grudge));
    }
    let Some(other) = names.iter().filter(|n| n.as_str() != target).min() else {
        anyhow::bail!("majorities-ring needs at least 2 nodes");
    };
    let mut g = Grudge::default();
    g.cut(target, other);
    g.cut(other, target);
    Ok((format!("majorities-ring of 3: {target} -/- {other}"), g))
}

/// Applies `fault` to the current master (or a seeded node); records its start.
pub(super) async fn apply<S: System>(
    t: &NemesisTask<S>,
    fault: TargetedFault,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Applied> {
    let names = t.names();
    let masters = t.masters().await;
    let target = match masters.first() {
        Some(m) => m.clone(),
        None => names
            .choose(rng)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no nodes to fault"))?,
    };
    let (f, undo) = match fault.kind() {
        crate::config::FaultKind::Clock => ("clock", Undo::Clock),
        crate::config::FaultKind::Kill => ("kill", Undo::Kill),
        crate::config::FaultKind::Pause => ("pause", Undo::Pause),
        _ => ("partition", Undo::Partition),
    };
    let (description, grudge, targets) = match fault {
        T::IsolateMaster | T::MajoritiesRing => {
            let (d, g) = ring_or_isolate(fault, &target, &names, &masters, rng)?;
            let targets: Vec<String> = g.0.keys().cloned().collect();
            (d, g, targets)
        }
        T::ClockSkew => (
            format!("bump {target} by {}", Offset(TargetedFault::CLOCK_SKEW_S)),
            Grudge::default(),
            vec![target.clone()],
        ),
        T::KillMaster | T::PauseMaster => (
            format!("{f} {target}"),
            Grudge::default(),
            vec![target.clone()],
        ),
    };
    let mut value = json!({
        "description": description,
        "targets": targets,
        "detail": {"masters": masters, "targeted": fault.name()},
    });
    if f == "partition" {
        value["topology"] = json!(description);
        value["grudge"] = json!(grudge);
    }
    if fault == T::ClockSkew {
        value["detail"]["offset_s"] = json!(TargetedFault::CLOCK_SKEW_S);
    }
    let start = t.record(OpType::Invoke, &format!("start-{f}"), value.clone())?;
    let errors = match fault {
        T::IsolateMaster | T::MajoritiesRing => exec::partition(&t.nodes, &grudge).await,
        T::ClockSkew => {
            let mut errors = Vec::new();
            if t.lab {
                errors.extend(t.faketime_problems(&targets).await);
            }
            if errors.is_empty() {
                errors = exec::clock_bump(
                    &t.nodes,
                    &targets,
                    Offset(TargetedFault::CLOCK_SKEW_S),
                    t.lab,
                )
                .await;
            }
            errors
        }
        // The target's marker first, as `splitbrain fault` does.
        T::KillMaster | T::PauseMaster => {
            let pf = if fault == T::KillMaster {
                ProcessFault::Kill
            } else {
                ProcessFault::Pause
            };
            process::apply(t.system.as_ref(), &t.nodes, &targets, pf).await
        }
    };
    t.started(
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn ring_of_three_cuts_the_target_from_the_lowest_other_node_only() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (d, g) = ring_or_isolate(T::MajoritiesRing, "n2", &names(3), &[], &mut rng).unwrap();
        assert_eq!(d, "majorities-ring of 3: n2 -/- n1");
        assert!(g.cuts("n2", "n1") && g.cuts("n1", "n2"));
        assert!(!g.cuts("n2", "n3") && !g.cuts("n1", "n3") && !g.cuts("n3", "n1"));
        let (_, g) = ring_or_isolate(T::MajoritiesRing, "n1", &names(3), &[], &mut rng).unwrap();
        assert!(g.cuts("n1", "n2") && !g.cuts("n1", "n3"));
    }

    #[test]
    fn isolate_and_larger_rings() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (d, g) = ring_or_isolate(T::IsolateMaster, "n3", &names(3), &[], &mut rng).unwrap();
        assert_eq!(d, "isolate n3");
        assert!(g.cuts("n3", "n1") && g.cuts("n3", "n2") && !g.cuts("n1", "n2"));
        let (d, g) = ring_or_isolate(T::MajoritiesRing, "n1", &names(5), &[], &mut rng).unwrap();
        assert!(d.starts_with("majorities-ring "), "{d}");
        // Five nodes: each keeps its two ring neighbours, so each loses two.
        for n in names(5) {
            let lost = names(5).iter().filter(|m| g.cuts(&n, m)).count();
            assert_eq!(lost, 2, "{n} in {d}");
        }
    }
}
