//! Structural properties of every topology, over node counts and seeds.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

fn nodes(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn plan(t: &Topology, n: usize, seed: u64) -> Plan {
    t.plan(&nodes(n), &[], &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap()
}

/// The grudge is a clean two-way split whose larger side has `big` nodes.
fn assert_two_sides(g: &Grudge, all: &[String], big: usize) {
    let a = g.view(&all[0], all);
    assert_eq!(a.len().max(all.len() - a.len()), big, "{g:?}");
    for x in all {
        for y in all {
            let same = a.contains(x) == a.contains(y);
            assert_eq!(g.cuts(x, y), !same && x != y, "{x}-{y} in {g:?}");
        }
    }
}

#[test]
fn isolate_named_and_random() {
    let p = plan(
        &Topology::Isolate {
            node: Some("n3".into()),
        },
        5,
        1,
    );
    assert_eq!(p.description, "isolate n3");
    for a in nodes(5) {
        for b in nodes(5) {
            assert_eq!(
                p.grudge.cuts(&a, &b),
                a != b && (a == "n3" || b == "n3"),
                "{a}-{b}"
            );
        }
    }
    let mut chosen = BTreeSet::new();
    for seed in 0..40 {
        let p = plan(&Topology::Isolate { node: None }, 5, seed);
        let lone: Vec<String> = nodes(5)
            .into_iter()
            .filter(|x| p.grudge.view(x, &nodes(5)).len() == 1)
            .collect();
        assert_eq!(lone.len(), 1);
        assert_eq!(p.description, format!("isolate {}", lone[0]));
        chosen.insert(lone[0].clone());
    }
    assert!(
        chosen.len() >= 4,
        "random isolation should vary: {chosen:?}"
    );
    assert_eq!(
        plan(&Topology::Isolate { node: None }, 5, 9),
        plan(&Topology::Isolate { node: None }, 5, 9)
    );
}

#[test]
fn halves_random_halves_and_majority_minority_split_cleanly() {
    for n in 2..=9 {
        let h = plan(&Topology::Halves, n, 0);
        assert_two_sides(&h.grudge, &nodes(n), n - n / 2);
        assert!(h.grudge.cuts("n1", &format!("n{n}")));
        if n >= 2 {
            assert!(!h.grudge.cuts(&format!("n{}", n / 2 + 1), &format!("n{n}")));
        }
        for seed in 0..5 {
            let r = plan(&Topology::RandomHalves, n, seed);
            assert_two_sides(&r.grudge, &nodes(n), n - n / 2);
            if n >= 3 {
                let m = plan(&Topology::MajorityMinority, n, seed);
                let majority = n - (n - 1) / 2;
                assert!(majority > n / 2);
                assert_two_sides(&m.grudge, &nodes(n), majority);
            }
        }
    }
    assert!(Topology::MajorityMinority
        .plan(&nodes(2), &[], &mut ChaCha8Rng::seed_from_u64(0))
        .is_err());
}

#[test]
fn majorities_ring_every_node_sees_a_distinct_majority() {
    for n in 4..=9 {
        for seed in 0..10 {
            let all = nodes(n);
            let p = plan(&Topology::MajoritiesRing, n, seed);
            assert!(!p.grudge.is_empty());
            let mut views = BTreeSet::new();
            for x in &all {
                let v = p.grudge.view(x, &all);
                assert!(v.len() > n / 2, "n={n} {x} sees {v:?}: not a majority");
                assert!(v.len() < n, "n={n} {x} sees everyone");
                assert!(views.insert(v.clone()), "n={n}: view {v:?} seen twice");
            }
            // symmetric: a cut is written on both sides
            for (a, peers) in &p.grudge.0 {
                for b in peers {
                    assert!(p.grudge.0[b].contains(a));
                }
            }
        }
    }
    let e = Topology::MajoritiesRing
        .plan(&nodes(3), &[], &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap_err();
    assert!(e.to_string().contains("at least 4 nodes"), "{e}");
}

#[test]
fn bridge_only_the_bridge_sees_both_halves() {
    for n in 3..=9 {
        for (seed, t) in [
            (0, Topology::Bridge { node: None }),
            (
                1,
                Topology::Bridge {
                    node: Some("n2".into()),
                },
            ),
        ] {
            let all = nodes(n);
            let p = plan(&t, n, seed);
            let everyone: Vec<&String> = all
                .iter()
                .filter(|x| p.grudge.view(x, &all).len() == n)
                .collect();
            assert_eq!(everyone.len(), 1, "n={n}: exactly one node sees all: {p:?}");
            let bridge = everyone[0];
            if let Topology::Bridge { node: Some(b) } = &t {
                assert_eq!(bridge, b);
            }
            assert!(p.description.starts_with(&format!("bridge {bridge} joins")));
            let others: Vec<String> = all.iter().filter(|x| *x != bridge).cloned().collect();
            // without the bridge, the rest is two non-empty sides cut from each other
            let left = p.grudge.view(&others[0], &others);
            let right: Vec<&String> = others.iter().filter(|x| !left.contains(*x)).collect();
            assert!(!right.is_empty(), "n={n}: {p:?}");
            for x in &left {
                for y in &right {
                    assert!(p.grudge.cuts(x, y));
                }
                for y in &left {
                    assert!(!p.grudge.cuts(x, y));
                }
            }
            assert!((left.len() as i64 - right.len() as i64).abs() <= 1);
        }
    }
}

#[test]
fn primaries_are_cut_from_everyone_including_each_other() {
    let all = nodes(5);
    let p = Topology::Primaries
        .plan(
            &all,
            &["n2".into(), "n4".into()],
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
    assert_eq!(p.description, "primaries n2,n4");
    assert_eq!(p.grudge.view("n2", &all).len(), 1);
    assert_eq!(p.grudge.view("n4", &all).len(), 1);
    assert_eq!(p.grudge.view("n1", &all).len(), 3);
    let e = Topology::Primaries
        .plan(&all, &[], &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap_err();
    assert!(e.to_string().contains("no node reports itself primary"));
    let e = Topology::Primaries
        .plan(&all, &["n8".into()], &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap_err();
    assert!(e.to_string().contains("unknown node \"n8\" in primaries"));
}

#[test]
fn parse_and_unknown_names() {
    assert_eq!(
        Topology::parse("isolate", Some("n3")).unwrap(),
        Topology::Isolate {
            node: Some("n3".into())
        }
    );
    assert_eq!(
        Topology::parse("majorities-ring", None).unwrap(),
        Topology::MajoritiesRing
    );
    assert_eq!(
        Topology::parse("split", Some("n1,n2")).unwrap(),
        Topology::Split {
            side: vec!["n1".into(), "n2".into()]
        }
    );
    let e = Topology::parse("ring", None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("unknown partition topology \"ring\" (known: isolate,"),
        "{e}"
    );
    assert!(Topology::parse("halves", Some("x")).is_err());
    assert!(Topology::parse("split", None).is_err());
    for name in NAMES {
        let arg = if *name == "split" { Some("n1") } else { None };
        let t = Topology::parse(name, arg).unwrap();
        assert_eq!(t.to_string().split(' ').next(), Some(*name));
    }
    let e = plan_err(Topology::Isolate {
        node: Some("n9".into()),
    });
    assert_eq!(e, "unknown node \"n9\" in isolate (nodes: n1,n2,n3,n4,n5)");
    let e = plan_err(Topology::Split { side: nodes(5) });
    assert_eq!(e, "split needs at least one node on each side");
    let e = plan_err(Topology::Bridge {
        node: Some("x".into()),
    });
    assert!(e.contains("unknown node \"x\" in bridge"));
}

fn plan_err(t: Topology) -> String {
    t.plan(&nodes(5), &[], &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap_err()
        .to_string()
}

#[test]
fn custom_grudge_is_validated_and_made_symmetric() {
    let mut g = Grudge::default();
    g.0.entry("n1".into()).or_default().insert("n2".into());
    let p = plan(&Topology::Custom { grudge: g.clone() }, 3, 0);
    assert!(p.grudge.0["n2"].contains("n1"));
    assert_eq!(p.description, "custom n1-/n2");
    g.0.entry("n1".into()).or_default().insert("n7".into());
    let e = Topology::Custom { grudge: g }
        .plan(&nodes(3), &[], &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap_err();
    assert!(e
        .to_string()
        .contains("unknown node \"n7\" in custom grudge"));
}
