//! Which system a run targets, as the command line names it: `--system zoo:raft`,
//! `--system postgres:async`, `--system etcd`. Owns the list of systems and their
//! modes, the parsing of `kind[:mode]` with one clear error, and the options every
//! system is built from.

use std::fmt;
use std::path::PathBuf;

/// A system the harness can deploy and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemKind {
    /// The reference servers of this project (`zoo` binary), one mode per architecture.
    Zoo,
    /// Redis with Sentinel: asynchronous replication, Sentinel-driven failover.
    RedisSentinel,
    /// etcd: Raft.
    Etcd,
    /// PostgreSQL streaming replication with a harness-driven failover.
    Postgres,
}

impl SystemKind {
    /// Every system, in the order help texts list them.
    pub const ALL: [SystemKind; 4] = [
        SystemKind::Zoo,
        SystemKind::RedisSentinel,
        SystemKind::Etcd,
        SystemKind::Postgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Zoo => "zoo",
            SystemKind::RedisSentinel => "redis-sentinel",
            SystemKind::Etcd => "etcd",
            SystemKind::Postgres => "postgres",
        }
    }

    /// The modes this system can be deployed in; the first is the default.
    pub fn modes(self) -> &'static [&'static str] {
        match self {
            SystemKind::Zoo => super::zoo::MODES,
            SystemKind::RedisSentinel => super::redis::MODES,
            SystemKind::Etcd => &["raft"],
            SystemKind::Postgres => &["async", "sync-any-1", "sync-all"],
        }
    }

    fn known() -> String {
        SystemKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for SystemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SystemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SystemKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown system {s:?} (known: {})", SystemKind::known()))
    }
}

/// A system and the mode to deploy it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSpec {
    pub kind: SystemKind,
    pub mode: String,
}

impl SystemSpec {
    /// Parses `kind` or `kind:mode`; without a mode, zoo takes `zoo_mode` (the
    /// `--zoo-mode` flag) and every other system its default mode.
    pub fn parse(text: &str, zoo_mode: &str) -> Result<SystemSpec, String> {
        let (kind, mode) = match text.split_once(':') {
            Some((k, m)) => (k, Some(m)),
            None => (text, None),
        };
        let kind: SystemKind = kind.parse()?;
        let mode = match mode {
            Some(m) => m,
            None if kind == SystemKind::Zoo => zoo_mode,
            None => kind.modes()[0],
        };
        if !kind.modes().contains(&mode) {
            return Err(format!(
                "unknown {kind} mode {mode:?} (known: {})",
                kind.modes().join(", ")
            ));
        }
        Ok(SystemSpec {
            kind,
            mode: mode.to_string(),
        })
    }

    /// `kind:mode`, as `--system` accepts it back; names results folders.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind, self.mode)
    }
}

impl fmt::Display for SystemSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.mode)
    }
}

/// What every system is built from, resolved by the command line.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    pub spec: SystemSpec,
    /// The nodes are the local lab: namespaces on one machine sharing one filesystem
    /// (each node keeps its files under its own workdir) and one clock (clock faults
    /// reach processes only through libfaketime).
    pub lab: bool,
    /// The nemesis will skew clocks: start processes so that they can be skewed.
    pub clock_faults: bool,
    /// The zoo binary to upload (zoo only).
    pub zoo_binary: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kind_and_mode() {
        let s = SystemSpec::parse("zoo", "raft").unwrap();
        assert_eq!((s.kind, s.mode.as_str()), (SystemKind::Zoo, "raft"));
        let s = SystemSpec::parse("zoo:sync", "raft").unwrap();
        assert_eq!(s.mode, "sync");
        assert_eq!(s.label(), "zoo:sync");
        let s = SystemSpec::parse("postgres", "raft").unwrap();
        assert_eq!((s.kind, s.mode.as_str()), (SystemKind::Postgres, "async"));
        assert_eq!(
            SystemSpec::parse("postgres:any", "raft").unwrap_err(),
            "unknown postgres mode \"any\" (known: async, sync-any-1, sync-all)"
        );
        assert_eq!(
            SystemSpec::parse("mysql", "raft").unwrap_err(),
            "unknown system \"mysql\" (known: zoo, redis-sentinel, etcd, postgres)"
        );
        assert!(SystemSpec::parse("zoo:nope", "raft").is_err());
        assert!(SystemSpec::parse("", "raft").is_err());
    }
}
