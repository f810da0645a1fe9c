//! The resolved test: what `test.json` records and the runner reads. Also the small
//! value parsers the CLI shares (durations like `30s`, concurrency like `2n`).

use crate::nodes::NodeSpec;
use serde::Serialize;
use std::time::Duration;

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 30s, 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86_400.0).contains(&secs) {
        return Err(format!(
            "invalid duration {text:?}: must be between 0 and 7 days"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--concurrency`: a number of client processes, or `Nn` for N per node (Jepsen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Total(usize),
    PerNode(usize),
}

impl Concurrency {
    pub fn resolve(self, nodes: usize) -> usize {
        match self {
            Concurrency::Total(n) => n,
            Concurrency::PerNode(n) => n * nodes,
        }
    }
}

pub fn parse_concurrency(text: &str) -> Result<Concurrency, String> {
    let bad = || {
        format!("invalid concurrency {text:?}: expected a count like 10 or per-node like 2n (1 to 1000)")
    };
    let (digits, per_node) = match text.strip_suffix('n') {
        Some(d) => (d, true),
        None => (text, false),
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    if n == 0 || n > 1000 {
        return Err(bad());
    }
    Ok(if per_node {
        Concurrency::PerNode(n)
    } else {
        Concurrency::Total(n)
    })
}

/// `--processes-per-key`: register clients sharing one key, a whole number from 1
/// (the run clamps it to the concurrency).
pub fn parse_processes_per_key(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "invalid processes per key {text:?}: expected a whole number from 1 (above the concurrency means every client on one key)"
        )),
    }
}

/// `--max-faults`: how many faults the nemesis applies at most, a whole number from 1.
pub fn parse_max_faults(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "invalid max faults {text:?}: expected a whole number from 1 (leave it out for as many as fit in the time limit)"
        )),
    }
}

/// Serializes a duration as fractional seconds.
pub fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One kind of fault a nemesis schedule can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A partition with a seeded topology (primaries, isolate, halves,
    /// majority-minority, majorities-ring, bridge).
    Partition,
    /// Clock bump or strobe on some nodes (lab: libfaketime).
    Clock,
    /// SIGKILL the system on some nodes, then restart it.
    Kill,
    /// SIGSTOP the system on some nodes, then SIGCONT.
    Pause,
    /// Packet loss (and delay, where netem exists) toward peers.
    Packet,
}

impl FaultKind {
    pub const ALL: [(&'static str, FaultKind); 5] = [
        ("partition", FaultKind::Partition),
        ("clock", FaultKind::Clock),
        ("kill", FaultKind::Kill),
        ("pause", FaultKind::Pause),
        ("packet", FaultKind::Packet),
    ];

    pub fn name(self) -> &'static str {
        FaultKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A set of [`FaultKind`]s (a bit each), in [`FaultKind::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultSet(u8);

impl FaultSet {
    fn bit(k: FaultKind) -> u8 {
        1 << FaultKind::ALL
            .iter()
            .position(|(_, x)| *x == k)
            .unwrap_or(0)
    }

    pub fn insert(&mut self, k: FaultKind) {
        self.0 |= FaultSet::bit(k);
    }

    pub fn contains(self, k: FaultKind) -> bool {
        self.0 & FaultSet::bit(k) != 0
    }

    pub fn kinds(self) -> Vec<FaultKind> {
        FaultKind::ALL
            .iter()
            .map(|(_, k)| *k)
            .filter(|k| self.contains(*k))
            .collect()
    }
}

/// One fault aimed at the current master (a seeded node when no node is master),
/// held for the nemesis interval, healed, repeated: the targeted scenarios of the
/// known-answer matrix (zoo/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetedFault {
    /// Cut the master off from every other node.
    IsolateMaster,
    /// Every node keeps a majority in view, but no two the same one: with 4+ nodes
    /// Jepsen's majorities ring; with 3, the master loses one replica only.
    MajoritiesRing,
    /// Set the master's clock [`TargetedFault::CLOCK_SKEW_S`] behind.
    ClockSkew,
    /// SIGKILL the master, restart it on its data.
    KillMaster,
    /// SIGSTOP the master, SIGCONT it.
    PauseMaster,
}

impl TargetedFault {
    /// How far a targeted clock skew sets the clock back, in seconds.
    pub const CLOCK_SKEW_S: f64 = -30.0;

    pub const ALL: [TargetedFault; 5] = [
        TargetedFault::IsolateMaster,
        TargetedFault::MajoritiesRing,
        TargetedFault::ClockSkew,
        TargetedFault::KillMaster,
        TargetedFault::PauseMaster,
    ];

    /// The name `--nemesis` takes.
    pub fn name(self) -> &'static str {
        match self {
            TargetedFault::IsolateMaster => "isolate-master",
            TargetedFault::MajoritiesRing => "majorities-ring",
            TargetedFault::ClockSkew => "clock-skew-master",
            TargetedFault::KillMaster => "kill-master",
            TargetedFault::PauseMaster => "pause-master",
        }
    }

    /// The kind of fault it injects.
    pub fn kind(self) -> FaultKind {
        match self {
            TargetedFault::IsolateMaster | TargetedFault::MajoritiesRing => FaultKind::Partition,
            TargetedFault::ClockSkew => FaultKind::Clock,
            TargetedFault::KillMaster => FaultKind::Kill,
            TargetedFault::PauseMaster => FaultKind::Pause,
        }
    }
}

/// The nemesis of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NemesisKind {
    /// No faults.
    None,
    /// Isolate the current master from every other node, then heal; repeat.
    PartitionMaster,
    /// A seeded schedule drawing one fault at a time from the set.
    Schedule(FaultSet),
    /// One targeted fault, healed, repeated.
    Targeted(TargetedFault),
}

impl NemesisKind {
    pub const ALL: &'static [(&'static str, NemesisKind)] = &[
        ("none", NemesisKind::None),
        ("partition", NemesisKind::PartitionMaster),
        (
            "isolate-master",
            NemesisKind::Targeted(TargetedFault::IsolateMaster),
        ),
        (
            "majorities-ring",
            NemesisKind::Targeted(TargetedFault::MajoritiesRing),
        ),
        (
            "clock-skew-master",
            NemesisKind::Targeted(TargetedFault::ClockSkew),
        ),
        (
            "kill-master",
            NemesisKind::Targeted(TargetedFault::KillMaster),
        ),
        (
            "pause-master",
            NemesisKind::Targeted(TargetedFault::PauseMaster),
        ),
    ];

    /// The name as given on the command line (`partition`, `clock,kill`).
    pub fn name(self) -> String {
        match self {
            NemesisKind::None => "none".into(),
            NemesisKind::PartitionMaster => "partition".into(),
            NemesisKind::Targeted(t) => t.name().into(),
            NemesisKind::Schedule(set) => set
                .kinds()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Whether the schedule may inject `k`.
    pub fn includes(self, k: FaultKind) -> bool {
        match self {
            NemesisKind::None => false,
            NemesisKind::PartitionMaster => k == FaultKind::Partition,
            NemesisKind::Schedule(set) => set.contains(k),
            NemesisKind::Targeted(t) => t.kind() == k,
        }
    }
}

impl Serialize for NemesisKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NemesisKind::None => s.serialize_str("none"),
            NemesisKind::PartitionMaster => s.serialize_str("partition-master"),
            NemesisKind::Schedule(_) | NemesisKind::Targeted(_) => s.serialize_str(&self.name()),
        }
    }
}

/// `none`; `partition` (isolate the current master, repeat); or a comma-separated
/// list of faults for a seeded schedule, e.g. `partition,clock,kill,pause,packet`.
pub fn parse_nemesis(text: &str) -> Result<NemesisKind, String> {
    if let Some((_, k)) = NemesisKind::ALL.iter().find(|(n, _)| *n == text) {
        return Ok(*k);
    }
    let known = || {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|(n, _)| *n).collect();
        let targeted: Vec<&str> = TargetedFault::ALL.iter().map(|t| t.name()).collect();
        format!(
            "none, {} (one fault at the master, repeated), or a comma-separated list of {}",
            targeted.join(", "),
            names.join(", ")
        )
    };
    let mut set = FaultSet::default();
    for word in text.split(',').map(str::trim) {
        let k = FaultKind::ALL
            .iter()
            .find(|(n, _)| *n == word)
            .map(|(_, k)| *k)
            .ok_or_else(|| format!("unknown nemesis {word:?} in {text:?} (known: {})", known()))?;
        set.insert(k);
    }
    Ok(NemesisKind::Schedule(set))
}

/// Everything a run needs, resolved from flags and defaults; stored as `test.json`.
/// No secrets: passwords and passphrases never appear here.
#[derive(Debug, Clone, Serialize)]
pub struct TestConfig {
    pub name: String,
    pub nodes: Vec<NodeSpec>,
    pub username: String,
    /// The system's kind (`zoo`, `postgres`, ...) and the mode it was deployed in.
    pub system: String,
    pub mode: String,
    pub workload: workloads::WorkloadKind,
    pub nemesis: NemesisKind,
    #[serde(serialize_with = "secs")]
    pub time_limit: Duration,
    /// The first part of the time limit, clients only: the nemesis starts after it.
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    /// Relative weights of the workload's operations (`read=2,write=1,cas=1`).
    pub op_mix: workloads::OpMix,
    /// Length of one fault; faults are separated by half of it.
    #[serde(serialize_with = "secs")]
    pub nemesis_interval: Duration,
    /// At most this many faults (`None`: as many as fit before the time limit).
    pub max_faults: Option<u32>,
    /// Wait after the final heal before the final reads.
    #[serde(serialize_with = "secs")]
    pub recovery_time: Duration,
    #[serde(serialize_with = "secs")]
    pub op_timeout: Duration,
    pub concurrency: usize,
    /// Register workload only (the others ignore it): client processes sharing one key
    /// at a time, 1 to `concurrency` (larger requests are clamped to `concurrency`, so
    /// this is the value used). More processes per key make stale reads and concurrent
    /// writes frequent, which non-linearizable systems need to be caught outside faults.
    pub processes_per_key: u64,
    /// Target ops/s over all clients; 0 means unthrottled.
    pub rate: f64,
    /// Upper bound on client operations in the run.
    pub max_ops: u64,
    pub seed: u64,
    pub leave_db_running: bool,
    /// Whether the nodes are the local lab.
    pub lab: bool,
    pub harness_version: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "x", "5d", "-1s", "1e9", "9999h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn concurrency_and_nemesis() {
        assert_eq!(parse_concurrency("2n").unwrap().resolve(5), 10);
        assert_eq!(parse_concurrency("7").unwrap().resolve(5), 7);
        for bad in ["0", "n", "-1", "2x", "5000"] {
            assert!(parse_concurrency(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_processes_per_key("12"), Ok(12));
        assert_eq!(parse_max_faults(" 3 "), Ok(3));
        for bad in ["0", "-1", "1.5", "", "many", "4294967296"] {
            let e = parse_max_faults(bad).unwrap_err();
            assert!(e.contains("invalid max faults"), "{bad:?}: {e}");
        }
        for bad in ["0", "-1", "two", "", "1.5"] {
            let e = parse_processes_per_key(bad).unwrap_err();
            assert!(e.starts_with("invalid processes per key"), "{bad}: {e}");
        }
        assert_eq!(
            parse_nemesis("partition").unwrap(),
            NemesisKind::PartitionMaster
        );
        let all = parse_nemesis("partition,clock,kill,pause,packet").unwrap();
        assert_eq!(all.name(), "partition,clock,kill,pause,packet");
        let k = parse_nemesis("pause,kill").unwrap();
        assert!(k.includes(FaultKind::Kill) && k.includes(FaultKind::Pause));
        assert!(!k.includes(FaultKind::Clock));
        assert_eq!(k.name(), "kill,pause");
        assert_eq!(serde_json::to_value(k).unwrap(), "kill,pause");
        assert_eq!(
            serde_json::to_value(NemesisKind::PartitionMaster).unwrap(),
            "partition-master"
        );
        assert_eq!(
            parse_nemesis("kill,smash").unwrap_err(),
            "unknown nemesis \"smash\" in \"kill,smash\" (known: none, isolate-master, majorities-ring, clock-skew-master, kill-master, pause-master (one fault at the master, repeated), or a comma-separated list of partition, clock, kill, pause, packet)"
        );
        for t in TargetedFault::ALL {
            let k = parse_nemesis(t.name()).unwrap();
            assert_eq!(k, NemesisKind::Targeted(t));
            assert_eq!(k.name(), t.name());
            assert!(k.includes(t.kind()));
            assert_eq!(serde_json::to_value(k).unwrap(), t.name());
        }
        assert!(parse_nemesis("clock-skew-master")
            .unwrap()
            .includes(FaultKind::Clock));
        assert!(parse_nemesis("").is_err());
    }
}
