//! `splitbrain known-answer`: the flags of the matrix run, the table on stdout, every
//! deviation on stderr, and the exit code (0 every cell passed, 1 some cell failed,
//! 3 the harness could not run it).

use super::Options;
use crate::cli::EXIT_HARNESS;
use crate::config::{self, TargetedFault};
use crate::runner::stop::Stop;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct KnownAnswerArgs {
    /// Zoo modes, comma-separated (default: every mode the harness deploys).
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<String>,
    /// Faults, comma-separated: isolate-master, majorities-ring, clock-skew-master,
    /// kill-master, pause-master (default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    pub faults: Vec<TargetedFault>,
    /// Seeds of the cells that expect an anomaly: `1..5` or `1,3,7`.
    #[arg(long, default_value = "1..5", value_parser = parse_seeds)]
    pub seeds: Seeds,
    /// Seeds of the cells that expect none (default: as --seeds).
    #[arg(long, value_parser = parse_seeds)]
    pub sound_seeds: Option<Seeds>,
    /// Seeds on which a flawed cell must be caught.
    #[arg(long, default_value_t = 4)]
    pub min_caught: usize,
    /// How long clients run in each run.
    #[arg(long, default_value = "7s", value_parser = config::parse_duration)]
    pub time_limit: Duration,
    /// How long the fault lasts (it starts after half of this).
    #[arg(long, default_value = "4s", value_parser = config::parse_duration)]
    pub nemesis_interval: Duration,
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// The zoo binary to upload; default: `zoo` beside this executable.
    #[arg(long)]
    pub zoo_binary: Option<PathBuf>,
}

fn parse_fault(s: &str) -> Result<TargetedFault, String> {
    TargetedFault::ALL
        .iter()
        .copied()
        .find(|t| t.name() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = TargetedFault::ALL.iter().map(|t| t.name()).collect();
            format!("unknown fault {s:?} (known: {})", names.join(", "))
        })
}

/// A list of seeds as one flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// `1..5` (inclusive) or a comma-separated list; at most 100 seeds.
fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let bad = || format!("invalid seeds {s:?}: expected e.g. 1..5 or 1,3,7");
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b - a >= 100 {
            return Err(bad());
        }
        (a..=b).collect()
    } else {
        s.split(',')
            .map(|x| x.trim().parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?
    };
    if seeds.is_empty() || seeds.len() > 100 {
        return Err(bad());
    }
    Ok(Seeds(seeds))
}

/// Runs the matrix as the flags say.
pub fn run(args: KnownAnswerArgs) -> anyhow::Result<u8> {
    let zoo_binary = args.zoo_binary.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("zoo")))
            .unwrap_or_else(|| PathBuf::from("zoo"))
    });
    anyhow::ensure!(
        zoo_binary.is_file(),
        "zoo binary not found at {}: build it with `cargo build -p zoo` or pass --zoo-binary",
        zoo_binary.display()
    );
    let mut o = Options::full(zoo_binary, args.results_dir.clone());
    for m in &args.modes {
        anyhow::ensure!(
            crate::systems::zoo::MODES.contains(&m.as_str()),
            "unknown zoo mode {m:?} (known: {})",
            crate::systems::zoo::MODES.join(", ")
        );
    }
    if !args.modes.is_empty() {
        o.modes = args.modes.clone();
    }
    if !args.faults.is_empty() {
        o.faults = args.faults.clone();
    }
    anyhow::ensure!(
        !args.time_limit.is_zero() && !args.nemesis_interval.is_zero(),
        "--time-limit and --nemesis-interval must be more than 0"
    );
    o.sound_seeds = args
        .sound_seeds
        .clone()
        .unwrap_or_else(|| args.seeds.clone())
        .0;
    o.seeds = args.seeds.0;
    o.min_caught = args.min_caught;
    // A wrapper that holds the lab (`flock` on its lock, as `splitbrain test` allows)
    // runs the matrix without the per-seed lock.
    o.take_lab_lock = !std::env::var(crate::lab::LOCK_HELD_ENV).is_ok_and(|v| v == "1");
    o.time_limit = args.time_limit;
    o.nemesis_interval = args.nemesis_interval;
    let rt = crate::cli::runtime()?;
    let stop = Stop::default();
    {
        let _guard = rt.enter();
        crate::runner::install_signal_stop(stop.clone());
    }
    let started = std::time::Instant::now();
    let cells = rt.block_on(super::run(&o, &stop, &|line: &str| {
        eprintln!("splitbrain: {line}")
    }))?;
    println!("{}", super::render(&cells));
    let json = o.results_dir.join(format!(
        "known-answer-{}.json",
        crate::store::timestamp(std::time::SystemTime::now())
    ));
    match serde_json::to_string_pretty(&super::to_json(&cells)) {
        Ok(text) => match std::fs::write(&json, text) {
            Ok(()) => println!("cells and seeds: {}", json.display()),
            Err(e) => eprintln!("splitbrain: warning: writing {}: {e}", json.display()),
        },
        Err(e) => eprintln!("splitbrain: warning: {e}"),
    }
    let failed = cells.iter().filter(|c| !c.pass).count();
    println!(
        "{} cells, {} passed, {} failed, in {:.0}s (seeds {:?}, sound seeds {:?}, {} nodes, {:?} runs with a {:?} fault; pause-master: {:?} runs with a {:?} pause)",
        cells.len(),
        cells.len() - failed,
        failed,
        started.elapsed().as_secs_f64(),
        o.seeds,
        o.sound_seeds,
        o.nodes,
        o.time_limit,
        o.nemesis_interval,
        super::timing(&o, TargetedFault::PauseMaster).0,
        super::timing(&o, TargetedFault::PauseMaster).1
    );
    for d in super::deviations(&cells) {
        eprintln!("splitbrain: deviation: {d}");
    }
    if stop.is_stopped() {
        eprintln!("splitbrain: interrupted: the table holds the cells finished so far");
        return Ok(EXIT_HARNESS);
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_faults_parse_with_one_error_line() {
        assert_eq!(parse_seeds("1..5").unwrap().0, vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_seeds("3,9").unwrap().0, vec![3, 9]);
        for bad in ["", "5..1", "a..b", "1..1000", "1,,2", "x"] {
            assert!(
                parse_seeds(bad).unwrap_err().starts_with("invalid seeds"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_fault("kill-master").unwrap(),
            TargetedFault::KillMaster
        );
        assert!(parse_fault("kill")
            .unwrap_err()
            .contains("known: isolate-master"));
    }
}
