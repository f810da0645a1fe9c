//! The `zoo` binary: parses flags, detaches with `--daemon`, else runs one node;
//! `zoo router ...` runs the routing process instead.
//! Exit status: 0 clean stop (or daemon started), 1 runtime failure, 2 bad flags.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zoo::config::{Args, Config};
use zoo::daemon::{spawn_daemon, ReadySignal};
use zoo::router::RouterArgs;

fn main() -> ExitCode {
    // Taken before any thread exists: it edits the environment.
    let ready = ReadySignal::from_env();
    if std::env::args_os().nth(1).is_some_and(|a| a == "router") {
        return router_main(ready);
    }
    // `--config FILE.toml` becomes the file's flags, before the command line's.
    let argv = match zoo::config_file::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zoo: {e}");
            if let Ok(Some(r)) = ready {
                r.failed(&e);
            }
            return ExitCode::from(2);
        }
    };
    let args = Args::parse_from(argv.clone());
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
        return match spawn_daemon(argv.into_iter(), cfg.log.as_deref(), ready_timeout) {
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
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
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

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("zoo: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `zoo router --peers ... --listen ...`.
fn router_main(ready: Result<Option<ReadySignal>, String>) -> ExitCode {
    let argv = std::env::args_os()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a);
    let args = match RouterArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if args.daemon {
        let timeout = Duration::from_millis(args.daemon_ready_timeout_ms);
        return match spawn_daemon(std::env::args_os(), args.log.as_deref(), timeout) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zoo router: {e}");
                ExitCode::from(1)
            }
        };
    }
    let mut ready = match ready {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zoo router: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    match runtime.block_on(zoo::router::run(args, &mut ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}");
            eprintln!("zoo router: {line}");
            if let Some(r) = ready.take() {
                r.failed(&line);
            }
            ExitCode::from(1)
        }
    }
}
