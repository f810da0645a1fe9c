//! `splitbrain`: see `harness::cli`.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(harness::cli::main())
}
