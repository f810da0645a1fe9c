//! The fuzz targets' inputs in the normal test suite (the fuzzers themselves need
//! nightly and minutes; see docs/FUZZING.md): every seed under `fuzz/seeds/<target>`
//! goes through the same parser calls as `fuzz/fuzz_targets/<target>.rs` and must
//! parse (the seeds are valid inputs, with known sizes), and every input the fuzzers
//! ever crashed on, kept under `fuzz/regressions/<target>`, must now return without
//! a panic.

use clap::Parser;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>`, sorted; empty when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let bytes = std::fs::read(&p).unwrap();
                    (p, bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Parser)]
struct MatrixArgs {
    #[command(flatten)]
    a: harness::test_all::TestAllArgs,
}

/// What each target does with one input; `Ok(n)` counts what it parsed.
fn run(target: &str, data: &[u8], tmp: &Path) -> Result<usize, String> {
    use checkers::formats::{parse, Format};
    let text = || std::str::from_utf8(data).map_err(|e| e.to_string());
    match target {
        "history_jsonl" => {
            let ops = checkers::history::read_jsonl(data).map_err(|e| e.to_string())?;
            parse(Format::Jsonl, text()?).map_err(|e| e.to_string())?;
            Ok(ops.len())
        }
        "edn" => {
            let t = text()?;
            let n = checkers::formats::edn::read_elements(t)
                .map_err(|e| e.to_string())?
                .len();
            parse(Format::Edn, t).map_err(|e| e.to_string())?;
            Ok(n)
        }
        "porcupine" => {
            let t = text()?;
            let format = Format::detect("seed.log", t).ok_or("format not detected")?;
            let a = parse(Format::PorcupineEtcd, t);
            let b = parse(Format::PorcupineKv, t);
            match format {
                Format::PorcupineEtcd => a.map(|_| 1).map_err(|e| e.to_string()),
                Format::PorcupineKv => b.map(|_| 1).map_err(|e| e.to_string()),
                other => Err(format!("detected {}", other.name())),
            }
        }
        "nodes" => {
            let t = text()?;
            let file = harness::nodes::parse_nodes(t, "seed");
            let flag = harness::nodes::parse_nodes_flag(t);
            file.or(flag).map(|n| n.len()).map_err(|e| e.to_string())
        }
        "grudge" => {
            let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
            nemesis::Grudge::parse(text()?, "seed", &nodes)
                .map(|_| 1)
                .map_err(|e| e.to_string())
        }
        "matrix" => {
            let path = tmp.join("matrix.toml");
            std::fs::write(&path, data).unwrap();
            let p = MatrixArgs::try_parse_from(["x", "--matrix", path.to_str().unwrap()])
                .map_err(|e| e.to_string())?;
            harness::test_all::cells(&p.a)
                .map(|c| c.len())
                .map_err(|e| format!("{e:#}"))
        }
        other => panic!("no target {other}"),
    }
}

#[test]
fn every_seed_parses_and_every_regression_returns() {
    let tmp = tempfile::tempdir().unwrap();
    // Seeds with the count each must parse to (ops, elements, nodes, cells; 1: parsed).
    let expected: &[(&str, &str, usize)] = &[
        ("history_jsonl", "design.jsonl", 5),
        ("edn", "mongodb-v0-ack-rollback-11.edn", 1),
        ("edn", "immediate-failure.edn", 1),
        ("porcupine", "etcd_002.log", 1),
        ("porcupine", "kv-c01-bad-head.txt", 1),
        ("nodes", "mixed", 4),
        ("nodes", "flag", 3),
        ("grudge", "grudge.json", 1),
        ("grudge", "grudge.toml", 1),
        ("matrix", "zoo.toml", 12),
        ("matrix", "systems.toml", 2),
    ];
    let targets = [
        "history_jsonl",
        "edn",
        "porcupine",
        "nodes",
        "grudge",
        "matrix",
    ];
    for target in targets {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (path, data) in &seeds {
            let name = path.file_name().unwrap().to_str().unwrap();
            let want = expected
                .iter()
                .find(|(t, n, _)| *t == target && *n == name)
                .unwrap_or_else(|| panic!("seed {} has no expected count here", path.display()));
            let got = run(target, data, tmp.path())
                .unwrap_or_else(|e| panic!("seed {} does not parse: {e}", path.display()));
            if target == "edn" {
                assert!(got >= want.2, "{}: {got} elements", path.display());
            } else {
                assert_eq!(got, want.2, "{}", path.display());
            }
        }
        for (path, data) in inputs("regressions", target) {
            // Ok or a clean error; a panic fails the test.
            let _ = run(target, &data, tmp.path());
            eprintln!("regression {} returned", path.display());
        }
    }
}
