//! Benchmark of the runner's client loop and the history recorder against the
//! in-process no-op system: `--clients N` (default 4) client tasks doing `--ops N`
//! operations in all (default 400,000) of `--workload W` (default set), unthrottled,
//! every invocation and completion recorded to `history.jsonl` (flushed per op, as
//! in a real run). Prints one markdown table row: ops/s and history entries/s.
//! `cargo run --release -p harness --example runner_bench`.

use harness::nodes::NodeSpec;
use harness::runner::clients::{run_client, ClientTask};
use harness::runner::generator::NoopSystem;
use harness::runner::stop::Stop;
use harness::store::Recorder;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workloads::WorkloadKind;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let clients: u64 = get("--clients").and_then(|s| s.parse().ok()).unwrap_or(4);
    let ops: u64 = get("--ops").and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let workload: WorkloadKind = get("--workload")
        .unwrap_or_else(|| "set".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let dir = std::env::temp_dir().join(format!("splitbrain-runner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("history.jsonl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (elapsed, done) = rt.block_on(async {
        let recorder = Arc::new(Recorder::create(path.clone(), Instant::now())?);
        let generator = Arc::new(Mutex::new(workload.generator(1, clients)));
        let system = Arc::new(NoopSystem);
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for p in 0..clients {
            set.spawn(run_client(ClientTask {
                system: system.clone(),
                node: NodeSpec {
                    name: format!("n{}", p % 5 + 1),
                    host: "127.0.0.1".into(),
                    port: 22,
                    user: None,
                    workdir: "/tmp".into(),
                },
                first_process: p,
                stride: clients,
                generator: generator.clone(),
                recorder: recorder.clone(),
                deadline: tokio::time::Instant::now() + Duration::from_secs(600),
                op_timeout: Duration::from_secs(1),
                interval: Duration::ZERO,
                max_ops: ops / clients,
                stop: Stop::default(),
            }));
        }
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            done += r??.ok;
        }
        recorder.sync()?;
        anyhow::Ok((start.elapsed(), done))
    })?;
    let entries = std::fs::read_to_string(&path)?.lines().count();
    let _ = std::fs::remove_dir_all(&dir);
    println!("| clients | workload | ops | seconds | ops/s | history entries/s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {clients} | {workload} | {done} | {:.2} | {:.0} | {:.0} |",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        entries as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
