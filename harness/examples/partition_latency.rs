//! Time to apply and to heal a partition (majorities-ring) on every node of the
//! local lab: through kept-open russh sessions, all nodes in parallel, one
//! `iptables-restore` transaction per node (what the harness does), versus the same
//! per-node scripts run one node after another over fresh `ssh -F CONFIG NODE`
//! processes. Also a no-op (`true`) on one kept session and on all of them in
//! parallel, to show the fixed cost of one remote command on these nodes.
//!
//! ```text
//! cargo run -p harness --example partition_latency -- --count 20
//! ```
//!
//! Holds the lab's exclusive-use lock (unless `SPLITBRAIN_LAB_LOCK_HELD=1` says the
//! caller does), brings the lab up when it is not, leaves every node healed and
//! takes the lab down again if it brought it up.

use clap::Parser;
use harness::control::{Remote, Session, SshOptions, StrictHostKeyChecking, Target};
use harness::fault::exec;
use harness::lab;
use harness::nodes::read_nodes_file;
use harness::systems::NodeHandle;
use nemesis::{iptables, Topology};
use rand::SeedableRng;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Lab state directory (nodes, id_ed25519, known_hosts, ssh_config).
    #[arg(long, default_value = "/var/lib/splitbrain/lab")]
    state_dir: PathBuf,
    /// Samples per method and step (1..=200).
    #[arg(long, default_value_t = 20)]
    count: usize,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn run(args: Args) -> Result<Vec<(String, Vec<Duration>)>, String> {
    if !(1..=200).contains(&args.count) {
        return Err(format!("--count must be 1..=200, got {}", args.count));
    }
    let specs = read_nodes_file(&args.state_dir.join("nodes")).map_err(|e| e.to_string())?;
    let opts = SshOptions {
        private_key: Some(args.state_dir.join("id_ed25519")),
        known_hosts: args.state_dir.join("known_hosts"),
        strict_host_key_checking: StrictHostKeyChecking::Yes,
        use_agent: false,
        ..SshOptions::default()
    };
    let mut nodes = Vec::new();
    for s in &specs {
        let session = Session::connect(s, &opts)
            .await
            .map_err(|e| e.to_string())?;
        nodes.push(NodeHandle {
            spec: s.clone(),
            remote: Arc::new(Target::Ssh(Arc::new(session))),
        });
    }
    let names = exec::names(&nodes);
    let plan = Topology::MajoritiesRing
        .plan(&names, &[], &mut rand_chacha::ChaCha8Rng::seed_from_u64(1))
        .map_err(|e| e.to_string())?;
    let addrs = exec::addresses(&nodes);
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..args.count {
        let t = Instant::now();
        nodes[0]
            .remote
            .exec_ok("true", Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        noop.push(t.elapsed());
    }
    rows.push(("no-op `true`, one node, kept session".into(), noop));
    let mut noop_all = Vec::new();
    for _ in 0..args.count {
        let t = Instant::now();
        let e = exec::on_all(&nodes, |_| Ok("true".to_string())).await;
        noop_all.push(t.elapsed());
        if !e.is_empty() {
            return Err(e.join("; "));
        }
    }
    rows.push((
        format!(
            "no-op `true`, {} nodes, kept sessions in parallel",
            nodes.len()
        ),
        noop_all,
    ));
    let (mut apply, mut heal) = (Vec::new(), Vec::new());
    for _ in 0..args.count {
        let t = Instant::now();
        let e = exec::partition(&nodes, &plan.grudge).await;
        apply.push(t.elapsed());
        if !e.is_empty() {
            return Err(e.join("; "));
        }
        let t = Instant::now();
        let e = exec::heal_network_and_clocks(&nodes).await;
        heal.push(t.elapsed());
        if !e.is_empty() {
            return Err(e.join("; "));
        }
    }
    rows.push((
        format!("apply, {} nodes, kept sessions in parallel", nodes.len()),
        apply,
    ));
    rows.push((
        format!("heal, {} nodes, kept sessions in parallel", nodes.len()),
        heal,
    ));
    let (mut apply, mut heal) = (Vec::new(), Vec::new());
    let ssh = |node: &str, script: &str| {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(args.state_dir.join("ssh_config"))
            .args(["-o", "BatchMode=yes", node, script])
            .output()
            .map_err(|e| format!("spawning ssh: {e}"))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "ssh {node}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            })
    };
    for _ in 0..args.count {
        let t = Instant::now();
        for n in &names {
            let s = iptables::apply_script(n, &plan.grudge, &addrs)?;
            ssh(n, &s)?;
        }
        apply.push(t.elapsed());
        let t = Instant::now();
        for n in &nodes {
            ssh(&n.spec.name, &exec::heal_node_script(n))?;
        }
        heal.push(t.elapsed());
    }
    rows.push((
        format!("apply, {} nodes, fresh ssh one after another", names.len()),
        apply,
    ));
    rows.push((
        format!("heal, {} nodes, fresh ssh one after another", names.len()),
        heal,
    ));
    let e = exec::heal_network_and_clocks(&nodes).await;
    for n in &nodes {
        if let Target::Ssh(s) = n.remote.as_ref() {
            s.close().await;
        }
    }
    if !e.is_empty() {
        return Err(e.join("; "));
    }
    Ok(rows)
}

/// Holds the lab for the measurement: the lock, and the lab up.
struct LabUse {
    _lock: Option<lab::LabLock>,
    cfg: lab::LabConfig,
    brought_up: bool,
}

impl LabUse {
    fn take(state_dir: &std::path::Path) -> Result<LabUse, String> {
        let lock = if std::env::var(lab::LOCK_HELD_ENV).is_ok_and(|v| v == "1") {
            None
        } else {
            Some(lab::exclusive_use(Duration::from_secs(900)).map_err(|e| e.to_string())?)
        };
        let cfg = lab::LabConfig {
            state_dir: state_dir.to_path_buf(),
            ..lab::LabConfig::default()
        };
        let was_up = lab::status(&cfg)
            .map(|s| s.state == lab::LabState::Up)
            .unwrap_or(false);
        lab::up(&cfg).map_err(|e| e.to_string())?;
        Ok(LabUse {
            _lock: lock,
            cfg,
            brought_up: !was_up,
        })
    }
}

impl Drop for LabUse {
    fn drop(&mut self) {
        if self.brought_up {
            if let Err(e) = lab::down(&self.cfg) {
                eprintln!("partition_latency: lab down: {e}");
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let count = args.count;
    let _lab = match LabUse::take(&args.state_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("partition_latency: {e}");
            return ExitCode::from(3);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("partition_latency: tokio: {e}");
            return ExitCode::from(3);
        }
    };
    match rt.block_on(run(args)) {
        Ok(rows) => {
            println!("| step | median ms | p90 ms | max ms | samples |");
            println!("|---|--:|--:|--:|--:|");
            for (name, mut s) in rows {
                s.sort();
                println!(
                    "| {name} | {} | {} | {} | {count} |",
                    ms(quantile(&s, 0.5)),
                    ms(quantile(&s, 0.9)),
                    ms(quantile(&s, 1.0))
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("partition_latency: {e}");
            ExitCode::from(3)
        }
    }
}
