//! Which nodes a test runs against: the [`NodeSpec`] type and the nodes-file format
//! shared by `--nodes`, `--nodes-file` and the lab.
//!
//! A nodes file has one node a line: `NAME HOST[:PORT] [workdir=DIR] [user=USER]`, or
//! just `HOST[:PORT]` (the name is then the host). `#` starts a comment.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where system files live on a real node unless the nodes file says otherwise.
pub const DEFAULT_WORKDIR: &str = "/opt/splitbrain";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    /// Short name used in histories, grudges and reports (`n1`).
    pub name: String,
    /// Address or hostname to reach it at.
    pub host: String,
    pub port: u16,
    /// Login user; `None` means the test's `--username`.
    pub user: Option<String>,
    /// Directory under which systems keep their files on this node.
    pub workdir: String,
}

impl fmt::Display for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.name, self.host, self.port)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NodesError {
    #[error("{source_name}:{line}: {message}")]
    Line {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("{0}: no nodes given")]
    Empty(String),
    #[error("{source_name}: node name {name:?} appears twice (lines {first} and {second})")]
    Duplicate {
        source_name: String,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("reading nodes file {path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err("empty host".into());
    }
    // [v6]:port, host:port, or host
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
            None if tail.is_empty() => 22,
            None => return Err(format!("unexpected {tail:?} after ']'")),
        };
        return Ok((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("bad port {p:?} in {text:?}"))?;
            if port == 0 {
                return Err(format!("port 0 in {text:?}"));
            }
            if h.is_empty() {
                return Err(format!("empty host in {text:?}"));
            }
            Ok((h.to_string(), port))
        }
        _ => Ok((text.to_string(), 22)),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Parses nodes-file text; `source_name` names it in errors.
pub fn parse_nodes(text: &str, source_name: &str) -> Result<Vec<NodeSpec>, NodesError> {
    let mut nodes: Vec<(usize, NodeSpec)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let err = |message: String| NodesError::Line {
            source_name: source_name.to_string(),
            line,
            message,
        };
        let mut words = content.split_whitespace();
        let first = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let (name, addr, attrs) = match rest.first() {
            Some(second) if !second.contains('=') => (first.to_string(), *second, &rest[1..]),
            _ => (String::new(), first, &rest[..]),
        };
        let (host, port) = parse_host_port(addr).map_err(err)?;
        let name = if name.is_empty() { host.clone() } else { name };
        if !valid_name(&name) {
            return Err(err(format!(
                "node name {name:?} must be 1-64 characters of letters, digits, '-', '_', '.', ':'"
            )));
        }
        let mut spec = NodeSpec {
            name,
            host,
            port,
            user: None,
            workdir: DEFAULT_WORKDIR.to_string(),
        };
        for attr in attrs {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| err(format!("expected key=value, got {attr:?}")))?;
            match k {
                "workdir" if v.starts_with('/') => spec.workdir = v.to_string(),
                "workdir" => {
                    return Err(err(format!("workdir must be an absolute path, got {v:?}")))
                }
                "user" if !v.is_empty() => spec.user = Some(v.to_string()),
                _ => {
                    return Err(err(format!(
                        "unknown attribute {k:?} (known: workdir, user)"
                    )))
                }
            }
        }
        if let Some((first, _)) = nodes.iter().find(|(_, n)| n.name == spec.name) {
            return Err(NodesError::Duplicate {
                source_name: source_name.to_string(),
                name: spec.name,
                first: *first,
                second: line,
            });
        }
        nodes.push((line, spec));
    }
    if nodes.is_empty() {
        return Err(NodesError::Empty(source_name.to_string()));
    }
    Ok(nodes.into_iter().map(|(_, n)| n).collect())
}

/// Reads and parses a nodes file.
pub fn read_nodes_file(path: &Path) -> Result<Vec<NodeSpec>, NodesError> {
    let text = std::fs::read_to_string(path).map_err(|e| NodesError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_nodes(&text, &path.display().to_string())
}

/// Parses `--nodes n1,n2:2222,...` (each entry as a nodes-file address).
pub fn parse_nodes_flag(list: &str) -> Result<Vec<NodeSpec>, NodesError> {
    let text: Vec<&str> = list.split(',').map(str::trim).collect();
    if text.iter().any(|t| t.is_empty()) {
        return Err(NodesError::Line {
            source_name: "--nodes".into(),
            line: 1,
            message: format!("empty entry in {list:?}"),
        });
    }
    parse_nodes(&text.join("\n"), "--nodes")
}

/// Renders nodes back into the nodes-file format.
pub fn render_nodes(nodes: &[NodeSpec]) -> String {
    let mut out = String::new();
    for n in nodes {
        out.push_str(&format!(
            "{} {}:{} workdir={}",
            n.name, n.host, n.port, n.workdir
        ));
        if let Some(u) = &n.user {
            out.push_str(&format!(" user={u}"));
        }
        out.push('\n');
    }
    out
}

/// The names, for checking grudges and flags against.
pub fn names(nodes: &[NodeSpec]) -> BTreeSet<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms_and_round_trips() {
        let text = "# lab\nn1 10.0.0.1\nn2 10.0.0.2:2222 workdir=/srv/n2 user=admin\nvm3.example\n[::1]:2200\n";
        let nodes = parse_nodes(text, "f").unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].port, 22);
        assert_eq!(nodes[1].workdir, "/srv/n2");
        assert_eq!(nodes[1].user.as_deref(), Some("admin"));
        assert_eq!(nodes[2].name, "vm3.example");
        assert_eq!((nodes[3].host.as_str(), nodes[3].port), ("::1", 2200));
        let again = parse_nodes(&render_nodes(&nodes[..3]), "g").unwrap();
        assert_eq!(again, nodes[..3]);
    }

    #[test]
    fn bad_input_names_line() {
        let cases = [
            ("n1 h:99999\n", "f:1: bad port"),
            ("\n\nn1 h foo\n", "f:3: expected key=value"),
            (
                "n1 h workdir=rel\n",
                "f:1: workdir must be an absolute path",
            ),
            ("n1 h colour=red\n", "f:1: unknown attribute"),
            ("n/1 h\n", "f:1: node name"),
            (
                "n1 h1\nn1 h2\n",
                "f: node name \"n1\" appears twice (lines 1 and 2)",
            ),
            ("# nothing\n\n", "f: no nodes given"),
        ];
        for (text, want) in cases {
            let got = parse_nodes(text, "f").unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
        assert!(parse_nodes_flag("a,,b")
            .unwrap_err()
            .to_string()
            .contains("empty entry"));
        assert_eq!(parse_nodes_flag("a,b:23").unwrap()[1].port, 23);
    }
}
