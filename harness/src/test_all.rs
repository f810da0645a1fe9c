//! `splitbrain test-all`: a matrix of systems (zoo modes, Redis, etcd, PostgreSQL
//! modes) × workloads × nemeses (from flags or a TOML file), run one after another with the options of `splitbrain test`, and
//! one summary table — lost writes, dual masters, linearizable, p99 latency, time to
//! recover per cell: the architecture trade-off table, measured.

use crate::cli::{self, TestArgs};
use crate::config::{self, NemesisKind};
use crate::runner::stop::Stop;
use crate::runner::RunOutcome;
use crate::systems::SystemSpec;
use anyhow::Context;
use checkers::Validity;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tabled::builder::Builder;
use tabled::settings::Style;
use workloads::{CheckerResult, WorkloadKind};

#[derive(Args, Debug)]
pub struct TestAllArgs {
    /// Systems to test, comma-separated, each `NAME` or `NAME:MODE` as for --system
    /// (e.g. `postgres:async,postgres:sync-all,redis-sentinel`).
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Zoo modes to test, comma-separated (short for `--systems zoo:MODE,...`); with
    /// neither, --system and --zoo-mode.
    #[arg(long, value_delimiter = ',')]
    pub zoo_modes: Vec<String>,
    /// Workloads, comma-separated (default: --workload).
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<WorkloadKind>())]
    pub workloads: Vec<WorkloadKind>,
    /// Nemeses separated by `;` (each as for --nemesis, e.g. `partition;none;kill,pause`)
    /// (default: --nemesis).
    #[arg(long, value_delimiter = ';', value_parser = config::parse_nemesis)]
    pub nemeses: Vec<NemesisKind>,
    /// A TOML file with `systems`, `zoo_modes`, `workloads` and `nemeses` lists; its
    /// lists replace the flags' (`nemeses` entries as for --nemesis).
    #[arg(long)]
    pub matrix: Option<PathBuf>,
    /// Everything else as for `splitbrain test`; --name, if given, prefixes every cell.
    #[command(flatten)]
    pub test: TestArgs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    #[serde(default)]
    systems: Vec<String>,
    #[serde(default)]
    zoo_modes: Vec<String>,
    #[serde(default)]
    workloads: Vec<String>,
    #[serde(default)]
    nemeses: Vec<String>,
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub system: SystemSpec,
    pub workload: WorkloadKind,
    pub nemesis: NemesisKind,
}

/// Reads a matrix file; every problem names the file and the entry.
fn read_matrix(path: &Path) -> anyhow::Result<MatrixFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading matrix file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "matrix file {}: {}",
            path.display(),
            e.to_string().lines().collect::<Vec<_>>().join(" ")
        )
    })
}

/// The cells to run, in order: systems outermost, then workloads, then nemeses.
pub fn cells(args: &TestAllArgs) -> anyhow::Result<Vec<Cell>> {
    let (mut systems, mut modes, mut workloads, mut nemeses) = (
        args.systems.clone(),
        args.zoo_modes.clone(),
        args.workloads.clone(),
        args.nemeses.clone(),
    );
    if let Some(path) = &args.matrix {
        let m = read_matrix(path)?;
        let at = |what: &str, e: String| format!("matrix file {}: {what}: {e}", path.display());
        if !m.systems.is_empty() || !m.zoo_modes.is_empty() {
            systems = m.systems;
            modes = m.zoo_modes;
        }
        if !m.workloads.is_empty() {
            workloads = m
                .workloads
                .iter()
                .map(|w| w.parse::<WorkloadKind>().map_err(|e| at("workloads", e)))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
        }
        if !m.nemeses.is_empty() {
            nemeses = m
                .nemeses
                .iter()
                .map(|n| config::parse_nemesis(n).map_err(|e| at("nemeses", e)))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
        }
    }
    let mut specs = Vec::new();
    for text in &systems {
        specs.push(SystemSpec::parse(text, &args.test.zoo_mode).map_err(anyhow::Error::msg)?);
    }
    for m in &modes {
        specs.push(SystemSpec::parse(&format!("zoo:{m}"), m).map_err(anyhow::Error::msg)?);
    }
    if specs.is_empty() {
        specs.push(
            SystemSpec::parse(&args.test.system, &args.test.zoo_mode)
                .map_err(anyhow::Error::msg)?,
        );
    }
    if workloads.is_empty() {
        workloads.push(args.test.workload);
    }
    if nemeses.is_empty() {
        nemeses.push(args.test.nemesis);
    }
    let mut out = Vec::new();
    for spec in &specs {
        for w in &workloads {
            for n in &nemeses {
                out.push(Cell {
                    system: spec.clone(),
                    workload: *w,
                    nemesis: *n,
                });
            }
        }
    }
    Ok(out)
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    pub cell: Cell,
    pub verdict: String,
    pub lost_writes: String,
    pub dual_masters: String,
    pub linearizable: String,
    pub p99: String,
    pub recover: String,
    pub ops: String,
    pub dir: String,
}

fn find<'a>(checkers: &'a [CheckerResult], name: &str) -> Option<&'a CheckerResult> {
    checkers.iter().find(|c| c.checker == name)
}

fn num(v: &Value, field: &str) -> Option<u64> {
    v.get(field).and_then(Value::as_u64)
}

fn secs(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), |n| format!("{:.2}s", n as f64 / 1e9))
}

/// The table row of a finished run.
pub fn row(cell: &Cell, outcome: &RunOutcome) -> Row {
    let r = &outcome.results;
    let lost = find(&r.checkers, "lost-writes")
        .or_else(|| find(&r.checkers, "list-append"))
        .map(|c| {
            let n = num(&c.details, "lost_count").unwrap_or(0);
            let total = num(&c.details, "acknowledged").unwrap_or(0);
            format!("{n} of {total}")
        })
        .unwrap_or_else(|| "-".into());
    let dual = find(&r.checkers, "dual-master")
        .map(|c| {
            // A masterless system (a ring): the question does not apply.
            if c.details.get("applicable") == Some(&Value::Bool(false)) {
                return "n/a".to_string();
            }
            let bad = num(&c.details, "both_accepted_writes").unwrap_or(0)
                + num(&c.details, "same_term").unwrap_or(0);
            let same = num(&c.details, "same_term").unwrap_or(0);
            let claimed = num(&c.details, "claimed").unwrap_or(0);
            let mut s = format!("{bad}");
            if same > 0 {
                s.push_str(&format!(" ({same} same term)"));
            }
            if claimed > 0 {
                s.push_str(&format!(" +{claimed} claimed"));
            }
            let stale = num(&c.details, "stale_acks").unwrap_or(0);
            if stale > 0 {
                s.push_str(&format!(" +{stale} stale acks"));
            }
            s
        })
        .unwrap_or_else(|| "-".into());
    let linearizable = find(&r.checkers, "linearizable")
        .map(|c| match c.valid {
            Validity::Valid => "yes".to_string(),
            Validity::Invalid => "NO".to_string(),
            Validity::Unknown => "unknown".to_string(),
        })
        .unwrap_or_else(|| "-".into());
    let avail = find(&r.checkers, "availability");
    let p99 = secs(avail.and_then(|c| num(&c.details, "latency_p99_ns")));
    let recover = avail
        .map(|c| {
            let faults = c.details.get("faults").and_then(Value::as_array);
            match faults {
                Some(f) if f.is_empty() => "-".to_string(),
                Some(f)
                    if f.iter()
                        .any(|x| x.get("first_write_ns") == Some(&Value::Null)) =>
                {
                    "never".to_string()
                }
                _ => secs(num(&c.details, "worst_recovery_ns")),
            }
        })
        .unwrap_or_else(|| "-".into());
    Row {
        cell: cell.clone(),
        verdict: r.valid.to_string(),
        lost_writes: lost,
        dual_masters: dual,
        linearizable,
        p99,
        recover,
        ops: format!("{}/{}/{}", r.stats.ok, r.stats.fail, r.stats.info),
        dir: outcome.dir.path.display().to_string(),
    }
}

/// The summary table (markdown, so it pastes into reports).
pub fn render(rows: &[Row]) -> String {
    let mut b = Builder::default();
    b.push_record([
        "system",
        "workload",
        "nemesis",
        "verdict",
        "lost writes",
        "dual masters",
        "linearizable",
        "p99 latency",
        "time to recover",
        "ok/fail/info",
    ]);
    for r in rows {
        b.push_record([
            r.cell.system.to_string(),
            r.cell.workload.to_string(),
            r.cell.nemesis.name(),
            r.verdict.clone(),
            r.lost_writes.clone(),
            r.dual_masters.clone(),
            r.linearizable.clone(),
            r.p99.clone(),
            r.recover.clone(),
            r.ops.clone(),
        ]);
    }
    let mut t = b.build();
    t.with(Style::markdown());
    t.to_string()
}

/// Runs the matrix; the exit code is the merged verdict of every cell.
pub fn run(args: TestAllArgs) -> anyhow::Result<u8> {
    let cells = cells(&args)?;
    // An op mix must fit every workload of the matrix before the first cell runs.
    if let Some(spec) = &args.test.op_mix {
        for cell in &cells {
            cell.workload.parse_op_mix(spec).map_err(|e| {
                anyhow::anyhow!("invalid --op-mix {spec:?} for {}: {e}", cell.workload)
            })?;
        }
    }
    let rt = cli::runtime()?;
    let stop = Stop::default();
    {
        let _guard = rt.enter();
        crate::runner::install_signal_stop(stop.clone());
    }
    let mut rows = Vec::new();
    let mut verdict = Validity::Valid;
    let mut failures = Vec::new();
    // Runs whose final heal left a node unhealed: reported after the table, exit 3.
    let mut unhealed = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if stop.is_stopped() {
            break;
        }
        eprintln!(
            "splitbrain: test-all {}/{}: {} / {} / {}",
            i + 1,
            cells.len(),
            cell.system,
            cell.workload,
            cell.nemesis.name()
        );
        let mut t = args.test.clone();
        t.system = cell.system.label();
        t.workload = cell.workload;
        t.nemesis = cell.nemesis;
        t.name = Some(format!(
            "{}{}",
            args.test
                .name
                .as_ref()
                .map(|n| format!("{n}-"))
                .unwrap_or_default(),
            cli::default_name(
                &cell.system,
                cell.workload,
                &cell.nemesis.name().replace(',', "_")
            )
        ));
        match cli::run_one(&t, &rt, &stop) {
            Ok(outcomes) => {
                for o in &outcomes {
                    verdict = verdict.and(o.results.valid);
                    rows.push(row(cell, o));
                }
                unhealed.extend(
                    outcomes
                        .into_iter()
                        .filter(|o| !o.results.heal_errors.is_empty()),
                );
            }
            Err(e) => {
                let text = format!("{e:#}").replace('\n', " ");
                eprintln!("splitbrain: test-all: {} failed: {text}", cell.system);
                failures.push(format!(
                    "{} / {} / {}: {text}",
                    cell.system,
                    cell.workload,
                    cell.nemesis.name()
                ));
            }
        }
    }
    println!("{}", render(&rows));
    for r in &rows {
        println!("results: {}", r.dir);
    }
    // One JUnit file for the whole matrix (a testsuite per cell), for CI dashboards.
    if !rows.is_empty() {
        let junit = args.test.results_dir.join(format!(
            "test-all-{}.junit.xml",
            crate::store::timestamp(std::time::SystemTime::now())
        ));
        let dirs: Vec<std::path::PathBuf> = rows.iter().map(|r| r.dir.clone().into()).collect();
        match crate::report::write_matrix_junit(&junit, &dirs) {
            Ok(()) => println!("junit: {}", junit.display()),
            Err(e) => eprintln!("splitbrain: warning: writing {}: {e:#}", junit.display()),
        }
    }
    if let Some(line) = cli::unhealed(&unhealed) {
        failures.push(line);
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("splitbrain: error: {f}");
        }
        return Ok(cli::EXIT_HARNESS);
    }
    if stop.is_stopped() {
        verdict = verdict.and(Validity::Unknown);
    }
    Ok(verdict.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: TestAllArgs,
    }

    fn parse(args: &[&str]) -> TestAllArgs {
        P::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn matrix_from_flags_defaults_and_file() {
        let a = parse(&[
            "--zoo-modes",
            "raft,sync",
            "--workloads",
            "set,register",
            "--nemeses",
            "partition;none",
        ]);
        let c = cells(&a).unwrap();
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].system.label(), "zoo:raft");
        assert_eq!(c[1].nemesis, NemesisKind::None);
        assert_eq!(c[2].workload, WorkloadKind::Register);
        let d = cells(&parse(&["--zoo-mode", "raft", "--workload", "list-append"])).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].system.mode.as_str(), d[0].workload),
            ("raft", WorkloadKind::ListAppend)
        );

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.toml");
        std::fs::write(
            &f,
            "zoo_modes = [\"raft\"]\nnemeses = [\"none\", \"partition\"]\n",
        )
        .unwrap();
        let a = parse(&["--matrix", f.to_str().unwrap(), "--zoo-modes", "sync"]);
        let c = cells(&a).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.system.label() == "zoo:raft"));
        let a = parse(&["--systems", "postgres:sync-all,etcd", "--zoo-modes", "sync"]);
        let labels: Vec<String> = cells(&a)
            .unwrap()
            .iter()
            .map(|c| c.system.label())
            .collect();
        assert_eq!(labels, ["postgres:sync-all", "etcd:raft", "zoo:sync"]);
        std::fs::write(&f, "systems = [\"redis-sentinel\"]\n").unwrap();
        let a = parse(&["--matrix", f.to_str().unwrap(), "--zoo-modes", "sync"]);
        let labels: Vec<String> = cells(&a)
            .unwrap()
            .iter()
            .map(|c| c.system.label())
            .collect();
        assert_eq!(labels, ["redis-sentinel:sentinel"]);
    }

    #[test]
    fn bad_matrix_entries_name_file_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.toml");
        std::fs::write(&f, "workloads = [\"sett\"]\n").unwrap();
        let e = cells(&parse(&["--matrix", f.to_str().unwrap()])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("m.toml") && msg.contains("workloads") && msg.contains("sett"),
            "{msg}"
        );
        std::fs::write(&f, "modes = [\"raft\"]\n").unwrap();
        let msg = cells(&parse(&["--matrix", f.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown field"), "{msg}");
        let msg = cells(&parse(&["--zoo-modes", "paxos"]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown zoo mode \"paxos\""), "{msg}");
        let missing = dir.path().join("none.toml");
        let msg = cells(&parse(&["--matrix", missing.to_str().unwrap()])).unwrap_err();
        assert!(format!("{msg:#}").contains("none.toml"));
    }
}
