//! `splitbrain fault`: manual fault experiments against a running cluster, outside
//! any test — partition (every topology, or a grudge file), packet faults, clock
//! bump/strobe/reset, kill/pause/resume/restart of the system's processes, `heal`
//! (everything, idempotent, needs no memory of earlier commands: what is not read
//! back from the nodes is in each node's fault markers) and `status` (the real state
//! read back from every node). Nodes: the lab unless `--nodes` or `--nodes-file` is
//! given. [`exec`] holds the execution shared with the runner.

pub mod exec;
pub mod heal;
pub mod process;
pub mod status;

use crate::cluster_args::{ClusterArgs, LabUse, Resolved};
use crate::config;
use crate::control::{Cluster, Remote, Target};
use crate::lab;
use crate::nodes::NodeSpec;
use crate::systems::zoo::Zoo;
use crate::systems::{current_masters, NodeHandle, System};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nemesis::clock::Offset;
use nemesis::netem::PacketFault;
use nemesis::{Grudge, Targets, Topology};
use process::{ProcessFault, ProcessUndo};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct FaultArgs {
    #[command(subcommand)]
    pub action: FaultAction,
    /// Which nodes and how to log in.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The lab's state directory (when no nodes are given).
    #[arg(long, global = true, default_value = lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Zoo mode of the running cluster (for restart and primaries).
    #[arg(long, global = true, default_value = "async-failover")]
    pub zoo_mode: String,
    /// Seed for random choices (random halves, ring order, `one`...).
    #[arg(long, global = true)]
    pub seed: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum FaultAction {
    /// Cut the network: isolate [NODE], split N1,N2, halves, random-halves,
    /// majority-minority, majorities-ring, bridge [NODE], primaries; or --grudge FILE.
    Partition {
        /// Topology name.
        #[arg(required_unless_present = "grudge")]
        topology: Option<String>,
        /// Its argument (a node for isolate/bridge, a side for split).
        arg: Option<String>,
        /// A custom grudge as JSON (`{"n1": ["n2"]}`) or TOML (`n1 = ["n2"]`).
        #[arg(long, conflicts_with = "topology")]
        grudge: Option<PathBuf>,
    },
    /// Packet faults from TARGETS toward every other node, e.g. `loss=10%,delay=50ms`.
    #[command(alias = "netem")]
    Packet { targets: String, spec: String },
    /// Clock faults.
    Clock {
        #[command(subcommand)]
        action: ClockAction,
    },
    /// SIGKILL the system's process on TARGETS (names, one, minority, majority, primaries, all).
    Kill { targets: String },
    /// SIGSTOP the system's process on TARGETS.
    Pause { targets: String },
    /// SIGCONT the system's process on TARGETS.
    Resume { targets: String },
    /// Start the system again on TARGETS after a kill (data kept).
    Restart { targets: String },
    /// Undo every fault on every node: rules, qdiscs, clocks, paused processes.
    Heal,
    /// Read the real state back from every node.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClockAction {
    /// Move the clocks of TARGETS by OFFSET (e.g. +5s, -250ms).
    Bump {
        targets: String,
        #[arg(allow_hyphen_values = true)]
        offset: String,
    },
    /// Flip the clocks of TARGETS between offsets A and B every --period for --duration.
    Strobe {
        targets: String,
        #[arg(allow_hyphen_values = true)]
        a: String,
        #[arg(allow_hyphen_values = true)]
        b: String,
        #[arg(long, default_value = "10ms", value_parser = config::parse_duration)]
        period: Duration,
        #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
        duration: Duration,
    },
    /// Reset the clocks of TARGETS (default all) to the controller's time.
    Reset {
        #[arg(default_value = "all")]
        targets: String,
    },
}

/// A connected cluster for fault commands.
pub struct FaultCtx {
    pub nodes: Vec<NodeHandle>,
    pub system: Zoo,
    pub lab: bool,
}

/// Runs `splitbrain fault ...`; the exit code (0 done, 3 with one line on stderr).
pub fn run(args: FaultArgs) -> u8 {
    let r = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|rt| rt.block_on(run_async(args)));
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("splitbrain: fault: {}", format!("{e:#}").replace('\n', " "));
            crate::cli::EXIT_HARNESS
        }
    }
}

/// Checks everything that needs no connection (topology, node names, offsets,
/// packet specs), so bad input fails before any node is touched.
fn validate(action: &FaultAction, names: &[String]) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut targets = |t: &str| -> anyhow::Result<()> {
        let t = Targets::parse(t)?;
        if t != Targets::Primaries {
            t.resolve(names, &[], &mut rng)?;
        }
        Ok(())
    };
    let offset = |o: &str| Offset::parse(o).map_err(anyhow::Error::msg);
    match action {
        FaultAction::Partition {
            grudge: Some(p), ..
        } => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading grudge file {}", p.display()))?;
            Grudge::parse(&text, &p.display().to_string(), names)?;
        }
        FaultAction::Partition { topology, arg, .. } => {
            let t = Topology::parse(topology.as_deref().unwrap_or(""), arg.as_deref())?;
            if t != Topology::Primaries {
                t.plan(names, &[], &mut ChaCha8Rng::seed_from_u64(0))?;
            }
        }
        FaultAction::Packet { targets: t, spec } => {
            PacketFault::parse(spec).map_err(anyhow::Error::msg)?;
            targets(t)?;
        }
        FaultAction::Clock { action } => match action {
            ClockAction::Bump {
                targets: t,
                offset: o,
            } => {
                offset(o)?;
                targets(t)?;
            }
            ClockAction::Strobe {
                targets: t,
                a,
                b,
                period,
                ..
            } => {
                offset(a)?;
                offset(b)?;
                anyhow::ensure!(!period.is_zero(), "invalid --period: must be more than 0");
                targets(t)?;
            }
            ClockAction::Reset { targets: t } => targets(t)?,
        },
        FaultAction::Kill { targets: t }
        | FaultAction::Pause { targets: t }
        | FaultAction::Resume { targets: t }
        | FaultAction::Restart { targets: t } => targets(t)?,
        FaultAction::Heal | FaultAction::Status { .. } => {}
    }
    Ok(())
}

/// Connects to every node named by `args` (the lab by default), after checking the
/// action against the node names.
pub async fn connect(args: &FaultArgs) -> anyhow::Result<FaultCtx> {
    let Resolved {
        nodes: specs,
        ssh,
        lab,
        ..
    } = args.cluster.resolve(LabUse::Existing(&args.state_dir))?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    validate(&args.action, &names)?;
    // Credentials load once; every node that cannot be reached is named in one line.
    let cluster = Cluster::connect(&specs, &ssh).await?;
    let handles: Vec<NodeHandle> = cluster
        .sessions()
        .iter()
        .map(|s| NodeHandle {
            spec: s.node().clone(),
            remote: Arc::new(Target::Ssh(s.clone())),
        })
        .collect();
    if !crate::systems::zoo::MODES.contains(&args.zoo_mode.as_str()) {
        bail!(
            "unknown zoo mode {:?} (known: {})",
            args.zoo_mode,
            crate::systems::zoo::MODES.join(", ")
        );
    }
    let system = Zoo {
        mode: args.zoo_mode.clone(),
        // Never uploaded by fault commands: restart uses the binary already on the node.
        binary: PathBuf::new(),
        connect_timeout: Duration::from_secs(2),
        faketime: lab,
    };
    Ok(FaultCtx {
        nodes: handles,
        system,
        lab,
    })
}

fn fail_on(what: &str, errors: Vec<String>) -> anyhow::Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        bail!(
            "{what} failed on {} node(s): {}",
            errors.len(),
            errors.join("; ")
        )
    }
}

impl FaultCtx {
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.nodes.iter().map(|n| n.spec.clone()).collect()
    }

    /// The current masters as the system reports them.
    pub async fn primaries(&self) -> Vec<String> {
        current_masters(
            &self
                .system
                .roles(&self.specs(), Duration::from_secs(2))
                .await,
        )
    }

    async fn targets(&self, text: &str, rng: &mut ChaCha8Rng) -> anyhow::Result<Vec<String>> {
        let t = Targets::parse(text)?;
        let primaries = if t == Targets::Primaries {
            self.primaries().await
        } else {
            Vec::new()
        };
        Ok(t.resolve(&exec::names(&self.nodes), &primaries, rng)?)
    }

    /// Lab clock faults reach only processes started under libfaketime: refuse
    /// (naming the node) when the system's process on a target is not.
    async fn check_faketime(&self, targets: &[String]) -> anyhow::Result<()> {
        if !self.lab {
            return Ok(());
        }
        for n in exec::pick(&self.nodes, targets) {
            match self.system.process_state(&n).await? {
                nemesis::process::ProcessState::Alive { faketime_file: Some(_), .. } => {}
                nemesis::process::ProcessState::Alive { pid, .. } => bail!(
                    "{}: the system's process (pid {pid}) was not started under libfaketime, so a lab clock fault cannot reach it: start the test with a clock nemesis (--nemesis clock)",
                    n.spec.name
                ),
                other => bail!("{}: no system process to skew ({other})", n.spec.name),
            }
        }
        Ok(())
    }
}

async fn run_async(args: FaultArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| exec::now_epoch().to_bits());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Parse what needs no connection first, so bad input fails fast.
    let grudge_text = match &args.action {
        FaultAction::Partition {
            grudge: Some(p), ..
        } => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading grudge file {}", p.display()))?,
        ),
        _ => None,
    };
    let ctx = connect(&args).await?;
    let names = exec::names(&ctx.nodes);
    match args.action {
        FaultAction::Partition {
            topology,
            arg,
            grudge,
        } => {
            let topo = match (&grudge_text, &grudge) {
                (Some(text), Some(path)) => Topology::Custom {
                    grudge: Grudge::parse(text, &path.display().to_string(), &names)?,
                },
                _ => Topology::parse(topology.as_deref().unwrap_or(""), arg.as_deref())?,
            };
            let primaries = if topo == Topology::Primaries {
                ctx.primaries().await
            } else {
                Vec::new()
            };
            let plan = topo.plan(&names, &primaries, &mut rng)?;
            fail_on("partition", exec::partition(&ctx.nodes, &plan.grudge).await)?;
            println!("partitioned: {}", plan.description);
            println!("grudge: {}", serde_json::to_string(&plan.grudge)?);
        }
        FaultAction::Packet { targets, spec } => {
            let fault = PacketFault::parse(&spec).map_err(anyhow::Error::msg)?;
            let t = ctx.targets(&targets, &mut rng).await?;
            match exec::packet(&ctx.nodes, &t, &fault).await {
                Ok(methods) => {
                    for (n, m) in methods {
                        match m {
                            nemesis::netem::PacketMethod::Netem => {
                                println!("{n}: {fault} with tc netem")
                            }
                            nemesis::netem::PacketMethod::IptablesLoss { why } => {
                                println!("{n}: {fault} with iptables statistic (no netem: {why})")
                            }
                        }
                    }
                }
                Err(e) => fail_on("packet fault", e)?,
            }
        }
        FaultAction::Clock { action } => clock(&ctx, action, &mut rng).await?,
        FaultAction::Kill { targets } => process(&ctx, &targets, Proc::Kill, &mut rng).await?,
        FaultAction::Pause { targets } => process(&ctx, &targets, Proc::Pause, &mut rng).await?,
        FaultAction::Resume { targets } => process(&ctx, &targets, Proc::Resume, &mut rng).await?,
        FaultAction::Restart { targets } => {
            process(&ctx, &targets, Proc::Restart, &mut rng).await?
        }
        FaultAction::Heal => {
            let report = heal::heal(&ctx).await;
            fail_on("heal", report.errors)?;
            println!(
                "healed {} nodes: partition rules, packet faults, clocks, paused processes, killed processes marked",
                ctx.nodes.len()
            );
            for u in report.undone {
                println!("undone: {u}");
            }
        }
        FaultAction::Status { json } => {
            let rows = status::read(&ctx.system, &ctx.nodes, ctx.lab).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", status::render(&rows));
            }
        }
    }
    for n in &ctx.nodes {
        if let Target::Ssh(s) = n.remote.as_ref() {
            s.close().await;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Proc {
    Kill,
    Pause,
    Resume,
    Restart,
}

async fn process(
    ctx: &FaultCtx,
    targets: &str,
    what: Proc,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let t = ctx.targets(targets, rng).await?;
    // Kill and pause write each target's marker first, so `fault heal` from any
    // controller knows to undo them; resume and restart remove it once done.
    let errors = match what {
        Proc::Kill => process::apply(&ctx.system, &ctx.nodes, &t, ProcessFault::Kill).await,
        Proc::Pause => process::apply(&ctx.system, &ctx.nodes, &t, ProcessFault::Pause).await,
        Proc::Resume => process::undo(&ctx.system, &ctx.nodes, &t, ProcessUndo::Resume).await,
        Proc::Restart => process::undo(&ctx.system, &ctx.nodes, &t, ProcessUndo::Restart).await,
    };
    let verb = match what {
        Proc::Kill => "killed",
        Proc::Pause => "paused",
        Proc::Resume => "resumed",
        Proc::Restart => "restarted",
    };
    fail_on(verb, errors)?;
    println!("{verb}: {}", t.join(","));
    Ok(())
}

async fn clock(ctx: &FaultCtx, action: ClockAction, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
    match action {
        ClockAction::Bump { targets, offset } => {
            let off = Offset::parse(&offset).map_err(anyhow::Error::msg)?;
            let t = ctx.targets(&targets, rng).await?;
            ctx.check_faketime(&t).await?;
            fail_on(
                "clock bump",
                exec::clock_bump(&ctx.nodes, &t, off, ctx.lab).await,
            )?;
            println!("clock bumped by {off}: {}", t.join(","));
        }
        ClockAction::Strobe {
            targets,
            a,
            b,
            period,
            duration,
        } => {
            let a = Offset::parse(&a).map_err(anyhow::Error::msg)?;
            let b = Offset::parse(&b).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!period.is_zero(), "invalid --period: must be more than 0");
            let t = ctx.targets(&targets, rng).await?;
            ctx.check_faketime(&t).await?;
            fail_on(
                "clock strobe",
                exec::clock_strobe(&ctx.nodes, &t, (a, b), period, duration, ctx.lab).await,
            )?;
            println!(
                "clock strobing between {a} and {b} every {period:?} for {duration:?}: {}",
                t.join(",")
            );
        }
        ClockAction::Reset { targets } => {
            let t = ctx.targets(&targets, rng).await?;
            fail_on(
                "clock reset",
                exec::clock_reset(&ctx.nodes, &t, ctx.lab).await,
            )?;
            println!("clock reset: {}", t.join(","));
        }
    }
    Ok(())
}
