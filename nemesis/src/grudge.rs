//! Grudges: for each node, the set of nodes whose traffic it drops. A grudge is what
//! the history records and what [`crate::iptables`] renders. Also reading a custom
//! grudge from JSON or TOML, with every node name checked. The shapes (topologies)
//! that produce grudges live in [`crate::topology`].

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// `node -> nodes it cannot exchange traffic with`. A node that drops a peer drops it
/// in both directions (INPUT and OUTPUT), so one entry cuts the pair both ways; every
/// topology of this crate also writes both entries.
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
    #[error("{source_name}: not a grudge: {message} (expected a map from node to the nodes it cuts, e.g. {{\"n1\": [\"n2\", \"n3\"]}})")]
    Parse {
        source_name: String,
        message: String,
    },
}

/// Checks that `n` is one of `nodes`.
pub(crate) fn known(n: &str, nodes: &[String], context: &str) -> Result<(), GrudgeError> {
    if nodes.iter().any(|k| k == n) {
        Ok(())
    } else {
        Err(GrudgeError::UnknownNode {
            node: n.to_string(),
            context: context.to_string(),
            known: nodes.join(","),
        })
    }
}

impl Grudge {
    /// A grudge that cuts every node of `a` from every node of `b`, both directions.
    pub fn between(a: &[String], b: &[String]) -> Grudge {
        let mut g = Grudge::default();
        g.cut_between(a, b);
        g
    }

    /// Adds the cuts between every node of `a` and every node of `b`.
    pub fn cut_between(&mut self, a: &[String], b: &[String]) {
        for x in a {
            for y in b {
                self.cut(x, y);
            }
        }
    }

    /// Cuts `a` from `b` in both directions (no-op when `a == b`).
    pub fn cut(&mut self, a: &str, b: &str) {
        if a != b {
            self.0.entry(a.into()).or_default().insert(b.into());
            self.0.entry(b.into()).or_default().insert(a.into());
        }
    }

    /// Whether traffic between `a` and `b` is cut.
    pub fn cuts(&self, a: &str, b: &str) -> bool {
        self.0.get(a).is_some_and(|s| s.contains(b)) || self.0.get(b).is_some_and(|s| s.contains(a))
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }

    /// The nodes `node` can still exchange traffic with, itself included.
    pub fn view(&self, node: &str, nodes: &[String]) -> BTreeSet<String> {
        nodes
            .iter()
            .filter(|p| *p == node || !self.cuts(node, p))
            .cloned()
            .collect()
    }

    /// The same cuts written both ways, so every node's entry lists every peer it
    /// cannot reach (what the rules on that node will say).
    pub fn symmetric(&self) -> Grudge {
        let mut g = Grudge::default();
        for (a, peers) in &self.0 {
            for b in peers {
                g.cut(a, b);
            }
        }
        g
    }

    /// Checks every name against `nodes` and refuses self-grudges.
    pub fn validate(&self, nodes: &[String], source_name: &str) -> Result<(), GrudgeError> {
        for (a, peers) in &self.0 {
            known(a, nodes, source_name)?;
            for b in peers {
                known(b, nodes, source_name)?;
                if a == b {
                    return Err(GrudgeError::Invalid(format!(
                        "{source_name}: node {a:?} holds a grudge against itself"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Reads a custom grudge (JSON when the text starts with `{`, TOML otherwise),
    /// checks it against `nodes` and returns it written both ways.
    /// TOML form: `n1 = ["n2", "n3"]`, one line per node.
    pub fn parse(text: &str, source_name: &str, nodes: &[String]) -> Result<Grudge, GrudgeError> {
        let parse_err = |message: String| GrudgeError::Parse {
            source_name: source_name.to_string(),
            message: message.lines().next().unwrap_or("").to_string(),
        };
        let g: Grudge = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| parse_err(e.to_string().replace('\n', " ")))?
        };
        g.validate(nodes, source_name)?;
        let g = g.symmetric();
        if g.is_empty() {
            return Err(GrudgeError::Invalid(format!(
                "{source_name}: the grudge cuts nothing"
            )));
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Vec<String> {
        (1..=5).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn between_cut_and_view() {
        let g = Grudge::between(&["n1".into(), "n2".into()], &["n3".into()]);
        assert!(g.cuts("n1", "n3") && g.cuts("n3", "n2") && !g.cuts("n1", "n2"));
        assert_eq!(
            g.view("n3", &five()),
            BTreeSet::from(["n3", "n4", "n5"].map(String::from))
        );
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, r#"{"n1":["n3"],"n2":["n3"],"n3":["n1","n2"]}"#);
    }

    #[test]
    fn custom_grudges_parse_from_json_and_toml_and_become_symmetric() {
        let j = Grudge::parse(r#"{"n1": ["n2", "n3"]}"#, "g.json", &five()).unwrap();
        let t = Grudge::parse("n1 = [\"n2\", \"n3\"]\n", "g.toml", &five()).unwrap();
        assert_eq!(j, t);
        assert_eq!(j.0["n2"], BTreeSet::from(["n1".to_string()]));
        assert!(j.cuts("n3", "n1") && !j.cuts("n2", "n3"));
    }

    #[test]
    fn custom_grudge_errors_name_the_problem_and_the_source() {
        let e = Grudge::parse(r#"{"n1": ["n9"]}"#, "g.json", &five()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown node \"n9\" in g.json (nodes: n1,n2,n3,n4,n5)"
        );
        let e = Grudge::parse("n7 = [\"n1\"]", "g.toml", &five()).unwrap_err();
        assert!(e.to_string().contains("\"n7\" in g.toml"), "{e}");
        let e = Grudge::parse(r#"{"n1": ["n1"]}"#, "g.json", &five()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.json: node \"n1\" holds a grudge against itself"
        );
        let e = Grudge::parse(r#"{"n1": "n2"}"#, "g.json", &five()).unwrap_err();
        assert!(e.to_string().starts_with("g.json: not a grudge:"), "{e}");
        let e = Grudge::parse("n1 = 3", "g.toml", &five()).unwrap_err();
        assert!(e.to_string().starts_with("g.toml: not a grudge:"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = Grudge::parse(r#"{"n1": []}"#, "g.json", &five()).unwrap_err();
        assert_eq!(e.to_string(), "g.json: the grudge cuts nothing");
    }
}
