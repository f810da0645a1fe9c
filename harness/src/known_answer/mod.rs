//! The known-answer matrix on the lab (`splitbrain known-answer`): for each zoo mode ×
//! targeted fault (isolate the master, majorities ring, clock skew, kill the master,
//! pause the master) and each seed, one run of the set workload and one of the
//! register workload on the first lab nodes; the two give what was observed (lost
//! writes, dual masters, linearizable, writes unavailable), which is compared with
//! what zoo/README.md expects. Prints one markdown table with a verdict per cell:
//! a sound cell passes when every seed matches, a flawed cell when its anomaly is
//! caught on enough seeds and no seed shows an anomaly the README does not expect.

pub mod command;
pub mod expect;

use crate::config::{NemesisKind, TargetedFault, TestConfig};
use crate::control::SshOptions;
use crate::lab::{self, LabConfig};
use crate::runner::{self, stop::Stop, RunOutcome};
use crate::systems::zoo::spares::{Spares, SparingZoo};
use crate::systems::zoo::Zoo;
use anyhow::Context;
use expect::Results;
use std::path::PathBuf;
use std::time::Duration;
use tabled::builder::Builder;
use tabled::settings::Style;
use workloads::WorkloadKind;

/// How the matrix runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub modes: Vec<String>,
    pub faults: Vec<TargetedFault>,
    /// Seeds of cells that expect an anomaly.
    pub seeds: Vec<u64>,
    /// Seeds of cells that expect none.
    pub sound_seeds: Vec<u64>,
    /// Seeds on which a flawed cell must be caught (of `seeds`).
    pub min_caught: usize,
    /// Lab nodes used (the first N).
    pub nodes: usize,
    pub time_limit: Duration,
    pub nemesis_interval: Duration,
    pub recovery_time: Duration,
    pub op_timeout: Duration,
    pub concurrency: usize,
    pub rate: f64,
    pub results_dir: PathBuf,
    pub zoo_binary: PathBuf,
    /// Take the lab's lock for each seed's runs (off when the caller holds it).
    pub take_lab_lock: bool,
}

impl Options {
    /// The full matrix: every harness mode × every targeted fault, seeds 1..=5,
    /// 3 nodes, a 7 s run with one 4 s fault (from 2 s to 6 s); `pause-master` is
    /// timed by [`timing`].
    pub fn full(zoo_binary: PathBuf, results_dir: PathBuf) -> Options {
        Options {
            modes: crate::systems::zoo::MODES
                .iter()
                .map(|m| m.to_string())
                .collect(),
            faults: TargetedFault::ALL.to_vec(),
            seeds: (1..=5).collect(),
            sound_seeds: (1..=5).collect(),
            min_caught: 4,
            nodes: 3,
            time_limit: Duration::from_secs(7),
            nemesis_interval: Duration::from_secs(4),
            recovery_time: Duration::from_secs(2),
            op_timeout: Duration::from_secs(1),
            concurrency: 6,
            rate: 150.0,
            results_dir,
            zoo_binary,
            take_lab_lock: true,
        }
    }
}

/// One cell's outcome over its seeds.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub mode: String,
    pub fault: TargetedFault,
    pub expected: Results,
    /// Per seed: what was observed, or why nothing could be.
    pub observed: Vec<(u64, Result<Results, String>)>,
    pub caught: usize,
    pub pass: bool,
    /// The run folders, set then register, per seed.
    pub dirs: Vec<PathBuf>,
}

impl CellResult {
    fn judge(&mut self, min_caught: usize) {
        let ok: Vec<&Results> = self
            .observed
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let surprises = ok.iter().any(|r| r.surprises(&self.expected));
        self.caught = ok.iter().filter(|r| r.catches(&self.expected)).count();
        let all_ran = ok.len() == self.observed.len() && !ok.is_empty();
        self.pass = if self.expected.anomalous() {
            !surprises && self.caught >= min_caught.min(self.observed.len())
        } else {
            all_ran && ok.iter().all(|r| **r == self.expected)
        };
    }
}

/// The lab's first `n` nodes and the SSH options to reach them.
fn lab_nodes(n: usize) -> anyhow::Result<(Vec<crate::nodes::NodeSpec>, SshOptions)> {
    let info = lab::up(&LabConfig::default()).context("bringing up the local lab")?;
    anyhow::ensure!(
        info.nodes.len() >= n,
        "the lab has {} nodes, the matrix needs {n}",
        info.nodes.len()
    );
    let ssh = SshOptions {
        private_key: Some(info.private_key.clone()),
        use_agent: false,
        known_hosts: info.known_hosts.clone(),
        ..SshOptions::default()
    };
    Ok((info.nodes.into_iter().take(n).collect(), ssh))
}

fn config(
    o: &Options,
    nodes: &[crate::nodes::NodeSpec],
    mode: &str,
    fault: TargetedFault,
    workload: WorkloadKind,
    seed: u64,
) -> TestConfig {
    TestConfig {
        name: format!("known-answer-{mode}-{}-{workload}", fault.name()),
        nodes: nodes.to_vec(),
        username: "root".into(),
        system: "zoo".into(),
        mode: mode.to_string(),
        workload,
        nemesis: NemesisKind::Targeted(fault),
        time_limit: timing(o, fault).0,
        warmup: Duration::ZERO,
        op_mix: workload.default_mix(),
        nemesis_interval: timing(o, fault).1,
        max_faults: Some(faults_per_run(fault)),
        recovery_time: o.recovery_time,
        op_timeout: o.op_timeout,
        concurrency: o.concurrency * clients_factor(fault),
        processes_per_key: processes_per_key(
            mode,
            fault,
            workload,
            o.concurrency * clients_factor(fault),
        ),
        rate: rate(o, fault, workload),
        max_ops: 1_000_000,
        seed,
        leave_db_running: false,
        lab: true,
        harness_version: env!("CARGO_PKG_VERSION"),
    }
}

/// The run's time limit and the fault's length. `pause-master` pauses
/// [`PAUSE_LONGER`] longer than the other faults last, [`PAUSE_CYCLES`] times (each
/// time the master of the moment, after the same gap of half a pause), in a run that
/// ends as long after the last heal as the others end after theirs. Longer: a
/// failover takes 1.5 s (async-failover) to 2.9 s (semi-sync, raft) of a 4 s pause,
/// which left the new master about one second of writes for the woken one to be
/// stale about, too little for the 16 register keys to show it. Three times: whether
/// the woken master answers a waiting client before it hears of the new master is a
/// race it won in about half the wakes on the lab; each pause is another try (with
/// two, async-failover was caught on 2 of seeds 6–10; with three, on 5).
///
/// `kill-master` runs [`AFTER_RESTART`] longer: its fault is held for the interval
/// once the kill is done, and the kill itself took 1.3–1.9 s on the lab, so in a run
/// as long as the others the restart came at the time limit and no client met the
/// restarted node while it caught up (only the final reads did, after the recovery
/// time). `vclock-ring` × `kill-master` was caught on 3 of 5 seeds that way.
pub(crate) fn timing(o: &Options, fault: TargetedFault) -> (Duration, Duration) {
    match fault {
        TargetedFault::PauseMaster => {
            let pause = o.nemesis_interval + PAUSE_LONGER;
            let after_heal = o.time_limit.saturating_sub(o.nemesis_interval * 3 / 2);
            (pause * 3 / 2 * PAUSE_CYCLES + after_heal, pause)
        }
        TargetedFault::KillMaster => (o.time_limit + AFTER_RESTART, o.nemesis_interval),
        _ => (o.time_limit, o.nemesis_interval),
    }
}

/// How many faults a run applies: [`PAUSE_CYCLES`] pauses, else one. Explicit, so
/// that a fault that applies quickly cannot leave room for a second one before the
/// time limit (the nemesis applies another while a second is left after its gap).
fn faults_per_run(fault: TargetedFault) -> u32 {
    match fault {
        TargetedFault::PauseMaster => PAUSE_CYCLES,
        _ => 1,
    }
}

/// Target ops/s of a run: the usual rate per client, except `pause-master`'s set
/// runs, which ask for [`PAUSE_SET_RATE`]: more than a master-slave mode's master
/// takes (530–660 ops/s on the lab, bound by its fsync), so that a write is nearly
/// always waiting for its replicas when the master freezes. That is what
/// `semi-sync`'s flaw needs (its semi-sync wait times out during the pause, and the
/// woken master acks alone): at 300 ops/s it showed on 1 of 5 seeds.
fn rate(o: &Options, fault: TargetedFault, workload: WorkloadKind) -> f64 {
    match (fault, workload) {
        (TargetedFault::PauseMaster, WorkloadKind::Set) => PAUSE_SET_RATE,
        _ => o.rate * clients_factor(fault) as f64,
    }
}

/// `pause-master`'s set runs' target rate (ops/s over all clients).
pub const PAUSE_SET_RATE: f64 = 1200.0;

/// How much longer `kill-master` runs than the time limit: clients go on for at
/// least two seconds after the restart.
pub const AFTER_RESTART: Duration = Duration::from_secs(3);

/// `pause-master` runs twice the clients, each at the usual rate: four of twelve
/// stick with the frozen master (clients are spread over the nodes), so each wake
/// finds four requests waiting, on four register keys.
fn clients_factor(fault: TargetedFault) -> usize {
    match fault {
        TargetedFault::PauseMaster => 2,
        _ => 1,
    }
}

/// Register processes per key: every client on one key for the ring modes and for
/// `pause-master`, the default two for the rest. The rings are not linearizable by
/// design (reads are local, writes are acknowledged before the asynchronous
/// replication), but with two processes per key a stale read outside a partition
/// needs one client's read on one node to land within the ~1 ms replication lag
/// after the other's write on another: `lww-ring` × `kill-master` was caught on 2 of
/// 5 seeds and `vclock-ring` × `clock-skew-master` missed on seed 2. A woken master's
/// stale reads are of the keys its waiting clients hold: with two processes per key
/// those were often keys nobody had written since, and `async-failover` ×
/// `pause-master` missed on 2 of 5 seeds. With every client on one key, spread over
/// the nodes, stale reads and concurrent writes are frequent (as in Jepsen).
fn processes_per_key(
    mode: &str,
    fault: TargetedFault,
    workload: WorkloadKind,
    concurrency: usize,
) -> u64 {
    let one_key =
        crate::systems::zoo::MASTERLESS.contains(&mode) || fault == TargetedFault::PauseMaster;
    if workload == WorkloadKind::Register && one_key {
        concurrency as u64
    } else {
        workloads::register::DEFAULT_PROCESSES_PER_KEY
    }
}

/// How much longer `pause-master` pauses than the other faults last.
pub const PAUSE_LONGER: Duration = Duration::from_secs(1);

/// How many times `pause-master` pauses the master in one run.
pub const PAUSE_CYCLES: u32 = 3;

/// Reads a run's stored history back (what was judged).
fn history(o: &RunOutcome) -> anyhow::Result<Vec<checkers::Op>> {
    let path = o.dir.file("history.jsonl");
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    checkers::history::read_jsonl(std::io::BufReader::new(f))
        .with_context(|| format!("reading {}", path.display()))
}

/// Runs the matrix; `progress` hears one line per run. Stops early (with the cells
/// finished so far) when `stop` is set.
pub async fn run(
    o: &Options,
    stop: &Stop,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<CellResult>> {
    let mut cells = Vec::new();
    for mode in &o.modes {
        for fault in &o.faults {
            let expected = expect::expected(mode, *fault).map_err(anyhow::Error::msg)?;
            cells.push(CellResult {
                mode: mode.clone(),
                fault: *fault,
                expected,
                observed: Vec::new(),
                caught: 0,
                pass: false,
                dirs: Vec::new(),
            });
        }
    }
    let mut done = Vec::new();
    for mut cell in cells {
        let seeds = if cell.expected.anomalous() {
            &o.seeds
        } else {
            &o.sound_seeds
        };
        for &seed in seeds {
            if stop.is_stopped() {
                return Ok(done);
            }
            progress(&format!(
                "known-answer: zoo {} / {} / seed {seed}",
                cell.mode,
                cell.fault.name()
            ));
            let mut attempt = 1;
            let observed = loop {
                let lock = if o.take_lab_lock {
                    Some(
                        lab::exclusive_use(Duration::from_secs(1800))
                            .context("waiting for the local lab")?,
                    )
                } else {
                    None
                };
                let (nodes, ssh) = lab_nodes(o.nodes)?;
                let seed_runs = run_seed(o, stop, &nodes, &ssh, &mut cell, seed).await;
                if let Some(lock) = lock {
                    // Others poll for the lab: leave them a window before taking it again.
                    drop(lock);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                match seed_runs {
                    Err(e) if attempt < SEED_ATTEMPTS && !stop.is_stopped() => {
                        progress(&format!(
                            "  attempt {attempt} could not run ({e}); trying the seed again"
                        ));
                        attempt += 1;
                    }
                    Err(e) => break Err(e),
                    Ok(observed) => break observed,
                }
            };
            progress(&match &observed {
                Ok(r) => format!("  observed {r} (expected {})", cell.expected),
                Err(e) => format!("  no observation: {e}"),
            });
            cell.observed.push((seed, observed));
        }
        cell.judge(o.min_caught);
        done.push(cell);
    }
    Ok(done)
}

/// Spare connections per node in the `pause-master` scenario: the four clients and
/// the role observer of the frozen master use one per timed-out request (a 5 s
/// pause, 1 s timeouts: about 5 each), all of them opened before it froze.
pub const PAUSE_SPARES: usize = 40;

/// How often a seed is tried when the harness could not run it (the lab's SSH
/// dropped, a node could not be set up): such a failure says nothing about the zoo.
const SEED_ATTEMPTS: u32 = 3;

/// One seed's two runs (set, then register): `Err` when the harness could not run
/// one of them (worth another attempt), else what they observed (`Err` inside when
/// a checker could not decide or the run was interrupted: not retried).
async fn run_seed(
    o: &Options,
    stop: &Stop,
    nodes: &[crate::nodes::NodeSpec],
    ssh: &SshOptions,
    cell: &mut CellResult,
    seed: u64,
) -> Result<Result<Results, String>, String> {
    let mut outcomes = Vec::new();
    for w in [WorkloadKind::Set, WorkloadKind::Register] {
        let cfg = config(o, nodes, &cell.mode, cell.fault, w, seed);
        let mut zoo =
            Zoo::with_binary(&cell.mode, o.zoo_binary.clone()).map_err(|e| format!("{e:#}"))?;
        zoo.faketime = cell.fault == TargetedFault::ClockSkew;
        let (dir, analysis) = (&o.results_dir, workloads::AnalyseOptions::default());
        let out = if cell.fault == TargetedFault::PauseMaster {
            let spares = Spares::new(PAUSE_SPARES, zoo.connect_timeout);
            let zoo = SparingZoo::new(zoo, spares);
            runner::run_test(cfg, zoo, ssh, dir, stop.clone(), &analysis).await
        } else {
            runner::run_test(cfg, zoo, ssh, dir, stop.clone(), &analysis).await
        }
        .map_err(|e| format!("{e:#}").replace('\n', " "))?;
        outcomes.push(out);
    }
    let (set, reg) = (outcomes.remove(0), outcomes.remove(0));
    cell.dirs.push(set.dir.path.clone());
    cell.dirs.push(reg.dir.path.clone());
    Ok(match history(&set) {
        Ok(h) if !set.results.interrupted && !reg.results.interrupted => {
            expect::observe(&set, &h, &reg)
        }
        Ok(_) => Err("interrupted".to_string()),
        Err(e) => Err(format!("{e:#}")),
    })
}

/// The most common observation over the seeds (first seen wins ties), or why none.
fn typical(c: &CellResult) -> String {
    let ok: Vec<&Results> = c
        .observed
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let count = |r: &Results| ok.iter().filter(|x| **x == r).count();
    // The most seeds; on a tie the one seen first.
    let best = ok
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(i, r)| (count(r), std::cmp::Reverse(*i)))
        .map(|(_, r)| r);
    let mut s = best.map_or_else(|| "none".to_string(), |r| r.to_string());
    let others = ok.len() - best.map_or(0, count);
    if others > 0 {
        s.push_str(&format!(" ({others} seed(s) differ)"));
    }
    let errors = c.observed.len() - ok.len();
    if errors > 0 {
        s.push_str(&format!(" ({errors} seed(s) not observed)"));
    }
    s
}

/// The matrix as a markdown table.
pub fn render(cells: &[CellResult]) -> String {
    let mut b = Builder::default();
    b.push_record([
        "mode",
        "fault",
        "expected",
        "observed (most seeds)",
        "caught",
        "verdict",
    ]);
    for c in cells {
        let caught = if c.expected.anomalous() {
            format!("{}/{}", c.caught, c.observed.len())
        } else {
            format!(
                "sound: {}/{} match",
                c.observed
                    .iter()
                    .filter(|(_, r)| r.as_ref().ok() == Some(&c.expected))
                    .count(),
                c.observed.len()
            )
        };
        b.push_record([
            c.mode.clone(),
            c.fault.name().to_string(),
            c.expected.to_string(),
            typical(c),
            caught,
            if c.pass { "PASS" } else { "FAIL" }.to_string(),
        ]);
    }
    let mut t = b.build();
    t.with(Style::markdown());
    t.to_string()
}

/// Every seed's observation that differs from the expectation, one line each.
pub fn deviations(cells: &[CellResult]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cells {
        for (seed, r) in &c.observed {
            match r {
                Ok(r) if *r != c.expected => out.push(format!(
                    "{} / {} / seed {seed}: observed {r}, expected {}",
                    c.mode,
                    c.fault.name(),
                    c.expected
                )),
                Ok(_) => {}
                Err(e) => out.push(format!(
                    "{} / {} / seed {seed}: {e}",
                    c.mode,
                    c.fault.name()
                )),
            }
        }
    }
    out
}

/// Every cell and seed as JSON (stored beside the runs, for re-reading the matrix).
pub fn to_json(cells: &[CellResult]) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            let seeds: Vec<serde_json::Value> = c
                .observed
                .iter()
                .map(|(seed, r)| match r {
                    Ok(r) => serde_json::json!({"seed": seed, "observed": r.to_string()}),
                    Err(e) => serde_json::json!({"seed": seed, "error": e}),
                })
                .collect();
            serde_json::json!({
                "mode": c.mode,
                "fault": c.fault.name(),
                "expected": c.expected.to_string(),
                "seeds": seeds,
                "caught": c.caught,
                "pass": c.pass,
                "runs": c.dirs,
            })
        })
        .collect();
    serde_json::json!({ "cells": cells })
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    #[test]
    fn pause_master_pauses_longer_and_still_ends_a_second_before_the_run() {
        let o = Options::full(PathBuf::from("zoo"), PathBuf::from("results"));
        let s = Duration::from_secs;
        assert_eq!(timing(&o, TargetedFault::IsolateMaster), (s(7), s(4)));
        let (limit, pause) = timing(&o, TargetedFault::PauseMaster);
        // Three 5 s pauses, from 2.5 s, 10 s and 17.5 s; the last healed at 22.5 s.
        assert_eq!((limit, pause), (Duration::from_millis(23_500), s(5)));
        // Every fault ends 1 s before the clients stop.
        assert_eq!(limit - pause * 3 / 2 * PAUSE_CYCLES, s(1));
        assert_eq!(o.time_limit - o.nemesis_interval * 3 / 2, s(1));
    }

    #[test]
    fn kill_master_runs_on_after_the_restart_and_kills_once() {
        let o = Options::full(PathBuf::from("zoo"), PathBuf::from("results"));
        let s = Duration::from_secs;
        let (limit, hold) = timing(&o, TargetedFault::KillMaster);
        assert_eq!((limit, hold), (s(10), s(4)));
        // Killed from 2 s, held 4 s after a kill that takes up to 2 s: the restart
        // is at 8 s at the latest, two seconds before the clients stop.
        assert!(limit >= hold / 2 + s(2) + hold + s(2), "{limit:?}");
        for fault in TargetedFault::ALL {
            let c = config(&o, &[], "raft", fault, WorkloadKind::Set, 1);
            let want = if fault == TargetedFault::PauseMaster {
                3
            } else {
                1
            };
            assert_eq!(c.max_faults, Some(want), "{}", fault.name());
        }
    }

    #[test]
    fn pause_master_set_runs_ask_for_more_than_a_master_takes() {
        let o = Options::full(PathBuf::from("zoo"), PathBuf::from("results"));
        let rate = |fault, workload| config(&o, &[], "semi-sync", fault, workload, 1).rate;
        let pause = TargetedFault::PauseMaster;
        assert_eq!(rate(pause, WorkloadKind::Set), PAUSE_SET_RATE);
        const { assert!(PAUSE_SET_RATE > 700.0) };
        // Register runs and other faults keep the usual rate per client.
        assert_eq!(rate(pause, WorkloadKind::Register), 300.0);
        assert_eq!(rate(TargetedFault::KillMaster, WorkloadKind::Set), 150.0);
    }
}

#[cfg(test)]
mod ring_tests {
    use super::*;

    #[test]
    fn ring_and_pause_register_runs_put_every_client_on_one_key() {
        let o = Options::full(PathBuf::from("zoo"), PathBuf::from("results"));
        let per_key = |mode: &str, fault, workload| {
            let c = config(&o, &[], mode, fault, workload, 1);
            (c.processes_per_key, c.concurrency as u64)
        };
        let (reg, kill, skew) = (
            WorkloadKind::Register,
            TargetedFault::KillMaster,
            TargetedFault::ClockSkew,
        );
        assert_eq!(per_key("vclock-ring", skew, reg), (6, 6));
        assert_eq!(per_key("lww-ring", kill, reg), (6, 6));
        assert_eq!(
            per_key("lww-ring", TargetedFault::PauseMaster, reg),
            (12, 12)
        );
        assert_eq!(per_key("raft", kill, reg), (2, 6));
        assert_eq!(per_key("lww-ring", kill, WorkloadKind::Set), (2, 6));
        // A paused master's waiting clients all share the key the others write.
        let pause = TargetedFault::PauseMaster;
        assert_eq!(per_key("async-failover", pause, reg), (12, 12));
        assert_eq!(per_key("raft", pause, reg), (12, 12));
        assert_eq!(per_key("raft", pause, WorkloadKind::Set), (2, 12));
    }
}
