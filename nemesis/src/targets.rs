//! Which nodes a process or clock fault hits: named nodes, or one / a minority / a
//! majority / the primaries / all, chosen with a seeded generator.

use crate::grudge::{known, GrudgeError};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targets {
    Nodes(Vec<String>),
    One,
    Minority,
    Majority,
    Primaries,
    All,
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::Nodes(n) => f.write_str(&n.join(",")),
            Targets::One => f.write_str("one"),
            Targets::Minority => f.write_str("minority"),
            Targets::Majority => f.write_str("majority"),
            Targets::Primaries => f.write_str("primaries"),
            Targets::All => f.write_str("all"),
        }
    }
}

impl Targets {
    /// `one`, `minority`, `majority`, `primaries`, `all`, or comma-separated node names.
    pub fn parse(text: &str) -> Result<Targets, GrudgeError> {
        Ok(match text {
            "one" => Targets::One,
            "minority" => Targets::Minority,
            "majority" => Targets::Majority,
            "primaries" => Targets::Primaries,
            "all" => Targets::All,
            _ => {
                let names: Vec<String> = text
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if names.is_empty() {
                    return Err(GrudgeError::Invalid(format!(
                        "no target nodes in {text:?} (use node names, one, minority, majority, primaries or all)"
                    )));
                }
                Targets::Nodes(names)
            }
        })
    }

    /// The chosen node names, in `nodes` order; never empty.
    pub fn resolve<R: Rng>(
        &self,
        nodes: &[String],
        primaries: &[String],
        rng: &mut R,
    ) -> Result<Vec<String>, GrudgeError> {
        let n = nodes.len();
        let mut shuffled = nodes.to_vec();
        shuffled.shuffle(rng);
        let mut out = match self {
            Targets::Nodes(names) => {
                for x in names {
                    known(x, nodes, "targets")?;
                }
                names.clone()
            }
            Targets::One => shuffled[..n.min(1)].to_vec(),
            Targets::Minority => shuffled[..(n.saturating_sub(1) / 2).max(n.min(1))].to_vec(),
            Targets::Majority => shuffled[..n / 2 + n.min(1)].to_vec(),
            Targets::Primaries => {
                for x in primaries {
                    known(x, nodes, "primaries")?;
                }
                primaries.to_vec()
            }
            Targets::All => nodes.to_vec(),
        };
        if out.is_empty() {
            return Err(GrudgeError::Invalid(format!(
                "no node to hit for targets {self} (primaries: {primaries:?})"
            )));
        }
        out.sort_by_key(|x| nodes.iter().position(|m| m == x));
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sizes_and_names() {
        let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let size = |t: &str, rng: &mut ChaCha8Rng| {
            Targets::parse(t)
                .unwrap()
                .resolve(&nodes, &["n4".into()], rng)
                .unwrap()
                .len()
        };
        assert_eq!(size("one", &mut rng), 1);
        assert_eq!(size("minority", &mut rng), 2);
        assert_eq!(size("majority", &mut rng), 3);
        assert_eq!(size("all", &mut rng), 5);
        assert_eq!(size("primaries", &mut rng), 1);
        assert_eq!(
            Targets::parse("n3,n1")
                .unwrap()
                .resolve(&nodes, &[], &mut rng)
                .unwrap(),
            vec!["n1", "n3"]
        );
        let e = Targets::parse("n1,n9")
            .unwrap()
            .resolve(&nodes, &[], &mut rng)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown node \"n9\" in targets (nodes: n1,n2,n3,n4,n5)"
        );
        assert!(Targets::Primaries.resolve(&nodes, &[], &mut rng).is_err());
        assert!(Targets::parse(",").is_err());
    }
}
