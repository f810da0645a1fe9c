//! `splitbrain serve`: browse the results store over HTTP (axum). The index lists
//! runs newest first (test, time, verdict, anomaly counts) and filters them by test
//! and verdict; `/runs/<test>/<run>/...` serves a run's reports and raw files. Binds
//! to 127.0.0.1 unless told otherwise, and never serves anything outside the store:
//! `..`, absolute paths and symlinks that lead out are refused.

use crate::report::esc;
use crate::report::junit::iso_timestamp;
use crate::report::schema::{read_json, StoredResults};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use serde::Deserialize;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; anything else exposes the store).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The results store to serve.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
}

/// One run of the store, as the index shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub test: String,
    pub run: String,
    /// `valid`, `invalid`, `unknown`, or `incomplete` (no results.json yet).
    pub verdict: String,
    /// Nonzero anomaly counts, e.g. `("lost", 377)`.
    pub anomalies: Vec<(String, u64)>,
    pub ops: u64,
    pub has_report: bool,
}

const ANOMALIES: &[(&str, &str)] = &[
    ("lost_count", "lost"),
    ("divergent_count", "divergent"),
    ("unexpected_count", "never added"),
    ("failed_but_present_count", "failed but present"),
];

fn entry(test: &str, run: &str, dir: &Path) -> Option<RunEntry> {
    if !dir.join("test.json").is_file() && !dir.join("results.json").is_file() {
        return None;
    }
    let mut e = RunEntry {
        test: test.to_string(),
        run: run.to_string(),
        verdict: "incomplete".to_string(),
        anomalies: Vec::new(),
        ops: 0,
        has_report: dir.join("report.html").is_file(),
    };
    match read_json::<StoredResults>(&dir.join("results.json")) {
        Ok(r) => {
            e.verdict = r.valid.to_string();
            e.ops = r.stats.ops;
            for c in &r.checkers {
                let d = &c.details;
                // Intervals in which a second node only claimed master are not anomalies.
                if c.checker == "dual-master" && c.valid == checkers::Validity::Invalid {
                    if let Some(n) = d.get("intervals").and_then(|v| v.as_array()) {
                        if !n.is_empty() {
                            e.anomalies
                                .push(("dual-master intervals".into(), n.len() as u64));
                        }
                    }
                }
                if let Some(n) = d.get("invalid_keys").and_then(|v| v.as_u64()) {
                    if n > 0 {
                        e.anomalies.push(("non-linearizable keys".into(), n));
                    }
                }
                for (field, label) in ANOMALIES {
                    if let Some(n) = c.details.get(field).and_then(|v| v.as_u64()) {
                        if n > 0 {
                            e.anomalies.push((label.to_string(), n));
                        }
                    }
                }
            }
        }
        Err(_) if !dir.join("results.json").exists() => {}
        Err(_) => e.verdict = "unreadable".to_string(),
    }
    Some(e)
}

fn real_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|d| Some((d.file_name().to_str()?.to_string(), d.path())))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// Every run of the store, newest first (run folders are named by UTC time).
pub fn list_runs(root: &Path) -> Vec<RunEntry> {
    let mut runs: Vec<RunEntry> = real_dirs(root)
        .into_iter()
        .flat_map(|(test, tdir)| {
            real_dirs(&tdir)
                .into_iter()
                .filter_map(move |(run, rdir)| entry(&test, &run, &rdir))
                .collect::<Vec<_>>()
        })
        .collect();
    runs.sort_by(|a, b| b.run.cmp(&a.run).then_with(|| a.test.cmp(&b.test)));
    runs
}

/// Percent-encodes a path for an href: every byte but letters, digits, `-._~/`.
pub fn url_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a URL path below the store, or `None` when it is not allowed: any `..`,
/// `.`, empty or absolute component, or a canonical path outside the store (a symlink
/// that leads out).
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.contains('\0') || rel.contains('\\') {
        return None;
    }
    let mut path = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() {
            return None;
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => path.push(c),
            _ => return None,
        }
    }
    let real = path.canonicalize().ok()?;
    let real_root = root.canonicalize().ok()?;
    real.starts_with(&real_root).then_some(real)
}

#[derive(Deserialize, Default)]
pub struct Filter {
    pub test: Option<String>,
    pub verdict: Option<String>,
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:20px;color:#1d1d1f}h1{font-size:20px}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}th{background:#f0f0f0}\
.valid{color:#2e7d32;font-weight:600}.invalid{color:#c62828;font-weight:600}.unknown,.incomplete,.unreadable{color:#9a6700;font-weight:600}\
form{margin:10px 0}a{margin-right:8px}";

fn page(title: &str, body: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
        ],
        format!("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n", esc(title)),
    )
        .into_response()
}

/// The index page for `runs` under `filter`.
pub fn index_html(runs: &[RunEntry], filter: &Filter) -> String {
    let pick = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let (ft, fv) = (pick(&filter.test), pick(&filter.verdict));
    let mut tests: Vec<&str> = runs.iter().map(|r| r.test.as_str()).collect();
    tests.sort();
    tests.dedup();
    let mut b = "<h1>splitbrain results</h1><form method=\"get\" action=\"/\"><label>test <select name=\"test\"><option value=\"\">all</option>".to_string();
    for t in &tests {
        let sel = if ft.as_deref() == Some(*t) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option{sel}>{}</option>", esc(t));
    }
    b.push_str(
        "</select></label> <label>verdict <select name=\"verdict\"><option value=\"\">all</option>",
    );
    for v in ["valid", "invalid", "unknown", "incomplete"] {
        let sel = if fv.as_deref() == Some(v) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option{sel}>{v}</option>");
    }
    b.push_str("</select></label> <button type=\"submit\">filter</button></form>");
    let shown: Vec<&RunEntry> = runs
        .iter()
        .filter(|r| ft.as_deref().is_none_or(|t| r.test == t))
        .filter(|r| fv.as_deref().is_none_or(|v| r.verdict == v))
        .collect();
    let _ = write!(b, "<p>{} of {} runs, newest first.</p><table id=\"runs\"><tr><th>time (UTC)</th><th>test</th><th>verdict</th><th>anomalies</th><th>client ops</th><th>open</th></tr>", shown.len(), runs.len());
    for r in shown {
        let base = format!("/runs/{}/{}/", url_path(&r.test), url_path(&r.run));
        let anomalies: Vec<String> = r
            .anomalies
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let _ = write!(
            b,
            "<tr class=\"run\"><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td><td>{}</td><td>{}<a href=\"{base}\">files</a></td></tr>",
            esc(&iso_timestamp(&r.run).unwrap_or_else(|| r.run.clone()).replace('T', " ")),
            esc(&r.test),
            if anomalies.is_empty() { "none".to_string() } else { esc(&anomalies.join(", ")) },
            r.ops,
            if r.has_report { format!("<a href=\"{base}report.html\">report</a>") } else { String::new() },
            v = esc(&r.verdict),
        );
    }
    b.push_str("</table>");
    b
}

async fn index(State(root): State<Arc<PathBuf>>, Query(f): Query<Filter>) -> Response {
    let runs = tokio::task::spawn_blocking(move || list_runs(&root))
        .await
        .unwrap_or_default();
    page("splitbrain results", &index_html(&runs, &f))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "xml" => "application/xml",
        "png" => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

fn refuse(code: StatusCode, why: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

async fn file(State(root): State<Arc<PathBuf>>, UrlPath(rel): UrlPath<String>) -> Response {
    let rel = rel.trim_end_matches('/').to_string();
    let Some(path) = resolve(&root, &rel) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "refused: not a path inside the results store",
        );
    };
    if path.is_dir() {
        let mut b = format!("<h1>{}</h1><ul>", esc(&rel));
        let mut names: Vec<(String, bool)> = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| Some((d.file_name().to_str()?.to_string(), d.path().is_dir())))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        names.sort();
        for (n, dir) in names {
            let slash = if dir { "/" } else { "" };
            let _ = write!(
                b,
                "<li><a href=\"/runs/{}/{}{slash}\">{}{slash}</a></li>",
                url_path(&rel),
                url_path(&n),
                esc(&n)
            );
        }
        b.push_str("</ul><p><a href=\"/\">all runs</a></p>");
        return page(&rel, &b);
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => refuse(StatusCode::NOT_FOUND, &format!("cannot read: {e}")),
    }
}

/// The routes, serving the store at `root`.
pub fn router(root: PathBuf) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs/*path", get(file))
        .with_state(Arc::new(root))
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.results_dir.is_dir(),
        "--results-dir {}: no such directory",
        args.results_dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the tokio runtime: {e}"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .map_err(|e| anyhow::anyhow!("--bind {}: {e}", args.bind))?;
        if !args.bind.ip().is_loopback() {
            eprintln!(
                "splitbrain: warning: serving on {}, reachable beyond this machine",
                args.bind
            );
        }
        println!(
            "serving {} on http://{}/ (Ctrl-C to stop)",
            args.results_dir.display(),
            listener.local_addr()?
        );
        axum::serve(listener, router(args.results_dir.clone()))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| anyhow::anyhow!("serving: {e}"))?;
        Ok(0)
    })
}
