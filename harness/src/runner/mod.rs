//! One test run, start to end: connect, set up the system, run clients and the
//! nemesis together, heal (always, on every exit path), wait for recovery, take the
//! final reads, collect logs, tear down, check, store. See ARCHITECTURE.md.

pub mod clients;
pub mod fault_schedule;
pub mod generator;
pub mod heal;
pub mod nemesis;
pub mod stop;

use crate::config::TestConfig;
use crate::control::{Remote, Session, SshOptions, Target};
use crate::store::{Recorder, RunDir};
use crate::systems::{NodeHandle, System};
use anyhow::Context;
use checkers::Validity;
use clients::{ClientTask, Tally};
use generator::Phase;
use nemesis::{FaultRecord, NemesisTask};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stop::Stop;
use tokio::time::Instant;
use workloads::CheckerResult;

/// Process ids of the final reads start here, clear of the clients' ids.
pub const FINAL_PROCESS_BASE: u64 = 1_000_000;

/// Counts over the whole run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunStats {
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub duration_s: f64,
}

/// What `results.json` holds; documented in docs/RESULTS-SCHEMA.md and read back by
/// `crate::report::schema::StoredResults`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `crate::report::schema::SCHEMA_VERSION`.
    pub schema_version: u32,
    pub valid: Validity,
    pub checkers: Vec<CheckerResult>,
    pub stats: RunStats,
    pub faults: Vec<FaultRecord>,
    /// Heal failures: a node that may still be partitioned. Never hides the analysis.
    pub heal_errors: Vec<String>,
    /// Nodes whose final read never succeeded.
    pub final_read_failures: Vec<String>,
    pub interrupted: bool,
    pub system: String,
    pub test: TestConfig,
    /// Harness version, seed, system, and each node's OS and kernel.
    pub environment: crate::report::schema::Environment,
}

pub struct RunOutcome {
    pub dir: RunDir,
    pub results: Results,
}

/// Process-wide: set when SIGINT or SIGTERM arrives, so a run in progress stops,
/// heals and tears down before the process exits.
pub fn install_signal_stop(stop: Stop) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("splitbrain: interrupted: stopping clients, healing every fault, tearing down");
        stop.stop();
    });
}

async fn connect_all(cfg: &TestConfig, ssh: &SshOptions) -> anyhow::Result<Vec<NodeHandle>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, spec) in cfg.nodes.iter().enumerate() {
        let (spec, ssh) = (spec.clone(), ssh.clone());
        set.spawn(async move { (i, Session::connect(&spec, &ssh).await.map(|s| (spec, s))) });
    }
    let mut handles: Vec<Option<NodeHandle>> = vec![None; cfg.nodes.len()];
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok((spec, s)))) => {
                handles[i] = Some(NodeHandle {
                    spec,
                    remote: Arc::new(Target::Ssh(Arc::new(s))),
                })
            }
            Ok((_, Err(e))) => errors.push(e.to_string()),
            Err(e) => errors.push(format!("connect task failed: {e}")),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(handles.into_iter().flatten().collect())
}

/// Runs one test and stores everything under a new folder of `results_root`.
/// Returns `Err` only when the harness could not do its job.
pub async fn run_test<S: System>(
    cfg: TestConfig,
    system: S,
    ssh: &SshOptions,
    results_root: &Path,
    stop: Stop,
    analysis: &workloads::AnalyseOptions,
) -> anyhow::Result<RunOutcome> {
    let dir = RunDir::create(results_root, &cfg.name)?;
    crate::log::to_file(&dir.file("harness.log"))
        .with_context(|| format!("opening {}", dir.file("harness.log").display()))?;
    let r = run_in(cfg, system, ssh, dir, stop, analysis).await;
    if let Err(e) = &r {
        tracing::error!("run failed: {e:#}");
    }
    crate::log::close();
    r
}

async fn run_in<S: System>(
    cfg: TestConfig,
    system: S,
    ssh: &SshOptions,
    dir: RunDir,
    stop: Stop,
    analysis: &workloads::AnalyseOptions,
) -> anyhow::Result<RunOutcome> {
    dir.write_json("test.json", &cfg)?;
    tracing::info!(dir = %dir.path.display(), "run started");
    let system = Arc::new(system);
    eprintln!("splitbrain: connecting to {} nodes", cfg.nodes.len());
    let handles = connect_all(&cfg, ssh).await?;
    tracing::info!(stage = "connected", "run stage");
    let mut environment = crate::report::environment::collect(
        &handles,
        cfg.seed,
        system.describe(),
        match handles.first() {
            Some(h) => system.version(h).await,
            None => None,
        },
    )
    .await;
    environment.notes = system.notes();
    tracing::info!(stage = "environment", "run stage");
    for n in &environment.notes {
        eprintln!("splitbrain: warning: {n}");
        tracing::warn!("{n}");
    }
    // The body runs as its own task so that a panic in it (a bug) still reaches the
    // heal and teardown below, as an error, instead of unwinding past them.
    let body = {
        let (cfg, system, handles, dir) =
            (cfg.clone(), system.clone(), handles.clone(), dir.clone());
        match tokio::spawn(async move { run_body(&cfg, system, &handles, &dir, stop).await }).await
        {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!(
                "the run failed unexpectedly ({e}); every node is being healed"
            )),
        }
    };
    // Always: heal every node (retrying a node that is down for a while), fetch
    // logs, stop the system.
    let heal_errors = heal::heal_with_retries(&system, &handles, heal::EXIT_HEAL_BUDGET).await;
    tracing::info!(stage = "exit-heal", "run stage");
    for e in &heal_errors {
        eprintln!("splitbrain: warning: heal failed on {e}");
    }
    collect_logs(system.as_ref(), &handles, &dir).await;
    tracing::info!(stage = "logs-collected", "run stage");
    if !cfg.leave_db_running {
        // Every node at once: a daemon can take seconds to stop.
        let mut down = tokio::task::JoinSet::new();
        for h in &handles {
            let (system, h) = (system.clone(), h.clone());
            down.spawn(async move { system.teardown_node(&h).await });
        }
        while let Some(r) = down.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("splitbrain: warning: {e:#}"),
                Err(e) => eprintln!("splitbrain: warning: teardown task failed: {e}"),
            }
        }
    }
    for h in &handles {
        if let Target::Ssh(s) = h.remote.as_ref() {
            s.close().await;
        }
    }
    tracing::info!(stage = "torn-down", "run stage");
    let (stats, faults, final_read_failures, interrupted) =
        body.map_err(|e| explain(e, &dir, heal_errors.len(), cfg.leave_db_running))?;
    eprintln!("splitbrain: checking the history");
    // The set workload's checkers stream the file; the others read it whole.
    let f = std::fs::File::open(dir.file("history.jsonl"))?;
    let checkers = cfg
        .workload
        .analyse_jsonl(f, analysis)
        .context("re-reading history.jsonl")?;
    let mut valid = checkers.iter().fold(Validity::Valid, |v, c| v.and(c.valid));
    if interrupted && valid == Validity::Valid {
        valid = Validity::Unknown;
    }
    let results = Results {
        schema_version: crate::report::schema::SCHEMA_VERSION,
        valid,
        checkers,
        stats,
        faults,
        heal_errors,
        final_read_failures,
        interrupted,
        system: system.describe(),
        test: cfg,
        environment,
    };
    dir.write_json("results.json", &results)?;
    tracing::info!(stage = "checked", "run stage");
    crate::report::after_run(&dir.path);
    tracing::info!(valid = %results.valid, "run finished");
    Ok(RunOutcome { dir, results })
}

type BodyResult = anyhow::Result<(RunStats, Vec<FaultRecord>, Vec<String>, bool)>;

/// A run body that failed because the results store could not be written (a full
/// disk): one line naming the file and saying what was done and what is kept.
fn explain(e: anyhow::Error, dir: &RunDir, unhealed: usize, left_running: bool) -> anyhow::Error {
    let Some(store) = e.downcast_ref::<crate::store::StoreError>() else {
        return e;
    };
    let healed = match unhealed {
        0 => "faults healed".to_string(),
        n => format!("heal FAILED on {n} node(s) (see the warnings above)"),
    };
    let nodes = match left_running {
        true => "the system left running (--leave-db-running)",
        false => "nodes torn down",
    };
    anyhow::anyhow!(
        "{store}; the run was stopped: clients stopped, {healed}, {nodes}; history.jsonl is \
         kept whole up to its last complete line: free space, then `splitbrain report {}` \
         rebuilds the results",
        dir.path.display()
    )
}

async fn run_body<S: System>(
    cfg: &TestConfig,
    system: Arc<S>,
    handles: &[NodeHandle],
    dir: &RunDir,
    stop: Stop,
) -> BodyResult {
    let specs: Vec<_> = handles.iter().map(|h| h.spec.clone()).collect();
    // Leftovers of a crashed earlier run must not partition this one.
    let stale = nemesis::heal_all(handles).await;
    anyhow::ensure!(
        stale.is_empty(),
        "clearing old fault rules: {}",
        stale.join("; ")
    );
    tracing::info!(stage = "stale-faults-cleared", "run stage");
    eprintln!(
        "splitbrain: setting up {} on {} nodes",
        system.describe(),
        handles.len()
    );
    let mut set = tokio::task::JoinSet::new();
    for h in handles {
        let (sys, h, all) = (system.clone(), h.clone(), specs.clone());
        set.spawn(async move { sys.setup_node(&h, &all).await });
    }
    while let Some(r) = set.join_next().await {
        r.context("setup task failed")??;
    }
    tracing::info!(stage = "set-up", "run stage");
    system.await_ready(&specs, Duration::from_secs(30)).await?;
    tracing::info!(stage = "ready", "run stage");
    let supervisor = Supervisor::start(&system, handles);

    let start = Instant::now();
    let recorder = Arc::new(Recorder::create(
        dir.file("history.jsonl"),
        start.into_std(),
    )?);
    let deadline = start + cfg.time_limit;
    let progress = crate::progress::Progress::start(dir.file("history.jsonl"), cfg.time_limit);
    let conc = cfg.concurrency as u64;
    let generator = Arc::new(Mutex::new(cfg.workload.generator_with(
        cfg.seed,
        conc,
        &cfg.op_mix,
        cfg.processes_per_key,
    )));
    // Leader observation runs through the faults, heal and recovery wait.
    let observers_stop = Stop::default();
    let mut observers = clients::spawn_role_observers(
        &system,
        &specs,
        &recorder,
        deadline + cfg.recovery_time + Duration::from_secs(120),
        cfg.op_timeout,
        &observers_stop,
    );
    let interval = if cfg.rate > 0.0 {
        Duration::from_secs_f64(conc as f64 / cfg.rate)
    } else {
        Duration::ZERO
    };
    eprintln!(
        "splitbrain: running {} clients for {:?} with nemesis {} (seed {})",
        conc,
        cfg.time_limit,
        cfg.nemesis.name(),
        cfg.seed
    );
    let first = match cfg.warmup.is_zero() {
        true => Phase::Faults,
        false => Phase::WarmUp,
    };
    generator::record_phase(&recorder, first)?;
    let mut clients = tokio::task::JoinSet::new();
    for p in 0..conc {
        let node = specs[(p as usize) % specs.len()].clone();
        clients.spawn(clients::run_client(ClientTask {
            system: system.clone(),
            node,
            first_process: p,
            stride: conc,
            generator: generator.clone(),
            recorder: recorder.clone(),
            deadline,
            op_timeout: cfg.op_timeout,
            interval,
            max_ops: (cfg.max_ops / conc).max(1),
            stop: stop.clone(),
        }));
    }
    let nemesis_stop = Stop::default();
    let nem = tokio::spawn(generator::after_warmup(
        cfg.warmup,
        recorder.clone(),
        nemesis_stop.clone(),
        nemesis::run_nemesis(NemesisTask {
            system: system.clone(),
            nodes: handles.to_vec(),
            kind: cfg.nemesis,
            interval: cfg.nemesis_interval,
            max_faults: cfg.max_faults,
            deadline,
            recorder: recorder.clone(),
            stop: nemesis_stop.clone(),
            seed: cfg.seed,
            lab: cfg.lab,
        }),
    ));
    // Forward a user's stop to the nemesis, and stop it once the clients are done.
    let forward = {
        let (user, nem_stop) = (stop.clone(), nemesis_stop.clone());
        tokio::spawn(async move {
            while !user.sleep(Duration::from_secs(3600)).await {}
            nem_stop.stop();
        })
    };
    let mut tally = Tally::default();
    let mut client_errors = Vec::new();
    while let Some(r) = clients.join_next().await {
        match r {
            Ok(Ok(t)) => {
                tally.ok += t.ok;
                tally.fail += t.fail;
                tally.info += t.info;
            }
            Ok(Err(e)) => client_errors.push(format!("{e:#}")),
            Err(e) => client_errors.push(format!("client task failed: {e}")),
        }
    }
    nemesis_stop.stop();
    forward.abort();
    // A panic in the nemesis (a bug) goes on through the body as a panic, to the
    // catch around it that still heals and tears down.
    let nem = nem.await;
    // A history that can no longer be written (a full disk) ends the run here, with
    // that one error rather than every client's copy of it.
    if let Some(e) = recorder.failure() {
        return Err(e.into());
    }
    let faults = match nem {
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        r => r.context("nemesis task failed")??,
    };
    anyhow::ensure!(client_errors.is_empty(), "{}", client_errors.join("; "));
    generator::record_phase(&recorder, Phase::Heal)?;
    // A node that cannot be healed (down, rebooting) is retried within the budget,
    // then reported; the run goes on to its final reads and analysis.
    let unhealed = heal::heal_with_retries(&system, handles, heal::FINAL_HEAL_BUDGET).await;
    for e in &unhealed {
        eprintln!("splitbrain: warning: heal failed on {e}");
    }
    recorder.record(checkers::Op::new(
        0,
        checkers::Process::Nemesis,
        checkers::OpType::Info,
        "heal-all",
        match unhealed.is_empty() {
            true => serde_json::Value::Null,
            false => serde_json::json!({ "errors": unhealed }),
        },
    ))?;

    let interrupted = stop.is_stopped();
    let mut final_read_failures = Vec::new();
    if !interrupted {
        eprintln!(
            "splitbrain: healed; waiting {:?} for recovery, then final reads",
            cfg.recovery_time
        );
        generator::record_phase(&recorder, Phase::Recovery)?;
        stop.sleep(cfg.recovery_time).await;
        observers_stop.stop();
        generator::record_phase(&recorder, Phase::FinalReads)?;
        let mut reads = tokio::task::JoinSet::new();
        for (i, node) in specs.iter().enumerate() {
            let invocations = generator
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .final_reads();
            let read = clients::final_reads(clients::FinalReads {
                system: system.clone(),
                node: node.clone(),
                first_process: FINAL_PROCESS_BASE + i as u64,
                stride: specs.len() as u64,
                reads: invocations,
                recorder: recorder.clone(),
                op_timeout: cfg.op_timeout,
                budget: cfg.recovery_time.max(Duration::from_secs(10)),
            });
            let name = node.name.clone();
            reads.spawn(async move { (name, read.await) });
        }
        while let Some(r) = reads.join_next().await {
            let (node, ok) = r.context("final read task failed")?;
            if !ok? {
                final_read_failures.push(node);
            }
        }
        final_read_failures.sort();
        tracing::info!(stage = "final-reads", "run stage");
    }
    supervisor.finish().await;
    progress.finish();
    observers_stop.stop();
    while let Some(r) = observers.join_next().await {
        r.context("role observer task failed")??;
    }
    recorder.sync()?;
    let stats = RunStats {
        ops: tally.ok + tally.fail + tally.info,
        ok: tally.ok,
        fail: tally.fail,
        info: tally.info,
        duration_s: start.elapsed().as_secs_f64(),
    };
    Ok((stats, faults, final_read_failures, interrupted))
}

/// The system's [`System::supervise`] task for the length of the body; aborted when
/// dropped, so an early error return does not leave it running.
struct Supervisor {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Stop,
}

impl Supervisor {
    fn start<S: System>(system: &Arc<S>, handles: &[NodeHandle]) -> Supervisor {
        let stop = Stop::default();
        let task = tokio::spawn(system.clone().supervise(handles.to_vec(), stop.clone()));
        Supervisor {
            task: Some(task),
            stop,
        }
    }

    /// Asks it to stop and waits a bounded while before aborting it.
    async fn finish(mut self) {
        self.stop.stop();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                tracing::warn!("the system's supervisor did not stop within 10s; aborted");
                task.abort();
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn collect_logs<S: System>(system: &S, handles: &[NodeHandle], dir: &RunDir) {
    for h in handles {
        for remote in system.log_paths(&h.spec) {
            let name = remote.rsplit('/').next().unwrap_or("log").to_string();
            let local = match dir.node_dir(&h.spec.name) {
                Ok(d) => d.join(&name),
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            if let Err(e) = h.remote.download(&remote, &local).await {
                tracing::warn!(node = %h.spec.name, "collecting {remote}: {e}");
            }
        }
    }
}
