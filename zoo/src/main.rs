//! The `zoo` binary: parses flags, detaches with `--daemon`, else runs one node.
//! Exit status: 0 clean stop (or daemon started), 1 runtime failure, 2 bad flags.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zoo::config::{Args, Config};
use zoo::daemon::{spawn_daemon, ReadySignal};

fn main() -> ExitCode {
    // Taken before any thread exists: it edits the environment.
    let ready = ReadySignal::from_env();
    let args = Args::parse();
    let daemon = args.daemon;
    let ready_timeout = Duration::from_millis(args.daemon_ready_timeout_ms);
    let cfg = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zoo: {e}");
            if let Ok(Some(r)) = ready {
                r.failed(&e);
            }
            return ExitCode::from(2);
        }
    };
    if daemon {
        return match spawn_daemon(std::env::args_os(), cfg.log.as_deref(), ready_timeout) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zoo: {e}");
                ExitCode::from(1)
            }
        };
    }
    let mut ready = match ready {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zoo: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zoo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(zoo::run::run(cfg, &mut ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}");
            eprintln!("zoo: {line}");
            if let Some(r) = ready.take() {
                r.failed(&line);
            }
            ExitCode::from(1)
        }
    }
}
