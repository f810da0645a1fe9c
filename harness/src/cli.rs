//! The command line (clap): parses arguments, resolves a [`TestConfig`], and maps
//! every outcome to DESIGN.md's exit codes — 0 valid, 1 invalid, 2 unknown, 3 the
//! harness could not do its job (with one line on stderr saying what and where).

use crate::cluster_args::{ClusterArgs, LabUse, Resolved};
use crate::config::{self, Concurrency, NemesisKind, TestConfig};
use crate::control::SshOptions;
use crate::lab::{self, LabConfig};
use crate::runner::{self, stop::Stop};
use crate::summary;
use crate::systems::zoo::Zoo;
use crate::systems::{System, SystemKind, SystemOptions, SystemSpec};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use workloads::WorkloadKind;

/// Exit status when the harness itself failed.
pub const EXIT_HARNESS: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "splitbrain",
    version,
    about = "Jepsen-style fault injection: partitions, clocks, crashes; checks for lost writes and split brain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one test and report (with no nodes given: on the local lab).
    Test(Box<TestArgs>),
    /// Run a matrix of zoo modes × workloads × nemeses one after another; one table.
    TestAll(Box<crate::test_all::TestAllArgs>),
    /// Re-check a stored or foreign history (JSONL, Jepsen EDN, Porcupine logs).
    Check(crate::check::CheckArgs),
    /// The local lab: a cluster of network namespaces on this machine.
    Lab(LabArgs),
    /// Manual faults against a running cluster: partition, packet, clock, kill, pause,
    /// resume, restart, heal, status.
    Fault(crate::fault::FaultArgs),
    /// Rebuild report.html, report.md, junit.xml and plots of a stored run (also one
    /// whose controller was killed: results.json is then reconstructed from the history).
    Report(ReportArgs),
    /// Browse the results store over HTTP.
    Serve(crate::serve::ServeArgs),
    /// The zoo's known-answer matrix on the lab: every mode × targeted fault, seeded
    /// runs, expected (zoo/README.md) against observed; exit 0 when every cell passed.
    KnownAnswer(Box<crate::known_answer::command::KnownAnswerArgs>),
    /// Preflight of the controller and the nodes (default: the lab): SSH, host keys,
    /// root, iptables, tc/netem, clock rights, time sync, disk, clock offset; each
    /// failure with its fix. Exit 0 when nothing failed, 3 otherwise.
    Doctor(Box<crate::doctor::DoctorArgs>),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder, e.g. results/<test>/<YYYYMMDDTHHMMSS>.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
    /// Where the lab keeps its key, known_hosts, nodes file and per-node directories.
    #[arg(long, global = true, default_value = lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum LabAction {
    /// Create the lab (idempotent).
    Up {
        /// Number of nodes (1 to 9).
        #[arg(long, default_value_t = lab::DEFAULT_NODES)]
        nodes: usize,
    },
    /// Remove every namespace, link, process and file of the lab.
    Down,
    /// Show each node's state.
    Status,
    /// Hard-reboot one node: take it off the network, SIGKILL every process in its
    /// namespace (sshd and the system included), clear its iptables tables and qdiscs,
    /// wait, then bring the network and sshd back as boot would. Files are kept; the
    /// system stays down until the harness starts it.
    Reboot {
        /// The node, e.g. n3.
        node: String,
        /// How long the node stays down (at most 10m).
        #[arg(long, default_value = "3s", value_parser = config::parse_duration)]
        down_for: Duration,
    },
}

#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Which nodes and how to log in.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// System under test, `NAME` or `NAME:MODE`: zoo (mode from --zoo-mode),
    /// redis-sentinel, etcd, postgres:async|sync-any-1|sync-all.
    #[arg(long, default_value = "zoo")]
    pub system: String,
    /// Zoo mode (architecture) to deploy.
    #[arg(long, default_value = "async-failover")]
    pub zoo_mode: String,
    /// The zoo binary to upload; default: `zoo` beside this executable.
    #[arg(long)]
    pub zoo_binary: Option<PathBuf>,
    /// Workload.
    #[arg(long, default_value = "set", value_parser = |s: &str| s.parse::<WorkloadKind>())]
    pub workload: WorkloadKind,
    /// Nemesis: partition (isolate the current master, heal, repeat), none, or a
    /// seeded schedule of faults drawn from a list: partition,clock,kill,pause,packet.
    #[arg(long, default_value = "partition", value_parser = config::parse_nemesis)]
    pub nemesis: NemesisKind,
    /// How long each fault lasts; faults are half of this apart.
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    pub nemesis_interval: Duration,
    /// Apply at most N faults (default: as many as fit in the time limit, one every
    /// one and a half intervals).
    #[arg(long, value_name = "N", value_parser = config::parse_max_faults,
          allow_negative_numbers = true)]
    pub max_faults: Option<u32>,
    /// How long clients run.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub time_limit: Duration,
    /// Wait after the final heal before the final reads.
    #[arg(long, default_value = "5s", value_parser = config::parse_duration)]
    pub recovery_time: Duration,
    /// Client processes: a count, or `Nn` for N per node.
    #[arg(long, default_value = "2n", value_parser = config::parse_concurrency)]
    pub concurrency: Concurrency,
    /// Register workload only (ignored by the others): client processes sharing one
    /// key at a time, from 1; a value above the concurrency is clamped to it (every
    /// process on one key), and test.json records the value used. More processes per
    /// key make stale reads and concurrent writes frequent.
    #[arg(long, value_name = "N", default_value_t = workloads::register::DEFAULT_PROCESSES_PER_KEY,
          value_parser = config::parse_processes_per_key, allow_negative_numbers = true)]
    pub processes_per_key: u64,
    /// Target ops/s over all clients (0: as fast as they go).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Upper bound on client operations in the run.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_ops: u64,
    /// Per-operation timeout; an op that exceeds it is indeterminate (`info`).
    #[arg(long, default_value = "2s", value_parser = config::parse_duration)]
    pub op_timeout: Duration,
    /// Seed for the op mix and fault choices (default: random, recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Test name (the results folder); default from system, workload and nemesis.
    #[arg(long)]
    pub name: Option<String>,
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Leave the system running on the nodes after the test.
    #[arg(long)]
    pub leave_db_running: bool,
    /// Run the test this many times, one after another (each its own results folder).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub test_count: u32,
    /// Availability verdict: after every fault a write must succeed within this long
    /// of the fault's start (detection + recovery + normal response).
    #[arg(long, value_parser = config::parse_duration)]
    pub latency_budget: Option<Duration>,
    /// Clients run this long before the first fault (the first part of --time-limit).
    #[arg(long, default_value = "0s", value_parser = config::parse_duration)]
    pub warmup: Duration,
    /// Relative weights of the workload's operations: `add=9,read=1` (set),
    /// `read=2,write=1,cas=1` (register), `append=4,read=1` (list-append); operations
    /// not named are not run.
    #[arg(long)]
    pub op_mix: Option<String>,
}

/// Parses arguments; clap's own errors map to exit 3 (bad input), not clap's 2, which
/// DESIGN.md reserves for `unknown`.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            eprintln!(
                "splitbrain: error: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return EXIT_HARNESS;
        }
    };
    // Results and logs must not be world-writable whatever umask the caller left:
    // keep its bits and add o-w.
    // SAFETY: umask only swaps this process's file-creation mask.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old | 0o002);
    }
    crate::log::init();
    match cli.command {
        Command::Check(args) => crate::check::run(&args),
        Command::Lab(args) => report(lab_command(args)),
        Command::Fault(args) => crate::fault::run(args),
        Command::Test(args) => report(test_command(*args)),
        Command::TestAll(args) => report(crate::test_all::run(*args)),
        Command::Report(args) => report(report_command(&args)),
        Command::Serve(args) => report(crate::serve::run(args)),
        Command::KnownAnswer(args) => report(crate::known_answer::command::run(*args)),
        Command::Doctor(args) => report(crate::doctor::run(*args)),
    }
}

fn report(r: anyhow::Result<u8>) -> u8 {
    match r {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}").replace('\n', " ");
            eprintln!("splitbrain: error: {text}");
            EXIT_HARNESS
        }
    }
}

fn report_command(args: &ReportArgs) -> anyhow::Result<u8> {
    let t = std::time::Instant::now();
    let (run, files) = crate::report::rebuild(&args.run_dir)?;
    for f in &files {
        println!("wrote {}", f.display());
    }
    println!(
        "verdict {} ({} history entries, {:.2}s)",
        run.results.valid.to_string().to_uppercase(),
        run.history.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn lab_command(args: LabArgs) -> anyhow::Result<u8> {
    match args.action {
        LabAction::Up { nodes } => {
            let cfg = LabConfig {
                nodes,
                state_dir: args.state_dir,
            };
            let t = std::time::Instant::now();
            let info = lab::up(&cfg)?;
            println!(
                "lab up: {} nodes in {:.2}s",
                info.nodes.len(),
                t.elapsed().as_secs_f64()
            );
            println!("nodes file:  {}", info.nodes_file.display());
            println!(
                "ssh config:  {}  (e.g. ssh -F {} n1)",
                info.ssh_config.display(),
                info.ssh_config.display()
            );
            Ok(0)
        }
        LabAction::Down => {
            let t = std::time::Instant::now();
            lab::down(&LabConfig {
                nodes: lab::DEFAULT_NODES,
                state_dir: args.state_dir,
            })?;
            println!("lab down in {:.2}s", t.elapsed().as_secs_f64());
            Ok(0)
        }
        LabAction::Status => {
            let s = lab::status(&LabConfig {
                nodes: lab::DEFAULT_NODES,
                state_dir: args.state_dir,
            })?;
            print!("{s}");
            Ok(0)
        }
        LabAction::Reboot { node, down_for } => {
            let cfg = LabConfig {
                nodes: lab::DEFAULT_NODES,
                state_dir: args.state_dir,
            };
            let r = lab::reboot(&cfg, &node, down_for)?;
            println!(
                "{} ({}) rebooted: {} processes killed, {} iptables rules and {} qdiscs cleared, down {:.2}s; sshd back{}; the system's processes stay down until the harness starts them",
                r.node,
                r.addr,
                r.killed.len(),
                r.rules_flushed,
                r.qdiscs_removed.len(),
                r.down.as_secs_f64(),
                r.sshd_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

/// The zoo binary beside the running executable.
fn default_zoo_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("zoo")))
        .unwrap_or_else(|| PathBuf::from("zoo"))
}

/// The runtime every test runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn test_command(args: TestArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let stop = Stop::default();
    {
        let _guard = rt.enter();
        runner::install_signal_stop(stop.clone());
    }
    let outcomes = run_one(&args, &rt, &stop)?;
    let verdict = outcomes
        .iter()
        .fold(checkers::Validity::Valid, |v, o| v.and(o.results.valid));
    if let Some(line) = unhealed(&outcomes) {
        eprintln!("splitbrain: error: {line}");
        return Ok(EXIT_HARNESS);
    }
    Ok(verdict.exit_code())
}

/// One line when a run's final heal left a node it could not heal: the verdict stands
/// in the reports, but the exit code says the cluster may be left broken, so a
/// nightly job does not start its next run on a partitioned or skewed cluster.
pub(crate) fn unhealed(outcomes: &[runner::RunOutcome]) -> Option<String> {
    summary::unhealed_line(outcomes.iter().map(|o| {
        (
            o.dir.path.as_path(),
            o.results.valid,
            o.results.heal_errors.as_slice(),
        )
    }))
}

/// Runs `args.test_count` tests as `splitbrain test` does, printing each summary;
/// stops early when `stop` is set.
pub(crate) fn run_one(
    args: &TestArgs,
    rt: &tokio::runtime::Runtime,
    stop: &Stop,
) -> anyhow::Result<Vec<runner::RunOutcome>> {
    let spec = SystemSpec::parse(&args.system, &args.zoo_mode).map_err(anyhow::Error::msg)?;
    if !(args.rate.is_finite() && args.rate >= 0.0 && args.rate <= 1e7) {
        bail!(
            "invalid --rate {}: expected ops/s from 0 (unlimited) to 10000000",
            args.rate
        );
    }
    if args.time_limit.is_zero() {
        bail!("invalid --time-limit: must be more than 0");
    }
    if args.warmup >= args.time_limit {
        bail!(
            "invalid --warmup {:?}: must be shorter than --time-limit {:?} (the warm-up is its first part)",
            args.warmup,
            args.time_limit
        );
    }
    let op_mix = match &args.op_mix {
        Some(spec) => args
            .workload
            .parse_op_mix(spec)
            .map_err(|e| anyhow::anyhow!("invalid --op-mix {spec:?}: {e}"))?,
        None => args.workload.default_mix(),
    };
    if args.nemesis_interval.is_zero() {
        bail!("invalid --nemesis-interval: must be more than 0 (how long each fault lasts)");
    }
    let nemesis_name = args.nemesis.name().replace(',', "_");
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&spec, args.workload, &nemesis_name));
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !name.starts_with('.'),
        "invalid --name {name:?}: use letters, digits, '-', '_', '.'"
    );
    if let Some(k) = &args.cluster.ssh_private_key {
        anyhow::ensure!(
            k.is_file(),
            "--ssh-private-key {}: no such file",
            k.display()
        );
    }
    let Resolved {
        nodes,
        ssh,
        lab: is_lab,
        lab_lock: _lab_lock,
    } = args.cluster.resolve(LabUse::BringUp(stop))?;
    // A key file that cannot be read (or decrypted) is the user's input: say so before
    // a results folder is made for a run that cannot start.
    if ssh.private_key.is_some() {
        crate::control::Credentials::load(&ssh)?;
    }
    let opts = SystemOptions {
        spec: spec.clone(),
        lab: is_lab,
        clock_faults: args.nemesis.includes(config::FaultKind::Clock),
        zoo_binary: args.zoo_binary.clone().unwrap_or_else(default_zoo_binary),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let concurrency = args.concurrency.resolve(nodes.len());
    let cfg = TestConfig {
        name,
        concurrency,
        processes_per_key: args.processes_per_key.min(concurrency as u64),
        nodes,
        username: args.cluster.username.clone(),
        system: spec.kind.to_string(),
        mode: spec.mode.clone(),
        workload: args.workload,
        nemesis: args.nemesis,
        time_limit: args.time_limit,
        warmup: args.warmup,
        op_mix,
        nemesis_interval: args.nemesis_interval,
        recovery_time: args.recovery_time,
        op_timeout: args.op_timeout,
        rate: args.rate,
        max_ops: args.max_ops,
        max_faults: args.max_faults,
        seed,
        leave_db_running: args.leave_db_running,
        lab: is_lab,
        harness_version: env!("CARGO_PKG_VERSION"),
    };
    let analysis = workloads::AnalyseOptions {
        latency_budget: args.latency_budget,
    };
    let run = Repeat {
        count: args.test_count,
        cfg,
        ssh: &ssh,
        results_dir: &args.results_dir,
        analysis: &analysis,
        rt,
        stop,
    };
    match spec.kind {
        SystemKind::Zoo => run.each(|| Zoo::new(&opts)),
        SystemKind::Etcd => run.each(|| crate::systems::etcd::Etcd::new(&opts)),
        SystemKind::RedisSentinel => run.each(|| crate::systems::redis::RedisSentinel::new(&opts)),
        SystemKind::Postgres => {
            run.each(|| crate::systems::postgres::Postgres::new(&opts, args.workload))
        }
    }
}

/// `--test-count` runs of one configuration, one after another.
struct Repeat<'a> {
    count: u32,
    cfg: TestConfig,
    ssh: &'a SshOptions,
    results_dir: &'a std::path::Path,
    analysis: &'a workloads::AnalyseOptions,
    rt: &'a tokio::runtime::Runtime,
    stop: &'a Stop,
}

impl Repeat<'_> {
    /// Builds the system once up front (a bad option fails before any run), then once
    /// per run; prints each summary; stops early when the user stops.
    fn each<S: System>(
        self,
        make: impl Fn() -> anyhow::Result<S>,
    ) -> anyhow::Result<Vec<runner::RunOutcome>> {
        make()?;
        let mut outcomes = Vec::new();
        for i in 0..self.count {
            if self.stop.is_stopped() {
                break;
            }
            if self.count > 1 {
                eprintln!("splitbrain: test {} of {}", i + 1, self.count);
            }
            // Each repetition its own seed, derived from the first: all reproducible.
            let mut cfg = self.cfg.clone();
            cfg.seed = cfg.seed.wrapping_add(u64::from(i));
            let outcome = self.rt.block_on(runner::run_test(
                cfg,
                make()?,
                self.ssh,
                self.results_dir,
                self.stop.clone(),
                self.analysis,
            ))?;
            println!("{}", summary::render(&outcome.results));
            println!("results: {}", outcome.dir.path.display());
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// The results folder's name when `--name` is not given, e.g.
/// `zoo-raft-set-partition` or `postgres-sync-all-register-kill_pause`.
pub(crate) fn default_name(spec: &SystemSpec, workload: WorkloadKind, nemesis: &str) -> String {
    format!("{}-{}-{}-{}", spec.kind, spec.mode, workload, nemesis)
}
