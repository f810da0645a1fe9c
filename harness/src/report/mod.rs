//! The reports of a stored run: `report.html` (self-contained: inline CSS and SVG),
//! `report.md` (the audit report), `junit.xml` (one test case per checker),
//! `latency.svg` and `rate.svg`. Everything is rebuilt from the run's folder alone —
//! `test.json`, `history.jsonl` and `results.json` — and when `results.json` is
//! missing (the controller was killed) the workload's checkers are run again over the
//! history and a reconstructed `results.json` is written first.

pub mod analysis;
pub mod checks;
pub mod environment;
pub mod findings;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod plots;
pub mod schema;
pub mod timeline;

use analysis::Analysis;
use anyhow::Context;
use checkers::{Op, Validity};
use schema::{StoredChecker, StoredFault, StoredResults, StoredStats, StoredTest};
use std::path::{Path, PathBuf};
use workloads::WorkloadKind;

/// A stored run, loaded and analysed.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub results: StoredResults,
    pub history: Vec<Op>,
    pub analysis: Analysis,
    /// Things the reader should know about how the run was read (truncated history,
    /// reconstructed results, a newer schema): shown in every report.
    pub notes: Vec<String>,
}

/// Reads `history.jsonl`; a last line cut off mid-write (controller killed) is dropped
/// with a note, any other bad line is an error naming the line.
fn read_history(path: &Path, notes: &mut Vec<String>) -> anyhow::Result<Vec<Op>> {
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        let cut = text.rfind('\n').map_or(0, |i| i + 1);
        let tail = text[cut..].to_string();
        if serde_json::from_str::<Op>(&tail).is_err() {
            notes.push(format!(
                "history.jsonl ends in an incomplete line ({} bytes, dropped): the controller stopped mid-write",
                tail.len()
            ));
            text.truncate(cut);
        }
    }
    checkers::history::read_jsonl(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads a run folder. Fails (with the file named) when it is not a run folder or a
/// file in it cannot be read.
pub fn load(dir: &Path) -> anyhow::Result<Run> {
    anyhow::ensure!(dir.is_dir(), "{}: not a directory", dir.display());
    let (results_path, test_path, history_path) = (
        dir.join("results.json"),
        dir.join("test.json"),
        dir.join("history.jsonl"),
    );
    anyhow::ensure!(
        results_path.is_file() || test_path.is_file(),
        "{}: not a run folder (neither results.json nor test.json is there)",
        dir.display()
    );
    let mut notes = Vec::new();
    let history = if history_path.is_file() {
        read_history(&history_path, &mut notes)?
    } else {
        notes.push("history.jsonl is missing: plots and timeline are empty".to_string());
        Vec::new()
    };
    let analysis = analysis::analyse(&history);
    if analysis.orphans > 0 {
        notes.push(format!(
            "{} completions in the history have no invocation",
            analysis.orphans
        ));
    }
    let results = if results_path.is_file() {
        let r: StoredResults = schema::read_json(&results_path)?;
        if r.schema_version > schema::SCHEMA_VERSION {
            notes.push(format!(
                "results.json has schema version {}, newer than this harness's {}: fields it does not know are not shown",
                r.schema_version,
                schema::SCHEMA_VERSION
            ));
        }
        if r.reconstructed {
            notes.push(reconstructed_note());
        }
        notes.extend(r.environment.iter().flat_map(|e| e.notes.iter().cloned()));
        r
    } else {
        let test: StoredTest = schema::read_json(&test_path)?;
        notes.push(reconstructed_note());
        reconstruct(test, &history, &analysis)?
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        results,
        history,
        analysis,
        notes,
    })
}

fn reconstructed_note() -> String {
    "results.json was reconstructed by `splitbrain report`: the controller stopped before writing it, so the checkers were re-run over history.jsonl and faults and counts come from the history".to_string()
}

/// Results for a run whose controller died: re-runs the workload's checkers.
fn reconstruct(test: StoredTest, history: &[Op], a: &Analysis) -> anyhow::Result<StoredResults> {
    let workload: WorkloadKind = test
        .workload
        .parse()
        .map_err(|e: String| anyhow::anyhow!("test.json: {e}"))?;
    let checkers: Vec<StoredChecker> = workload
        .analyse(history)
        .into_iter()
        .map(|c| StoredChecker {
            checker: c.checker.to_string(),
            valid: c.valid,
            summary: c.summary,
            details: c.details,
        })
        .collect();
    let valid = checkers.iter().fold(Validity::Valid, |v, c| v.and(c.valid));
    let main: Vec<_> = a.ops.iter().filter(|o| !o.is_final).collect();
    let count = |k: analysis::Outcome| main.iter().filter(|o| o.outcome == k).count() as u64;
    let stats = StoredStats {
        ops: main.len() as u64,
        ok: count(analysis::Outcome::Ok),
        fail: count(analysis::Outcome::Fail),
        info: count(analysis::Outcome::Info),
        duration_s: a.duration,
    };
    Ok(StoredResults {
        schema_version: schema::SCHEMA_VERSION,
        valid,
        checkers,
        stats,
        faults: a
            .faults
            .iter()
            .map(|f| StoredFault {
                topology: f.label.clone(),
                start: f.start,
                end: f.end,
                ..StoredFault::default()
            })
            .collect(),
        heal_errors: Vec::new(),
        final_read_failures: Vec::new(),
        interrupted: false,
        system: format!("{} {}", test.system, test.mode).trim().to_string(),
        environment: None,
        reconstructed: true,
        test,
    })
}

/// Writes a file atomically (temp then rename) in the run folder.
fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes report.html, report.md, junit.xml, latency.svg and rate.svg; returns their paths.
pub fn write_all(run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    let latency = plots::latency(&run.analysis)
        .map_err(|e| anyhow::anyhow!("drawing the latency plot: {e}"))?;
    let rate = plots::throughput(&run.analysis)
        .map_err(|e| anyhow::anyhow!("drawing the throughput plot: {e}"))?;
    let linear = run
        .results
        .checkers
        .iter()
        .find(|c| c.checker == "linearizable" && c.valid == Validity::Invalid)
        .map(|c| checks::counterexample(run, &c.details));
    let mut files = Vec::new();
    if let Some(Ok((page, _))) = &linear {
        files.push(write(&run.dir, "linearizability.html", page)?);
    }
    let html = html::render(run, &latency, &rate, linear.as_ref())?;
    files.extend(vec![
        write(&run.dir, "latency.svg", &latency)?,
        write(&run.dir, "rate.svg", &rate)?,
        write(&run.dir, "report.html", &html)?,
        write(&run.dir, "report.md", &markdown::render(run))?,
        write(&run.dir, "junit.xml", &junit::render(&[run]))?,
    ]);
    Ok(files)
}

/// `splitbrain report <run-dir>`: loads the run, writes a reconstructed results.json
/// when there was none, then every report. Returns the run and the files written.
pub fn rebuild(dir: &Path) -> anyhow::Result<(Run, Vec<PathBuf>)> {
    let run = load(dir)?;
    let mut files = Vec::new();
    if !dir.join("results.json").is_file() {
        let text = serde_json::to_string_pretty(&run.results)
            .context("serialising the reconstructed results")?;
        files.push(write(dir, "results.json", &(text + "\n"))?);
    }
    files.extend(write_all(&run)?);
    Ok((run, files))
}

/// One junit.xml for a matrix (`test-all`): one `<testsuite>` per run folder in
/// `runs`, one `<testcase>` per checker, written to `out`.
pub fn write_matrix_junit(out: &Path, runs: &[PathBuf]) -> anyhow::Result<()> {
    let loaded: Vec<Run> = runs
        .iter()
        .map(|d| load(d))
        .collect::<anyhow::Result<_>>()?;
    let refs: Vec<&Run> = loaded.iter().collect();
    let text = junit::render(&refs);
    let tmp = out.with_extension("xml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))
}

/// The runner's last step: never fails the run, a problem becomes one warning line.
pub fn after_run(dir: &Path) {
    if let Err(e) = load(dir).and_then(|run| write_all(&run)) {
        let text = format!("{e:#}").replace('\n', " ");
        eprintln!("splitbrain: warning: writing reports: {text}");
        tracing::warn!("writing reports: {text}");
    }
}

/// Escapes text for HTML and XML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The command that reruns this test with the same seed and settings.
pub fn reproduce_command(t: &StoredTest) -> String {
    use crate::control::sh_quote;
    let nemesis = match t.nemesis.as_str() {
        "partition-master" => "partition",
        other => other,
    };
    let mut cmd = format!(
        "splitbrain test --system {} --workload {} --nemesis {} --nemesis-interval {}s --time-limit {}s --recovery-time {}s --op-timeout {}s --concurrency {} --rate {} --max-ops {} --seed {} --name {}",
        sh_quote(&if t.mode.is_empty() {
            t.system.clone()
        } else {
            format!("{}:{}", t.system, t.mode)
        }),
        sh_quote(&t.workload),
        sh_quote(nemesis),
        t.nemesis_interval,
        t.time_limit,
        t.recovery_time,
        t.op_timeout,
        t.concurrency,
        t.rate,
        t.max_ops,
        t.seed,
        sh_quote(&t.name),
    );
    if !t.lab {
        let nodes: Vec<String> = t
            .nodes
            .iter()
            .map(|n| format!("{}:{}", n.host, n.port))
            .collect();
        cmd.push_str(&format!(" --nodes {}", sh_quote(&nodes.join(","))));
        cmd.push_str(&format!(" --username {}", sh_quote(&t.username)));
    }
    if t.warmup > 0.0 {
        cmd.push_str(&format!(" --warmup {}s", t.warmup));
    }
    if !t.op_mix.is_empty() {
        cmd.push_str(&format!(" --op-mix {}", sh_quote(&t.op_mix)));
    }
    if t.workload == "register"
        && t.processes_per_key > 0
        && t.processes_per_key != workloads::register::DEFAULT_PROCESSES_PER_KEY
    {
        cmd.push_str(&format!(" --processes-per-key {}", t.processes_per_key));
    }
    if let Some(n) = t.max_faults {
        cmd.push_str(&format!(" --max-faults {n}"));
    }
    if t.leave_db_running {
        cmd.push_str(" --leave-db-running");
    }
    cmd
}

/// Seconds, for tables.
pub fn fmt_s(x: f64) -> String {
    format!("{x:.3} s")
}
