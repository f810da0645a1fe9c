//! The environment a run recorded in results.json: harness version, seed, system, the
//! controller's kernel and each node's OS and kernel, asked over the run's own
//! sessions with one bounded command per node. Never fails a run: a node that does
//! not answer gets an `error` instead of facts.

use super::schema::{Environment, NodeEnvironment};
use crate::control::Remote;
use crate::systems::NodeHandle;
use std::time::Duration;

/// Bound on the one command per node.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Prints the kernel line, a separator, then /etc/os-release (if any).
const SCRIPT: &str = "uname -srm; echo ---; cat /etc/os-release 2>/dev/null || true";

/// Splits [`SCRIPT`]'s output into (kernel, OS pretty name).
pub fn parse(output: &str) -> (Option<String>, Option<String>) {
    let (kernel, rest) = output.split_once("---").unwrap_or((output, ""));
    let kernel = Some(kernel.trim().to_string()).filter(|k| !k.is_empty());
    let field = |name: &str| {
        rest.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    (kernel, field("PRETTY_NAME=").or_else(|| field("NAME=")))
}

async fn node_env(h: &NodeHandle) -> NodeEnvironment {
    let mut env = NodeEnvironment {
        node: h.spec.name.clone(),
        ..NodeEnvironment::default()
    };
    match h.remote.exec_ok(SCRIPT, TIMEOUT).await {
        Ok(out) => {
            let (kernel, os) = parse(&String::from_utf8_lossy(&out.stdout));
            env.kernel = kernel;
            env.os = os;
        }
        Err(e) => env.error = Some(e.to_string()),
    }
    env
}

/// Collects the environment; at most [`TIMEOUT`] per node, all nodes at once.
pub async fn collect(
    handles: &[NodeHandle],
    seed: u64,
    system: String,
    system_version: Option<String>,
) -> Environment {
    let mut set = tokio::task::JoinSet::new();
    for h in handles {
        let h = h.clone();
        set.spawn(async move { node_env(&h).await });
    }
    let mut nodes = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(n) = r {
            nodes.push(n);
        }
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let controller = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Environment {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        seed,
        system,
        system_version,
        controller,
        nodes,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uname_and_os_release() {
        let out = "Linux 6.1.0-18-amd64 x86_64\n---\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            parse(out),
            (
                Some("Linux 6.1.0-18-amd64 x86_64".into()),
                Some("Debian GNU/Linux 12 (bookworm)".into())
            )
        );
        assert_eq!(
            parse("Linux 5.0 aarch64\n---\n"),
            (Some("Linux 5.0 aarch64".into()), None)
        );
        assert_eq!(parse("NAME=Alpine\n"), (Some("NAME=Alpine".into()), None));
        assert_eq!(parse("---\nNAME=Alpine\n"), (None, Some("Alpine".into())));
    }
}
