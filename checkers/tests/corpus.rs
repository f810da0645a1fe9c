//! Agreement with every verdict of the shared linearizability corpus
//! (`../shared/corpus/*/expected.tsv`): Porcupine's etcd and kv logs (kv both per
//! key and, where Porcupine runs it, unpartitioned) and all Knossos histories.

use checkers::formats::Format;
use checkers::linear::{CheckOptions, Validity};
use checkers::models::{ModelConfig, ModelKind};
use checkers::pipeline::{check, prepare};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

fn corpus() -> PathBuf {
    let p = PathBuf::from(CORPUS);
    assert!(
        p.join("porcupine/expected.tsv").is_file() && p.join("knossos/expected.tsv").is_file(),
        "the shared corpus is missing: expected {} (shared/ must sit beside the repository)",
        p.display()
    );
    p
}

fn rows(tsv: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(tsv).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn verdict_of(
    path: &Path,
    format: Format,
    model: ModelKind,
    config: Option<ModelConfig>,
) -> Validity {
    let text = std::fs::read_to_string(path).unwrap();
    let mut p =
        prepare(format, Some(model), &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Some(c) = config {
        p.config = c;
    }
    // "Not partitioned" means one search over the whole map: no locality split.
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs(60)),
        locality: model != ModelKind::KvNoPartition,
        ..CheckOptions::default()
    };
    check(&p, &opts)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .verdict
}

fn expect(v: &str) -> Validity {
    match v {
        "true" => Validity::Valid,
        "false" => Validity::Invalid,
        other => panic!("bad expected value {other}"),
    }
}

#[test]
fn porcupine_corpus_verdicts_agree() {
    let root = corpus().join("porcupine");
    let rows = rows(&root.join("expected.tsv"));
    assert!(rows.len() >= 112, "expected.tsv has {} rows", rows.len());
    let mut mismatches = Vec::new();
    for r in &rows {
        let (format, model) = match r[1].as_str() {
            "etcd" => (Format::PorcupineEtcd, ModelKind::Etcd),
            "kv(partitioned)" => (Format::PorcupineKv, ModelKind::Kv),
            "kvNoPartition" => (Format::PorcupineKv, ModelKind::KvNoPartition),
            other => panic!("unknown model column {other}"),
        };
        if r[2] == "untested" {
            // etcd_095.log is empty upstream ("cluster failed to start"): no verdict.
            let text = std::fs::read_to_string(root.join(&r[0])).unwrap();
            assert!(
                text.trim().is_empty(),
                "{} is marked untested but not empty",
                r[0]
            );
            continue;
        }
        let got = verdict_of(&root.join(&r[0]), format, model, None);
        if got != expect(&r[2]) {
            mismatches.push(format!("{} ({}): expected {}, got {got}", r[0], r[1], r[2]));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn knossos_corpus_verdicts_agree() {
    let root = corpus().join("knossos");
    let rows = rows(&root.join("expected.tsv"));
    assert!(rows.len() >= 122, "expected.tsv has {} rows", rows.len());
    let mut mismatches = Vec::new();
    for r in &rows {
        let (model, config) = match r[1].as_str() {
            "cas-register(init 0)" => (ModelKind::CasRegister, None),
            "multi-register({:x 0 :y 0})" => (
                ModelKind::MultiRegister,
                Some(ModelConfig {
                    init: json!(0),
                    nil_read_is_unknown: true,
                    multi_init: vec![("x".into(), json!(0)), ("y".into(), json!(0))],
                }),
            ),
            "mutex(unlocked)" => (ModelKind::Mutex, None),
            other => panic!("unknown model column {other}"),
        };
        let got = verdict_of(&root.join(&r[0]), Format::Edn, model, config);
        if got != expect(&r[2]) {
            mismatches.push(format!("{} ({}): expected {}, got {got}", r[0], r[1], r[2]));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_corpus_file_is_auto_detected_and_parsed() {
    let root = corpus();
    for (dir, want) in [
        ("porcupine/jepsen", Format::PorcupineEtcd),
        ("porcupine/kv", Format::PorcupineKv),
        ("knossos/cas-register/good", Format::Edn),
        ("knossos/cas-register/bad", Format::Edn),
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".html") || name == "etcd_095.log" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(Format::detect(&name, &text), Some(want), "{name}");
            prepare(want, None, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
