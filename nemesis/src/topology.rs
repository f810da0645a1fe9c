//! Partition topologies: the shapes a partition can take (isolate one node, halves,
//! majority/minority, majorities-ring, bridge, the current primaries, a custom grudge)
//! and how each becomes a concrete [`Grudge`] over a list of nodes, with seeded choices.

use crate::grudge::{known, Grudge, GrudgeError};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The partition shapes the nemesis can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "topology")]
pub enum Topology {
    /// Cut one node off from every other node (`None`: a random one).
    Isolate { node: Option<String> },
    /// These nodes on one side, the rest on the other.
    Split { side: Vec<String> },
    /// The first half of the nodes (in order) against the rest; the first half is
    /// the smaller one when the count is odd.
    Halves,
    /// Like halves, over a shuffled order.
    RandomHalves,
    /// A random minority (at most (n-1)/2 nodes) against the majority.
    MajorityMinority,
    /// Nodes on a shuffled ring, each seeing only its nearest neighbours: every node
    /// sees a majority, and no two nodes see the same majority.
    MajoritiesRing,
    /// Two halves joined only through one node (`None`: a random one), which sees both.
    Bridge { node: Option<String> },
    /// Cut every current primary off from every other node.
    Primaries,
    /// A grudge given by the user.
    Custom { grudge: Grudge },
}

/// The names [`Topology::parse`] accepts.
pub const NAMES: &[&str] = &[
    "isolate",
    "split",
    "halves",
    "random-halves",
    "majority-minority",
    "majorities-ring",
    "bridge",
    "primaries",
];

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Isolate { node: Some(n) } => write!(f, "isolate {n}"),
            Topology::Isolate { node: None } => write!(f, "isolate"),
            Topology::Split { side } => write!(f, "split {}", side.join(",")),
            Topology::Halves => write!(f, "halves"),
            Topology::RandomHalves => write!(f, "random-halves"),
            Topology::MajorityMinority => write!(f, "majority-minority"),
            Topology::MajoritiesRing => write!(f, "majorities-ring"),
            Topology::Bridge { node: Some(n) } => write!(f, "bridge {n}"),
            Topology::Bridge { node: None } => write!(f, "bridge"),
            Topology::Primaries => write!(f, "primaries"),
            Topology::Custom { .. } => write!(f, "custom grudge"),
        }
    }
}

/// A topology made concrete: what was chosen, and the grudge to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The topology with every random choice spelled out, e.g. `isolate n3`.
    pub description: String,
    pub grudge: Grudge,
}

fn invalid(s: String) -> GrudgeError {
    GrudgeError::Invalid(s)
}

/// Splits `order` into the first `k` and the rest.
fn halves_of(order: &[String], k: usize) -> (Vec<String>, Vec<String>) {
    (order[..k].to_vec(), order[k..].to_vec())
}

fn sides(a: &[String], b: &[String]) -> String {
    format!("{{{}}} | {{{}}}", a.join(","), b.join(","))
}

impl Topology {
    /// Parses a name and optional argument as typed on the command line, e.g.
    /// `isolate`, `isolate n3`, `split n1,n2`, `bridge n3`, `majorities-ring`.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Topology, GrudgeError> {
        let no_arg = |t: Topology| match arg {
            None => Ok(t),
            Some(a) => Err(invalid(format!(
                "partition {name} takes no argument (got {a:?})"
            ))),
        };
        match name {
            "isolate" => Ok(Topology::Isolate {
                node: arg.map(String::from),
            }),
            "bridge" => Ok(Topology::Bridge {
                node: arg.map(String::from),
            }),
            "split" => {
                let side: Vec<String> = arg
                    .ok_or_else(|| {
                        invalid(
                            "partition split needs the nodes of one side, e.g. `split n1,n2`"
                                .into(),
                        )
                    })?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                Ok(Topology::Split { side })
            }
            "halves" => no_arg(Topology::Halves),
            "random-halves" => no_arg(Topology::RandomHalves),
            "majority-minority" => no_arg(Topology::MajorityMinority),
            "majorities-ring" => no_arg(Topology::MajoritiesRing),
            "primaries" => no_arg(Topology::Primaries),
            _ => Err(invalid(format!(
                "unknown partition topology {name:?} (known: {})",
                NAMES.join(", ")
            ))),
        }
    }

    /// Makes the topology concrete over `nodes` (at least two). `primaries` are the
    /// nodes the system reports as master (used by [`Topology::Primaries`]); `rng`
    /// makes every random choice, so a seed reproduces the plan.
    pub fn plan<R: Rng>(
        &self,
        nodes: &[String],
        primaries: &[String],
        rng: &mut R,
    ) -> Result<Plan, GrudgeError> {
        let n = nodes.len();
        if n < 2 {
            return Err(invalid(format!(
                "a partition needs at least 2 nodes (have {n})"
            )));
        }
        let mut shuffled = nodes.to_vec();
        shuffled.shuffle(rng);
        let (description, grudge) = match self {
            Topology::Isolate { node } => {
                let node = match node {
                    Some(x) => {
                        known(x, nodes, "isolate")?;
                        x.clone()
                    }
                    None => shuffled[0].clone(),
                };
                let rest: Vec<String> = nodes.iter().filter(|m| **m != node).cloned().collect();
                (
                    format!("isolate {node}"),
                    Grudge::between(std::slice::from_ref(&node), &rest),
                )
            }
            Topology::Split { side } => {
                for x in side {
                    known(x, nodes, "split side")?;
                }
                let rest: Vec<String> = nodes
                    .iter()
                    .filter(|m| !side.contains(m))
                    .cloned()
                    .collect();
                if side.is_empty() || rest.is_empty() {
                    return Err(invalid("split needs at least one node on each side".into()));
                }
                (
                    format!("split {}", sides(side, &rest)),
                    Grudge::between(side, &rest),
                )
            }
            Topology::Halves | Topology::RandomHalves => {
                let order = if *self == Topology::Halves {
                    nodes
                } else {
                    &shuffled[..]
                };
                let (a, b) = halves_of(order, n / 2);
                (format!("{self} {}", sides(&a, &b)), Grudge::between(&a, &b))
            }
            Topology::MajorityMinority => {
                if n < 3 {
                    return Err(invalid(format!(
                        "majority-minority needs at least 3 nodes (have {n})"
                    )));
                }
                let (a, b) = halves_of(&shuffled, (n - 1) / 2);
                (format!("{self} {}", sides(&a, &b)), Grudge::between(&a, &b))
            }
            Topology::MajoritiesRing => majorities_ring(&shuffled)?,
            Topology::Bridge { node } => {
                if n < 3 {
                    return Err(invalid(format!("bridge needs at least 3 nodes (have {n})")));
                }
                let (bridge, others) = match node {
                    Some(x) => {
                        known(x, nodes, "bridge")?;
                        let others: Vec<String> =
                            nodes.iter().filter(|m| *m != x).cloned().collect();
                        (x.clone(), others)
                    }
                    None => {
                        let mut o = shuffled.clone();
                        let b = o.remove(n / 2);
                        (b, o)
                    }
                };
                let (a, b) = halves_of(&others, others.len() / 2);
                (
                    format!("bridge {bridge} joins {}", sides(&a, &b)),
                    Grudge::between(&a, &b),
                )
            }
            Topology::Primaries => {
                if primaries.is_empty() {
                    return Err(invalid(
                        "cannot isolate the primaries: no node reports itself primary".into(),
                    ));
                }
                let mut g = Grudge::default();
                for p in primaries {
                    known(p, nodes, "primaries")?;
                    for m in nodes {
                        g.cut(p, m);
                    }
                }
                if g.is_empty() {
                    return Err(invalid(
                        "isolating the primaries cuts nothing: every node is primary".into(),
                    ));
                }
                (format!("primaries {}", primaries.join(",")), g)
            }
            Topology::Custom { grudge } => {
                grudge.validate(nodes, "custom grudge")?;
                (
                    format!("custom {}", describe_grudge(grudge)),
                    grudge.symmetric(),
                )
            }
        };
        Ok(Plan {
            description,
            grudge,
        })
    }
}

/// `n1-/n2,n3` style summary of a grudge for descriptions.
fn describe_grudge(g: &Grudge) -> String {
    g.0.iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(a, s)| format!("{a}-/{}", s.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nodes in ring order; each keeps the `d` nearest on each side, where `d` is the
/// least with `2d + 1` a majority. Needs `2d + 1 < n` so that the views (windows
/// centred on each node) all differ: n >= 4.
fn majorities_ring(ring: &[String]) -> Result<(String, Grudge), GrudgeError> {
    let n = ring.len();
    if n < 4 {
        return Err(invalid(format!(
            "majorities-ring needs at least 4 nodes (have {n}): with fewer, a majority view is everyone"
        )));
    }
    let d = (n / 2).div_ceil(2);
    let mut g = Grudge::default();
    for i in 0..n {
        for j in 0..n {
            let dist = (i + n - j) % n;
            if dist.min(n - dist) > d {
                g.cut(&ring[i], &ring[j]);
            }
        }
    }
    Ok((format!("majorities-ring {}", ring.join("-")), g))
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
