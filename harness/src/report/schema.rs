//! The stored formats the reports read back: `results.json` and `test.json`, as
//! tolerant serde types (unknown fields are ignored, missing ones take defaults), so a
//! report can be rebuilt from a run written by an older or newer harness. The format
//! is documented in docs/RESULTS-SCHEMA.md; [`SCHEMA_VERSION`] is bumped only when a
//! field changes meaning or type, never when one is added.

use checkers::Validity;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the `results.json` layout this harness writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a run was tested on: harness, seed, system and each node's OS and kernel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Environment {
    pub harness_version: String,
    pub seed: u64,
    /// The system as the harness describes it (`zoo async-failover`).
    pub system: String,
    /// Version of the system under test, when known.
    pub system_version: Option<String>,
    /// The controller's `uname -srm`.
    pub controller: Option<String>,
    pub nodes: Vec<NodeEnvironment>,
    /// Warnings from the system about this run (e.g. faults that cannot reach it
    /// here); every report lists them among its notes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One node's OS (`PRETTY_NAME` of /etc/os-release) and kernel (`uname -srm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeEnvironment {
    pub node: String,
    pub os: Option<String>,
    pub kernel: Option<String>,
    /// Why the facts above are missing, when they are.
    pub error: Option<String>,
}

/// A node of the resolved test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredNode {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub workdir: String,
}

/// `test.json`: the resolved test (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredTest {
    pub name: String,
    pub nodes: Vec<StoredNode>,
    pub username: String,
    pub system: String,
    /// Written as `zoo_mode` before other systems existed.
    #[serde(alias = "zoo_mode")]
    pub mode: String,
    pub workload: String,
    pub nemesis: String,
    pub time_limit: f64,
    /// The clients-only start of the time limit (0 in runs from before warm-ups).
    pub warmup: f64,
    /// The op mix, `op=weight,...` (empty in runs from before mixes: the default).
    pub op_mix: String,
    pub nemesis_interval: f64,
    /// At most this many faults (absent, or null, when not limited).
    pub max_faults: Option<u32>,
    pub recovery_time: f64,
    pub op_timeout: f64,
    pub concurrency: usize,
    /// Register workload: processes sharing one key (0 in runs from before the option:
    /// the default, 2).
    pub processes_per_key: u64,
    pub rate: f64,
    pub max_ops: u64,
    pub seed: u64,
    pub leave_db_running: bool,
    pub lab: bool,
    pub harness_version: String,
}

/// One checker's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChecker {
    pub checker: String,
    pub valid: Validity,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Counts over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredStats {
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub duration_s: f64,
}

/// One fault as the nemesis recorded it (seconds since the test began).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredFault {
    pub topology: String,
    pub grudge: serde_json::Value,
    pub start: f64,
    pub end: Option<f64>,
    pub errors: Vec<String>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResults {
    /// 0 for runs written before the field existed.
    #[serde(default)]
    pub schema_version: u32,
    pub valid: Validity,
    #[serde(default)]
    pub checkers: Vec<StoredChecker>,
    #[serde(default)]
    pub stats: StoredStats,
    #[serde(default)]
    pub faults: Vec<StoredFault>,
    #[serde(default)]
    pub heal_errors: Vec<String>,
    #[serde(default)]
    pub final_read_failures: Vec<String>,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub test: StoredTest,
    #[serde(default)]
    pub environment: Option<Environment>,
    /// True when `splitbrain report` rebuilt this file from test.json and the history
    /// (the controller died before writing it): faults and stats come from the history.
    #[serde(default)]
    pub reconstructed: bool,
}

/// Reads and parses one JSON file of a run, with the file named in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_fields_are_tolerated() {
        // A run from before schema_version and environment existed, plus a field a
        // later version might add.
        let text = r#"{"valid":"invalid","checkers":[{"checker":"lost-writes","valid":"invalid",
            "summary":"1 lost","details":{"lost_count":1}}],"test":{"name":"t","seed":7,
            "workload":"set"},"added_later":{"x":1}}"#;
        let r: StoredResults = serde_json::from_str(text).unwrap();
        assert_eq!(r.schema_version, 0);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.test.seed, 7);
        assert!(r.environment.is_none());
        assert_eq!(r.checkers[0].summary, "1 lost");
        let missing: Result<StoredResults, _> = serde_json::from_str(r#"{"checkers":[]}"#);
        assert!(missing.unwrap_err().to_string().contains("valid"));
    }
}
