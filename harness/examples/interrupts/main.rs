//! The interrupted-runs proof of issue 9: N short zoo runs on the local lab under
//! `--nemesis partition,clock,kill,pause,packet`, each interrupted at a seeded random
//! moment by SIGINT, SIGTERM or SIGKILL (kill -9, then `splitbrain fault heal` from a
//! new process), in turn. After each, every lab node is inspected from the host —
//! not through the harness — for what a fault could leave behind: our iptables
//! rules (`SPLITBRAIN` anywhere in `iptables-save`), our qdiscs (handles `5b..:` or
//! netem) and probe link, a clock offset (a libfaketime offset file with a non-zero
//! offset, or a live strobe), processes stopped (state `T`) in the node's namespace,
//! and fault markers. It also checks that `history.jsonl` is whole to its last line
//! and that `splitbrain check` and `splitbrain report` run on the interrupted folder.
//! Prints one row per run and then the table per interruption kind (markdown).
//!
//! ```text
//! cargo build -p harness --bins --examples
//! target/debug/examples/interrupts --runs 100 --seed 1 --log /tmp/interrupts.jsonl
//! ```
//!
//! Needs root. Holds the lab's exclusive-use lock for one run (or `--hold-secs` of
//! runs) at a time, so other lab users interleave. Bounded: `--runs` at most 300,
//! every wait has a deadline, and no run starts after `--max-minutes`. Zoo processes
//! a killed controller leaves running are stopped after each run is inspected (the
//! next lab user finds none).

mod inspect;

use clap::Parser;
use harness::lab;
use inspect::{Leftovers, NodeInspection};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Interrupted runs (1..=300); the kinds take turns.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the interrupt moments and of each run's `--seed`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kinds to take turns with: sigint, sigterm, kill9.
    #[arg(long, default_value = "sigint,sigterm,kill9")]
    kinds: String,
    /// Each run's `--time-limit`, seconds (2..=120).
    #[arg(long, default_value_t = 10)]
    time_limit: u64,
    /// Each run's `--nemesis-interval` (faults last this long, half of it apart).
    #[arg(long, default_value = "2s")]
    nemesis_interval: String,
    /// The splitbrain binary; default: beside this example's folder.
    #[arg(long)]
    splitbrain: Option<PathBuf>,
    /// Scratch folder for the runs' results (a run's folder is kept only when
    /// something was found); default: a new folder under /tmp.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Append one JSON line per run here.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Keep the lab's lock across runs for up to this many seconds (0: one run per
    /// turn), then let other lab users have it.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// Start no run after this many minutes (1..=240). Runs not counted (see the
    /// output) are retried, up to twice `--runs` attempts in all.
    #[arg(long, default_value_t = 60)]
    max_minutes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Sigint,
    Sigterm,
    Kill9,
}

impl Kind {
    fn parse(s: &str) -> Result<Kind, String> {
        match s.trim() {
            "sigint" => Ok(Kind::Sigint),
            "sigterm" => Ok(Kind::Sigterm),
            "kill9" => Ok(Kind::Kill9),
            other => Err(format!(
                "unknown interruption kind {other:?} (known: sigint, sigterm, kill9)"
            )),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Sigint => "SIGINT",
            Kind::Sigterm => "SIGTERM",
            Kind::Kill9 => "kill -9 + fault heal",
        }
    }

    fn signal(self) -> i32 {
        match self {
            Kind::Sigint => libc::SIGINT,
            Kind::Sigterm => libc::SIGTERM,
            Kind::Kill9 => libc::SIGKILL,
        }
    }
}

/// What one interrupted run left and how its tools behaved.
#[derive(Debug, Serialize)]
struct RunResult {
    run: usize,
    kind: Kind,
    seed: u64,
    /// Seconds after the first history line at which the signal was sent.
    interrupt_at_s: f64,
    /// Faults started and not yet stopped in the history at the interrupt.
    faults_in_effect: Vec<String>,
    /// The run's exit: `exit N`, `signal N`, `ended before the interrupt (exit N)`.
    exit: String,
    /// Seconds from the signal to the exit.
    exit_after_s: f64,
    /// `splitbrain fault heal`'s exit code (kill -9 only).
    heal_exit: Option<i32>,
    heal_output: Option<String>,
    leftovers: Leftovers,
    nodes: Vec<NodeInspection>,
    /// `history.jsonl` ends with a newline and every line is JSON.
    history_whole: Result<usize, String>,
    check_exit: Option<i32>,
    report_exit: Option<i32>,
    /// Zoo processes still running after the run (expected after kill -9 only:
    /// `fault heal` undoes faults, it does not tear the deployment down).
    zoo_left: usize,
    /// A lab namespace was missing after the run.
    lab_vanished: bool,
    results: PathBuf,
}

impl RunResult {
    /// Why this run says nothing about interruptions, if so.
    fn not_counted(&self) -> Option<String> {
        if self.lab_vanished {
            return Some("the lab's namespaces vanished during the run (taken down by another user of the machine)".into());
        }
        if self.exit.starts_with("ended before") {
            return Some(format!("{}; not interrupted", self.exit));
        }
        None
    }

    fn bugs(&self) -> Vec<String> {
        let mut b = self.leftovers.found();
        if let Err(e) = &self.history_whole {
            b.push(format!("history: {e}"));
        }
        if !matches!(self.check_exit, Some(0..=2)) {
            b.push(format!("check exit {:?}", self.check_exit));
        }
        if self.report_exit != Some(0) {
            b.push(format!("report exit {:?}", self.report_exit));
        }
        if self.kind == Kind::Kill9 && self.heal_exit != Some(0) {
            b.push(format!("fault heal exit {:?}", self.heal_exit));
        }
        if self.kind != Kind::Kill9 && self.zoo_left > 0 {
            b.push(format!("{} zoo processes left", self.zoo_left));
        }
        if self.exit.starts_with("hung") {
            b.push(self.exit.clone());
        }
        b
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("interrupts: {e}");
            ExitCode::from(3)
        }
    }
}

fn run(args: Args) -> Result<usize, String> {
    if !(1..=300).contains(&args.runs) {
        return Err(format!("--runs must be 1..=300, got {}", args.runs));
    }
    if !(2..=120).contains(&args.time_limit) || !(1..=240).contains(&args.max_minutes) {
        return Err("--time-limit must be 2..=120 and --max-minutes 1..=240".into());
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (the lab is network namespaces)".into());
    }
    let kinds: Vec<Kind> = args
        .kinds
        .split(',')
        .map(Kind::parse)
        .collect::<Result<_, _>>()?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let sb = match &args.splitbrain {
        Some(p) => p.clone(),
        None => exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("splitbrain"))
            .ok_or("no folder above this example: pass --splitbrain")?,
    };
    // A private copy: other builds may replace the shared binaries mid-way.
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("sb-interrupts-{}", std::process::id())),
    };
    std::fs::create_dir_all(work.join("bin")).map_err(|e| format!("{}: {e}", work.display()))?;
    let (bin, zoo) = (work.join("bin/splitbrain"), work.join("bin/zoo"));
    for (from, to) in [(sb.clone(), &bin), (sb.with_file_name("zoo"), &zoo)] {
        std::fs::copy(&from, to).map_err(|e| format!("copying {}: {e}", from.display()))?;
    }
    let started = Instant::now();
    let mut results: Vec<RunResult> = Vec::new();
    let mut not_counted = 0;
    let mut lock: Option<(lab::LabLock, Instant)> = None;
    // A run that ends on its own before its moment was not interrupted, and one whose
    // lab vanished under it (another user of the machine took it down) proves
    // nothing: neither is counted, both are said; attempts are bounded.
    for i in 0..args.runs * 2 {
        if results.len() == args.runs {
            break;
        }
        if started.elapsed() > Duration::from_secs(args.max_minutes * 60) {
            eprintln!("interrupts: --max-minutes reached after {i} attempts");
            break;
        }
        let kind = kinds[results.len() % kinds.len()];
        // Held for a few runs at a time, then given up so other lab users get a turn.
        if lock
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() > Duration::from_secs(args.hold_secs))
        {
            lock = None;
        }
        if lock.is_none() {
            let l = lab::exclusive_use(Duration::from_secs(1800))
                .map_err(|e| format!("lab lock: {e}"))?;
            lock = Some((l, Instant::now()));
        }
        let t = Instant::now();
        let r = one_run(&args, i, kind, &bin, &zoo, &work)?;
        if let Some(why) = r.not_counted() {
            println!(
                "run {i:>3} {:<21} NOT COUNTED: {why} ({})",
                kind.label(),
                r.results.display()
            );
            not_counted += 1;
            continue;
        }
        let bugs = r.bugs();
        println!(
            "run {:>3} {:<21} ({:>4.1}s) at {:>5.2}s faults [{}] -> {} in {:.1}s{}; {}",
            i,
            kind.label(),
            t.elapsed().as_secs_f64(),
            r.interrupt_at_s,
            r.faults_in_effect.join(","),
            r.exit,
            r.exit_after_s,
            r.heal_exit
                .map(|c| format!(", fault heal exit {c}"))
                .unwrap_or_default(),
            if bugs.is_empty() {
                "nothing left".to_string()
            } else {
                format!("FOUND: {}", bugs.join("; "))
            }
        );
        if let Some(log) = &args.log {
            let line = serde_json::to_string(&r).map_err(|e| e.to_string())?;
            let mut text = std::fs::read_to_string(log).unwrap_or_default();
            text.push_str(&line);
            text.push('\n');
            std::fs::write(log, text).map_err(|e| format!("{}: {e}", log.display()))?;
        }
        if bugs.is_empty() {
            let _ = std::fs::remove_dir_all(&r.results);
        }
        results.push(r);
    }
    print!("{}", table(&results, &kinds));
    println!(
        "{} runs counted, {not_counted} not counted, in {:.1} min",
        results.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(results.iter().filter(|r| !r.bugs().is_empty()).count())
}

/// Sends SIGKILL to the run if this example stops before it is reaped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn one_run(
    args: &Args,
    i: usize,
    kind: Kind,
    bin: &Path,
    zoo: &Path,
    work: &Path,
) -> Result<RunResult, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_mul(1_000_003) ^ i as u64);
    let seed = args.seed * 1000 + i as u64;
    // Anywhere from the first op to past the end of the clients (heal, recovery,
    // final reads, teardown).
    let at = rng.gen_range(0.0..(args.time_limit as f64 + 5.0));
    let results = work.join(format!("run-{i:03}"));
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results).map_err(|e| e.to_string())?;
    lab::up(&lab::LabConfig::default()).map_err(|e| format!("lab up: {e}"))?;
    let stderr = std::fs::File::create(results.join("stderr.txt")).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .env(lab::LOCK_HELD_ENV, "1")
        .args(["test", "--nemesis", "partition,clock,kill,pause,packet"])
        .args(["--nemesis-interval", &args.nemesis_interval])
        .args(["--time-limit", &format!("{}s", args.time_limit)])
        .args(["--recovery-time", "2s", "--seed", &seed.to_string()])
        .arg("--results-dir")
        .arg(&results)
        .arg("--zoo-binary")
        .arg(zoo)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let mut child = Reap(Some(child));
    let history = results.join("latest/history.jsonl");
    let t = Instant::now();
    let mut ended = None;
    // Wait for the first op, then for the moment.
    let begun = loop {
        if std::fs::metadata(&history).is_ok_and(|m| m.len() > 0) {
            break Instant::now();
        }
        if let Some(s) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            ended = Some(s);
            break Instant::now();
        }
        if t.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "run {i}: no history after 300 s ({})",
                results.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while ended.is_none() && begun.elapsed().as_secs_f64() < at {
        if let Some(s) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            ended = Some(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let interrupt_at_s = begun.elapsed().as_secs_f64();
    let faults_in_effect = if ended.is_none() {
        inspect::faults_in_effect(&std::fs::read_to_string(&history).unwrap_or_default())
    } else {
        Vec::new()
    };
    let signalled = Instant::now();
    let mut c = child.0.take().ok_or("no child")?;
    let exit = match ended {
        Some(s) => format!("ended before the interrupt ({})", describe(s)),
        None => {
            unsafe { libc::kill(c.id() as i32, kind.signal()) };
            match wait_bounded(&mut c, Duration::from_secs(180)) {
                Some(s) => describe(s),
                None => {
                    let _ = c.kill();
                    let _ = c.wait();
                    "hung: no exit 180 s after the signal (killed)".into()
                }
            }
        }
    };
    let exit_after_s = signalled.elapsed().as_secs_f64();
    let (heal_exit, heal_output) = if kind == Kind::Kill9 {
        let out = Command::new(bin)
            .env(lab::LOCK_HELD_ENV, "1")
            .args(["fault", "heal"])
            .output()
            .map_err(|e| format!("fault heal: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), Some(text.trim().to_string()))
    } else {
        (None, None)
    };
    let lab_vanished = !inspect::namespaces_present(lab::DEFAULT_NODES);
    let nodes = inspect::all_nodes(lab::DEFAULT_NODES);
    let leftovers = Leftovers::of(&nodes);
    let zoo_left = inspect::stop_zoo(lab::DEFAULT_NODES);
    let run_dir = results.join("latest");
    let history_whole = inspect::history_whole(&run_dir.join("history.jsonl"));
    let status = |a: &[&std::ffi::OsStr]| {
        Command::new(bin)
            .args(a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code())
    };
    let check_exit = status(&[
        "check".as_ref(),
        "--time-limit".as_ref(),
        "30".as_ref(),
        run_dir.join("history.jsonl").as_os_str(),
    ]);
    let report_exit = status(&["report".as_ref(), run_dir.as_os_str()]);
    Ok(RunResult {
        run: i,
        kind,
        seed,
        interrupt_at_s,
        faults_in_effect,
        exit,
        exit_after_s,
        heal_exit,
        heal_output,
        leftovers,
        nodes,
        history_whole,
        check_exit,
        report_exit,
        zoo_left,
        lab_vanished,
        results,
    })
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(9)) => "killed (signal 9)".into(),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "?".into(),
    }
}

fn wait_bounded(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The table per interruption kind, as markdown.
fn table(results: &[RunResult], kinds: &[Kind]) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut s = String::from(
        "\n| interruption | runs | fault in effect at the signal | exits seen | `fault heal` exits | nodes with our rules | qdiscs | clock offsets | paused processes | fault markers | history whole | `check` ran (exit 0-2) | `report` ran | zoo left running |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for k in kinds {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.kind == *k).collect();
        if rs.is_empty() {
            continue;
        }
        let mut exits: BTreeMap<String, usize> = BTreeMap::new();
        let mut heals: BTreeMap<String, usize> = BTreeMap::new();
        for r in &rs {
            *exits.entry(r.exit.clone()).or_default() += 1;
            if let Some(c) = r.heal_exit {
                *heals.entry(format!("exit {c}")).or_default() += 1;
            }
        }
        let counts = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "-".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} ×{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let sum = |f: fn(&Leftovers) -> usize| rs.iter().map(|r| f(&r.leftovers)).sum::<usize>();
        let n = rs.len();
        let _ =
            writeln!(
            s,
            "| {} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{n} | {}/{n} | {}/{n} | {} |",
            k.label(),
            rs.iter().filter(|r| !r.faults_in_effect.is_empty()).count(),
            counts(&exits),
            counts(&heals),
            sum(|l| l.rules),
            sum(|l| l.qdiscs),
            sum(|l| l.clock),
            sum(|l| l.paused),
            sum(|l| l.markers),
            rs.iter().filter(|r| r.history_whole.is_ok()).count(),
            rs.iter().filter(|r| matches!(r.check_exit, Some(0..=2))).count(),
            rs.iter().filter(|r| r.report_exit == Some(0)).count(),
            rs.iter().map(|r| r.zoo_left).sum::<usize>(),
        );
    }
    s
}
