//! Latency of a no-op command (`true`) on a kept-open russh session versus spawning
//! `ssh -F CONFIG -o BatchMode=yes NODE true` each time, measured in the same run.
//!
//! ```text
//! cargo run -p harness --example exec_latency -- --nodes-file F --key K \
//!     --known-hosts H --ssh-config C --count N
//! ```

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use harness::control::{Remote, Session, SshOptions, StrictHostKeyChecking};
use harness::nodes::read_nodes_file;

#[derive(Parser)]
struct Args {
    /// Nodes file (the format of `--nodes-file`).
    #[arg(long)]
    nodes_file: PathBuf,
    /// Private key for the kept session.
    #[arg(long)]
    key: PathBuf,
    /// known_hosts for the kept session (strict checking).
    #[arg(long)]
    known_hosts: PathBuf,
    /// OpenSSH client config for the spawned `ssh` (node names as Host entries).
    #[arg(long)]
    ssh_config: PathBuf,
    /// Samples per node and method (1..=10000).
    #[arg(long, default_value_t = 200)]
    count: usize,
}

/// Nearest-rank quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

struct Row {
    node: String,
    method: &'static str,
    samples: Vec<Duration>,
}

async fn run(args: Args) -> Result<Vec<Row>, String> {
    if !(1..=10_000).contains(&args.count) {
        return Err(format!("--count must be 1..=10000, got {}", args.count));
    }
    let nodes = read_nodes_file(&args.nodes_file).map_err(|e| e.to_string())?;
    let opts = SshOptions {
        private_key: Some(args.key.clone()),
        use_agent: false,
        known_hosts: args.known_hosts.clone(),
        strict_host_key_checking: StrictHostKeyChecking::Yes,
        ..SshOptions::default()
    };
    let timeout = Duration::from_secs(10);
    let mut rows = Vec::new();
    for node in &nodes {
        let session = Session::connect(node, &opts)
            .await
            .map_err(|e| e.to_string())?;
        session
            .exec_ok("true", timeout)
            .await
            .map_err(|e| e.to_string())?; // warm-up
        let mut kept = Vec::with_capacity(args.count);
        for _ in 0..args.count {
            let t0 = Instant::now();
            session
                .exec_ok("true", timeout)
                .await
                .map_err(|e| e.to_string())?;
            kept.push(t0.elapsed());
        }
        session.close().await;
        let mut spawned = Vec::with_capacity(args.count);
        for _ in 0..args.count {
            let t0 = Instant::now();
            let status = tokio::process::Command::new("ssh")
                .arg("-F")
                .arg(&args.ssh_config)
                .args(["-o", "BatchMode=yes", &node.name, "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output();
            let out = tokio::time::timeout(timeout, status)
                .await
                .map_err(|_| format!("{}: `ssh {} true` took over 10 s", node, node.name))?
                .map_err(|e| format!("cannot run ssh: {e} (install openssh-client)"))?;
            if !out.status.success() {
                return Err(format!(
                    "{}: `ssh -F {} {} true` failed: {}",
                    node,
                    args.ssh_config.display(),
                    node.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            spawned.push(t0.elapsed());
        }
        rows.push(Row {
            node: node.name.clone(),
            method: "kept russh session",
            samples: kept,
        });
        rows.push(Row {
            node: node.name.clone(),
            method: "spawn ssh BatchMode",
            samples: spawned,
        });
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exec_latency: cannot start tokio: {e}");
            return ExitCode::from(3);
        }
    };
    let rows = match rt.block_on(run(args)) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("exec_latency: {e}");
            return ExitCode::from(3);
        }
    };
    println!(
        "{:<8} {:<22} {:>6} {:>10} {:>10} {:>10}",
        "node", "method", "n", "p50 ms", "p99 ms", "max ms"
    );
    for mut r in rows {
        r.samples.sort();
        println!(
            "{:<8} {:<22} {:>6} {:>10} {:>10} {:>10}",
            r.node,
            r.method,
            r.samples.len(),
            ms(quantile(&r.samples, 0.50)),
            ms(quantile(&r.samples, 0.99)),
            ms(*r.samples.last().unwrap_or(&Duration::ZERO)),
        );
    }
    ExitCode::SUCCESS
}
