//! Partition topologies as grudges: for each node, the set of nodes whose traffic it
//! drops. A grudge is what the history records and what [`crate::iptables`] renders.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `node -> nodes it cannot exchange traffic with`. Symmetric for every topology this
/// crate builds (if a drops b, b drops a), so both directions are cut.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grudge(pub BTreeMap<String, BTreeSet<String>>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrudgeError {
    #[error("unknown node {node:?} in {context} (nodes: {known})")]
    UnknownNode {
        node: String,
        context: String,
        known: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The partition shapes the nemesis can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "topology")]
pub enum Topology {
    /// Cut one node off from every other node.
    Isolate { node: String },
    /// Two sides with no traffic between them.
    Split { side: Vec<String> },
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Isolate { node } => write!(f, "isolate {node}"),
            Topology::Split { side } => write!(f, "split {{{}}} from the rest", side.join(",")),
        }
    }
}

impl Grudge {
    /// A grudge that cuts every node of `a` from every node of `b`, both directions.
    pub fn between(a: &[String], b: &[String]) -> Grudge {
        let mut g = Grudge::default();
        for x in a {
            for y in b {
                if x != y {
                    g.0.entry(x.clone()).or_default().insert(y.clone());
                    g.0.entry(y.clone()).or_default().insert(x.clone());
                }
            }
        }
        g
    }

    /// Builds the grudge of `topology` over `nodes`, checking every name.
    pub fn of(topology: &Topology, nodes: &[String]) -> Result<Grudge, GrudgeError> {
        let known = |n: &String, context: &str| -> Result<(), GrudgeError> {
            if nodes.contains(n) {
                Ok(())
            } else {
                Err(GrudgeError::UnknownNode {
                    node: n.clone(),
                    context: context.to_string(),
                    known: nodes.join(","),
                })
            }
        };
        match topology {
            Topology::Isolate { node } => {
                known(node, "isolate")?;
                let rest: Vec<String> = nodes.iter().filter(|n| *n != node).cloned().collect();
                Ok(Grudge::between(std::slice::from_ref(node), &rest))
            }
            Topology::Split { side } => {
                for n in side {
                    known(n, "split side")?;
                }
                let rest: Vec<String> = nodes
                    .iter()
                    .filter(|n| !side.contains(n))
                    .cloned()
                    .collect();
                if side.is_empty() || rest.is_empty() {
                    return Err(GrudgeError::Invalid(
                        "split needs at least one node on each side".into(),
                    ));
                }
                Ok(Grudge::between(side, &rest))
            }
        }
    }

    /// Isolates a node chosen by `rng` among `nodes`.
    pub fn isolate_random<R: Rng>(nodes: &[String], rng: &mut R) -> Option<Topology> {
        nodes
            .choose(rng)
            .map(|n| Topology::Isolate { node: n.clone() })
    }

    /// Whether traffic between `a` and `b` is cut.
    pub fn cuts(&self, a: &str, b: &str) -> bool {
        self.0.get(a).is_some_and(|s| s.contains(b)) || self.0.get(b).is_some_and(|s| s.contains(a))
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Vec<String> {
        (1..=5).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn isolate_cuts_exactly_the_pairs_with_that_node() {
        let g = Grudge::of(&Topology::Isolate { node: "n3".into() }, &five()).unwrap();
        for a in five() {
            for b in five() {
                let want = a != b && (a == "n3" || b == "n3");
                assert_eq!(g.cuts(&a, &b), want, "{a}-{b}");
            }
        }
        assert_eq!(g.0["n3"].len(), 4);
        assert_eq!(g.0["n1"], BTreeSet::from(["n3".to_string()]));
    }

    #[test]
    fn split_and_errors() {
        let g = Grudge::of(
            &Topology::Split {
                side: vec!["n1".into(), "n2".into()],
            },
            &five(),
        )
        .unwrap();
        assert!(
            g.cuts("n1", "n5") && g.cuts("n5", "n2") && !g.cuts("n1", "n2") && !g.cuts("n3", "n4")
        );
        let e = Grudge::of(&Topology::Isolate { node: "n9".into() }, &five()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown node \"n9\" in isolate (nodes: n1,n2,n3,n4,n5)"
        );
        assert!(Grudge::of(&Topology::Split { side: five() }, &five()).is_err());
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.starts_with("{\"n1\":[\"n3\",\"n4\",\"n5\"]"), "{json}");
    }
}
