//! `splitbrain check`: re-checks stored or foreign histories (our `history.jsonl`,
//! Jepsen/Knossos EDN, Porcupine etcd and kv logs) for linearizability, prints a
//! verdict table and, for each failure, a readable counterexample, optionally draws
//! it (`--visualize`). Exit status: 0 valid, 1 invalid, 2 unknown, 3 bad input
//! (one line on stderr naming the file, line and column of the first bad record).

use checkers::formats::Format;
use checkers::linear::{CheckOptions, CheckResult, PartitionReport, Validity};
use checkers::models::ModelKind;
use checkers::pipeline::{self, Prepared};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tabled::builder::Builder;
use tabled::settings::Style;

/// Exit status for input the checker could not use.
pub const EXIT_BAD_INPUT: u8 = 3;

/// `splitbrain check` options.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// History files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Input format: auto, jsonl, edn, porcupine-etcd, porcupine-kv.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: FormatArg,
    /// Model: auto, register, cas-register, kv, kv-no-partition, set, etcd, mutex,
    /// multi-register (auto: from the format, else from the functions used).
    #[arg(long, default_value = "auto", value_parser = parse_model)]
    pub model: ModelArg,
    /// Initial register value as JSON (default: null for jsonl, 0 for Knossos EDN).
    #[arg(long, value_name = "JSON")]
    pub init: Option<String>,
    /// Seconds to search before answering `unknown`.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub time_limit: f64,
    /// Worker threads for independent keys (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory the search's caches may use, in MiB; past it they stop growing.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    pub memory_limit: usize,
    /// Search a model as one object even when it declares independent components
    /// (by default a map of registers is split by key: linearizability is local).
    #[arg(long)]
    pub no_locality: bool,
    /// Write a self-contained HTML timeline of the per-key ops and linearization
    /// (with several files, the file's name is added before the extension).
    #[arg(long, value_name = "OUT.html")]
    pub visualize: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    Auto,
    Is(Format),
}

/// `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelArg {
    Auto,
    Is(ModelKind),
}

fn parse_format(s: &str) -> Result<FormatArg, String> {
    if s == "auto" {
        return Ok(FormatArg::Auto);
    }
    Format::from_name(s).map(FormatArg::Is).ok_or_else(|| {
        let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format {s:?}; expected auto, {}", names.join(", "))
    })
}

fn parse_model(s: &str) -> Result<ModelArg, String> {
    if s == "auto" {
        return Ok(ModelArg::Auto);
    }
    ModelKind::from_name(s).map(ModelArg::Is).ok_or_else(|| {
        let names: Vec<_> = ModelKind::ALL.iter().map(|m| m.name()).collect();
        format!("unknown model {s:?}; expected auto, {}", names.join(", "))
    })
}

/// One checked file.
struct Checked {
    file: PathBuf,
    prepared: Prepared,
    result: CheckResult,
}

/// Runs `splitbrain check`; returns the process exit status.
pub fn run(args: &CheckArgs) -> u8 {
    run_with(args, &mut std::io::stdout(), &mut std::io::stderr())
}

/// [`run`], printing the report to `out` and input errors to `err`.
pub fn run_with(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let init = match args
        .init
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            let _ = writeln!(err, "splitbrain check: --init is not JSON: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        let _ = writeln!(
            err,
            "splitbrain check: --time-limit must be a positive number of seconds"
        );
        return EXIT_BAD_INPUT;
    }
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs_f64(args.time_limit)),
        threads: args
            .threads
            .unwrap_or_else(|| CheckOptions::default().threads)
            .max(1),
        cache_limit: args.memory_limit.saturating_mul(1 << 20),
        locality: !args.no_locality,
        ..CheckOptions::default()
    };
    let mut bad = false;
    let mut checked = Vec::new();
    for file in &args.files {
        match check_file(file, args, init.as_ref(), &opts) {
            Ok(c) => checked.push(c),
            Err(line) => {
                let _ = writeln!(err, "splitbrain check: {line}");
                bad = true;
            }
        }
    }
    if !checked.is_empty() {
        let _ = writeln!(out, "{}", table(&checked));
        for c in &checked {
            if let Some(text) = counterexample(c) {
                let _ = writeln!(out, "\n{text}");
            }
        }
    }
    if let Some(target) = &args.visualize {
        for c in &checked {
            let path = visual_path(target, &c.file, checked.len() + usize::from(bad) > 1);
            let html =
                checkers::visualize::render(&c.file.display().to_string(), &c.prepared, &c.result);
            if let Err(e) = std::fs::write(&path, html) {
                let _ = writeln!(
                    err,
                    "splitbrain check: cannot write {}: {e}",
                    path.display()
                );
                bad = true;
            } else {
                let _ = writeln!(out, "timeline written to {}", path.display());
            }
        }
    }
    if bad {
        return EXIT_BAD_INPUT;
    }
    checked
        .iter()
        .fold(Validity::Valid, |v, c| v.and(c.result.verdict))
        .exit_code()
}

fn visual_path(out: &Path, file: &Path, several: bool) -> PathBuf {
    if !several {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.{name}.html"))
}

/// Reads, parses, pairs and checks one file; the error is the one line to print.
fn check_file(
    file: &Path,
    args: &CheckArgs,
    init: Option<&serde_json::Value>,
    opts: &CheckOptions,
) -> Result<Checked, String> {
    let shown = file.display();
    let bytes = std::fs::read(file).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        let column = upto.len() - upto.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        format!("{shown}:{line}:{column}: not UTF-8 text")
    })?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let format = match args.format {
        FormatArg::Is(f) => f,
        FormatArg::Auto => Format::detect(&name, &text).ok_or_else(|| {
            format!("{shown}:1:1: cannot tell the format of this file; name it with --format")
        })?,
    };
    let model = match args.model {
        ModelArg::Is(m) => Some(m),
        ModelArg::Auto => None,
    };
    let parsed = checkers::formats::parse(format, &text)
        .map_err(|e| format!("{shown}:{}:{}: {}", e.line, e.column, e.message))?;
    // The text is not needed past parsing: a long history's is hundreds of MB.
    drop(text);
    let mut prepared = pipeline::prepare_parsed(format, model, parsed)
        .map_err(|e| format!("{shown}:{}:{}: {}", e.line, e.column, e.message))?;
    if let Some(v) = init {
        prepared.config.init = v.clone();
    }
    let result = pipeline::check(&prepared, opts)
        .map_err(|e| format!("{shown}:{}:{}: {}", e.line, e.column, e.message))?;
    Ok(Checked {
        file: file.to_path_buf(),
        prepared,
        result,
    })
}

fn table(checked: &[Checked]) -> String {
    let mut b = Builder::default();
    b.push_record([
        "file", "format", "model", "ops", "keys", "verdict", "time", "note",
    ]);
    for c in checked {
        let r = &c.result;
        let note = match r.verdict {
            Validity::Valid => String::new(),
            Validity::Invalid => r.failing().map_or(String::new(), |p| {
                format!(
                    "{}: {} of {} ops linearizable",
                    key_name(p),
                    p.linearization.len(),
                    p.ops.len()
                )
            }),
            Validity::Unknown => r
                .partitions
                .iter()
                .find_map(|p| p.reason.clone())
                .unwrap_or_default(),
        };
        b.push_record([
            c.file.display().to_string(),
            c.prepared.format.name().to_string(),
            c.prepared.model.name().to_string(),
            c.prepared.operations.len().to_string(),
            r.partitions.len().to_string(),
            r.verdict.to_string().to_uppercase(),
            format!("{:.3} s", r.elapsed.as_secs_f64()),
            note,
        ]);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    t.to_string()
}

fn key_name(p: &PartitionReport) -> String {
    match &p.key {
        Some(k) => format!("key {k:?}"),
        None => "whole history".to_string(),
    }
}

/// The ops' lines, process and text for one line of the counterexample.
fn op_line(c: &Checked, p: &PartitionReport, local: usize) -> String {
    let v = &p.ops[local];
    let op = &c.prepared.operations[v.source];
    format!(
        "line {:>6}  process {:>4}  {}",
        c.prepared.line_of(v.source),
        op.process,
        v.description
    )
}

/// How many steps of the prefix are shown.
const PREFIX_SHOWN: usize = 8;

fn counterexample(c: &Checked) -> Option<String> {
    let p = c.result.failing()?;
    let cx = p.counterexample.as_ref()?;
    let mut out = format!(
        "{}: not linearizable on {} ({} ops)\n",
        c.file.display(),
        key_name(p),
        p.ops.len()
    );
    let n = p.linearization.len();
    out += &format!(
        "  longest linearizable prefix: {n} of {} ops{}\n",
        p.ops.len(),
        if n > PREFIX_SHOWN {
            format!(", the last {PREFIX_SHOWN}:")
        } else {
            ":".to_string()
        }
    );
    for (k, &i) in p
        .linearization
        .iter()
        .enumerate()
        .skip(n.saturating_sub(PREFIX_SHOWN))
    {
        out += &format!("    {}  => {}\n", op_line(c, p, i), p.states[k]);
    }
    out += &format!("  state after the prefix: {}\n", cx.state);
    let blocking_legal = cx
        .candidates
        .iter()
        .find(|(i, _)| *i == cx.blocking)
        .is_some_and(|(_, legal)| *legal);
    out += &format!(
        "  stuck at: {}  (must take effect before it returns; {})\n",
        op_line(c, p, cx.blocking),
        if blocking_legal {
            "legal here, but nothing can follow it"
        } else {
            "not legal in this state"
        }
    );
    let others: Vec<_> = cx
        .candidates
        .iter()
        .filter(|(i, _)| *i != cx.blocking)
        .collect();
    if !others.is_empty() {
        out += "  the other ops that could go next, none of which helps:\n";
    }
    for &&(i, legal) in &others {
        let why = if legal {
            "legal here, but no order of the rest works after it"
        } else {
            "not legal in this state"
        };
        out += &format!("    {}  ({why})\n", op_line(c, p, i));
    }
    out.pop();
    Some(out)
}
