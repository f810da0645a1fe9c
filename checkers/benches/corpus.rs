//! The corpus benchmark (`cargo bench -p checkers --bench corpus`): check time only
//! (parsing and pairing excluded), median of several runs after a warm-up, each
//! case in its own child process so its peak RSS can be reported; then the
//! oracle property run (random histories vs brute force). Prints a markdown table
//! for checkers/BENCHMARKS.md. Options: `--case NAME` runs one case in-process
//! (used by the parent), `--oracle-cases N` (default 100000), `--runs N` (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use checkers::formats::Format;
use checkers::linear::{CheckOptions, Validity};
use checkers::models::ModelKind;
use checkers::pipeline::{check, prepare, Prepared};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/porcupine");

/// (name, files, model, expected verdict per file, time limit in seconds, locality)
type Case = (
    &'static str,
    Vec<String>,
    ModelKind,
    Vec<Validity>,
    u64,
    bool,
);

fn cases() -> Vec<Case> {
    let tsv = std::fs::read_to_string(format!("{CORPUS}/expected.tsv")).expect("corpus missing");
    let mut etcd = (Vec::new(), Vec::new());
    for l in tsv.lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() > 2 && f[1] == "etcd" && f[2] != "untested" {
            etcd.0.push(f[0].to_string());
            etcd.1.push(if f[2] == "true" {
                Validity::Valid
            } else {
                Validity::Invalid
            });
        }
    }
    let kv = |n: &str| vec![format!("kv/{n}.txt")];
    use Validity::{Invalid as I, Valid as V};
    let nk = ModelKind::KvNoPartition;
    let etcd002 = vec!["jepsen/etcd_002.log".to_string()];
    vec![
        (
            "etcd corpus (102 logs, total)",
            etcd.0,
            ModelKind::Etcd,
            etcd.1,
            120,
            false,
        ),
        (
            "etcd_002 (linearizable)",
            etcd002,
            ModelKind::Etcd,
            vec![V],
            120,
            false,
        ),
        (
            "kv c10 ok, not partitioned",
            kv("c10-ok"),
            nk,
            vec![V],
            120,
            false,
        ),
        (
            "kv c10 bad, not partitioned",
            kv("c10-bad"),
            nk,
            vec![I],
            120,
            false,
        ),
        (
            "kv c50 ok, by key",
            kv("c50-ok"),
            ModelKind::Kv,
            vec![V],
            120,
            false,
        ),
        (
            "kv c50 bad, by key",
            kv("c50-bad"),
            ModelKind::Kv,
            vec![I],
            120,
            false,
        ),
        (
            "kv c50 ok, not partitioned, monolithic",
            kv("c50-ok"),
            nk,
            vec![V],
            120,
            false,
        ),
        (
            "kv c50 bad, not partitioned, monolithic",
            kv("c50-bad"),
            nk,
            vec![I],
            120,
            false,
        ),
        (
            "kv c50 ok, not partitioned, locality",
            kv("c50-ok"),
            nk,
            vec![V],
            120,
            true,
        ),
        (
            "kv c50 bad, not partitioned, locality",
            kv("c50-bad"),
            nk,
            vec![I],
            120,
            true,
        ),
    ]
}

fn load(files: &[String], model: ModelKind) -> Vec<Prepared> {
    files
        .iter()
        .map(|f| {
            let path = PathBuf::from(CORPUS).join(f);
            let text = std::fs::read_to_string(&path).expect("read corpus file");
            let format = if f.starts_with("kv/") {
                Format::PorcupineKv
            } else {
                Format::PorcupineEtcd
            };
            prepare(format, Some(model), &text).expect("corpus file parses")
        })
        .collect()
}

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss
    }
}

fn run_case(name: &str, runs: usize) {
    let (_, files, model, expected, limit, locality) = cases()
        .into_iter()
        .find(|c| c.0 == name)
        .expect("unknown case");
    let prepared = load(&files, model);
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs(limit)),
        locality,
        ..CheckOptions::default()
    };
    let mut times = Vec::new();
    let mut verdicts = String::new();
    for run in 0..=runs {
        let t0 = Instant::now();
        let mut got = Vec::new();
        for p in &prepared {
            got.push(check(p, &opts).expect("checks").verdict);
        }
        let dt = t0.elapsed();
        if run > 0 {
            times.push(dt);
        }
        let agree = got.iter().zip(&expected).filter(|(a, b)| a == b).count();
        verdicts = if got.len() == 1 {
            format!("{} (expected {})", got[0], expected[0])
        } else {
            format!("{agree}/{} agree", got.len())
        };
        if got.contains(&Validity::Unknown) {
            // An unknown means the time limit was hit: one run says it all.
            times.push(dt);
            break;
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{}\t{}\t{}\t{}",
        median.as_secs_f64() * 1e3,
        peak_rss_kib(),
        verdicts,
        times.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = get("--runs").and_then(|s| s.parse().ok()).unwrap_or(5);
    if let Some(name) = get("--per-file") {
        let (_, files, model, _, limit, locality) = cases()
            .into_iter()
            .find(|c| c.0 == name)
            .expect("unknown case");
        let opts = CheckOptions {
            time_limit: Some(Duration::from_secs(limit)),
            locality,
            ..CheckOptions::default()
        };
        for (f, p) in files.iter().zip(load(&files, model)) {
            let t0 = Instant::now();
            let r = check(&p, &opts).expect("checks");
            let steps: u64 = r.partitions.iter().map(|p| p.steps).sum();
            let cache: usize = r.partitions.iter().map(|p| p.cache_entries).sum();
            println!(
                "{f}\t{:.3} ms\t{}\tsteps {steps}\tcache {cache}",
                t0.elapsed().as_secs_f64() * 1e3,
                r.verdict
            );
        }
        return;
    }
    if let Some(name) = get("--case") {
        run_case(&name, runs);
        return;
    }
    let oracle_cases: usize = get("--oracle-cases")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let exe = std::env::current_exe().expect("own path");
    println!("| case | check time (median) | runs | peak RSS | verdict |\n|---|--:|--:|--:|---|");
    for (name, ..) in cases() {
        let out = Command::new(&exe)
            .args(["--case", name, "--runs", &runs.to_string()])
            .output()
            .expect("spawn");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = text.trim().split('\t').collect();
        if f.len() < 4 {
            println!(
                "| {name} | failed: {} | | | |",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        }
        let ms: f64 = f[0].parse().unwrap_or(f64::NAN);
        let rss: f64 = f[1].parse().unwrap_or(f64::NAN);
        println!(
            "| {name} | {ms:.2} ms | {} | {:.1} MiB | {} |",
            f[3],
            rss / 1024.0,
            f[2]
        );
    }
    let t0 = Instant::now();
    let stats = common::oracle_run(oracle_cases, 0xbe4c_4000);
    println!(
        "\noracle property run: {} random histories ({} valid, {} invalid by brute force), 0 disagreements, {:.1} s",
        stats.cases,
        stats.valid,
        stats.cases - stats.valid,
        t0.elapsed().as_secs_f64()
    );
}
