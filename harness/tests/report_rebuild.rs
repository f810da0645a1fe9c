//! `splitbrain report` on stored runs: a run whose controller was killed (no
//! results.json, a torn last line) is re-checked from test.json and the history with
//! the known answer; every report names the lost writes with their ops; bad run
//! folders get one clear error line.

mod report_support;

use harness::report;
use report_support::{bin, write_run, SEED};
use std::process::Command;

#[test]
fn killed_run_is_rechecked_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t").join("20261122T101010");
    let syn = write_run(&dir, "synthetic", 2_000);
    // The controller died mid-write: a torn last line.
    let mut h = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("history.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut h, b"{\"index\":99999,\"time\":1,\"proc").unwrap();
    assert!(!dir.join("results.json").exists());

    let out = Command::new(bin())
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict INVALID"), "{stdout}");
    for f in [
        "results.json",
        "report.html",
        "report.md",
        "junit.xml",
        "latency.svg",
        "rate.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }

    let r: report::schema::StoredResults =
        report::schema::read_json(&dir.join("results.json")).unwrap();
    assert!(r.reconstructed);
    assert_eq!(r.schema_version, report::schema::SCHEMA_VERSION);
    assert_eq!(r.valid, checkers::Validity::Invalid);
    let d = &r.checkers[0].details;
    assert_eq!(d["lost_count"].as_u64().unwrap() as usize, syn.lost.len());
    assert_eq!(
        d["acknowledged"].as_u64().unwrap() as usize,
        syn.acknowledged
    );
    assert_eq!(r.stats.ops as usize, syn.client_ops);
    assert_eq!(r.faults.len(), 1);
    assert!((r.faults[0].start - 5.0).abs() < 1e-6 && r.faults[0].end == Some(15.0));

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("class=\"banner b-invalid\""));
    assert!(html.contains("reconstructed"));
    assert!(html.contains("incomplete line"));
    // The first lost write, with the op that acknowledged it and who did.
    let first = syn.lost[0];
    let run = report::load(&dir).unwrap();
    let op = run
        .analysis
        .ops
        .iter()
        .find(|o| o.argument.as_i64() == Some(first) && o.f == "add")
        .unwrap();
    let row = format!(
        "<tr><td class=\"n\">{first}</td><td>set</td><td class=\"n\">{:.3} s</td><td>n1</td><td>n1</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
        op.end.unwrap(),
        op.process,
        op.invoke_index,
        op.complete_index.unwrap()
    );
    assert!(html.contains(&row), "missing row {row}");
    assert!(html.contains("F1 partition: isolate n1"));
    assert!(html.contains("Two masters at once"));
    assert!(!html.contains("<script"));

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("**Verdict: INVALID**"));
    assert!(md.contains(&format!("--seed {SEED}")));
    assert!(md.contains(&format!("**{} lost writes.**", syn.lost.len())));
    assert!(md.contains(&format!("| {first} | {:.3} s | n1 | n1 |", op.end.unwrap())));
    for section in [
        "## What was tested",
        "## Method",
        "## Findings",
        "## Verdict",
        "## How to reproduce",
    ] {
        assert!(md.contains(section), "{section}");
    }

    // The reproduce command parses: with a missing nodes file it fails on that file,
    // not on an argument.
    let cmd = md.split("```sh\n").nth(1).unwrap().lines().next().unwrap();
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let out = Command::new(bin())
        .args(&args)
        .args(["--nodes-file", "/nonexistent/nodes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("/nonexistent/nodes") && !err.contains("unexpected argument"),
        "{err}"
    );

    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<testcase name=\"lost-writes\" classname=\"splitbrain.synthetic\""));
    assert!(junit.contains(&format!("<failure message=\"{}", r.checkers[0].summary)));

    // Rebuilding again reads the reconstructed results.json and says so.
    let again = report::load(&dir).unwrap();
    assert!(again.notes.iter().any(|n| n.contains("reconstructed")));
}

#[test]
fn bad_run_folders_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (tmp.path().join("nope"), "not a directory"),
        (tmp.path().to_path_buf(), "not a run folder"),
    ];
    let bad = tmp.path().join("bad");
    write_run(&bad, "bad", 50);
    std::fs::write(bad.join("results.json"), "{\"valid\": \"maybe\"}").unwrap();
    let bad_hist = tmp.path().join("badhist");
    write_run(&bad_hist, "bh", 50);
    std::fs::write(bad_hist.join("history.jsonl"), "{\"index\":0}\nnot json\n").unwrap();
    let bad_workload = tmp.path().join("badwl");
    write_run(&bad_workload, "bw", 50);
    let mut t = report_support::test_json("bw");
    t["workload"] = serde_json::json!("bank");
    std::fs::write(bad_workload.join("test.json"), t.to_string()).unwrap();
    let mut all = cases;
    all.push((bad.clone(), "results.json"));
    all.push((bad_hist.clone(), "history.jsonl: line 1"));
    all.push((bad_workload.clone(), "test.json: unknown workload \"bank\""));
    for (dir, want) in all {
        let out = Command::new(bin())
            .arg("report")
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {err}", dir.display());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("splitbrain: error: ") && err.contains(want),
            "{want}: {err}"
        );
    }
}

#[test]
fn results_written_by_the_runner_read_back() {
    use harness::config::{NemesisKind, TestConfig};
    use harness::runner::{Results, RunStats};
    let cfg = TestConfig {
        name: "t".into(),
        nodes: vec![],
        username: "root".into(),
        system: "zoo".into(),
        mode: "async-failover".into(),
        workload: workloads::WorkloadKind::Set,
        nemesis: NemesisKind::PartitionMaster,
        time_limit: std::time::Duration::from_secs(3),
        warmup: std::time::Duration::from_secs(1),
        op_mix: workloads::WorkloadKind::Set.default_mix(),
        nemesis_interval: std::time::Duration::from_secs(2),
        max_faults: Some(3),
        recovery_time: std::time::Duration::from_secs(1),
        op_timeout: std::time::Duration::from_millis(500),
        concurrency: 4,
        processes_per_key: 2,
        rate: 10.0,
        max_ops: 100,
        seed: 9,
        leave_db_running: false,
        lab: true,
        harness_version: "0.1.0",
    };
    let history = Vec::new();
    let results = Results {
        schema_version: report::schema::SCHEMA_VERSION,
        valid: checkers::Validity::Unknown,
        checkers: workloads::WorkloadKind::Set.analyse(&history),
        stats: RunStats {
            ops: 3,
            ok: 1,
            fail: 1,
            info: 1,
            duration_s: 2.5,
        },
        faults: vec![],
        heal_errors: vec!["n3: iptables: gone".into()],
        final_read_failures: vec!["n2".into()],
        interrupted: true,
        system: "zoo async-failover".into(),
        test: cfg,
        environment: report::schema::Environment {
            seed: 9,
            ..Default::default()
        },
    };
    let text = serde_json::to_string(&results).unwrap();
    let back: report::schema::StoredResults = serde_json::from_str(&text).unwrap();
    assert_eq!(back.test.seed, 9);
    assert_eq!(back.test.nemesis, "partition-master");
    assert_eq!(back.test.time_limit, 3.0);
    assert_eq!(
        (back.test.warmup, back.test.op_mix.as_str()),
        (1.0, "add=9,read=1")
    );
    let again = harness::report::reproduce_command(&back.test);
    assert!(
        again.contains(" --warmup 1s --op-mix 'add=9,read=1'"),
        "{again}"
    );
    // Processes per key round-trip; only the register workload's command carries them.
    assert_eq!(back.test.processes_per_key, 2);
    assert!(!again.contains("--processes-per-key"), "{again}");
    let mut register = back.test.clone();
    register.workload = "register".into();
    register.processes_per_key = 4;
    let cmd = harness::report::reproduce_command(&register);
    assert!(cmd.contains(" --processes-per-key 4"), "{cmd}");
    // A fault limit round-trips and is in the command; without one it is not.
    assert_eq!(back.test.max_faults, Some(3));
    assert!(again.contains(" --max-faults 3"), "{again}");
    let mut unlimited = back.test.clone();
    unlimited.max_faults = None;
    let cmd = harness::report::reproduce_command(&unlimited);
    assert!(!cmd.contains("--max-faults"), "{cmd}");
    assert_eq!(back.stats.info, 1);
    assert_eq!(back.heal_errors, vec!["n3: iptables: gone".to_string()]);
    assert!(back.interrupted && !back.reconstructed);
    assert_eq!(back.environment.as_ref().unwrap().seed, 9);
    // and back out again unchanged
    let again: report::schema::StoredResults =
        serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
    assert_eq!(again.test, back.test);
}
