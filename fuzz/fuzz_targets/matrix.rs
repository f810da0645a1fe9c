//! Fuzz target: a `test-all --matrix` TOML file, read and expanded into cells
//! (systems, workloads and nemeses parsed) exactly as the CLI does.
#![no_main]
use clap::Parser;

#[derive(Parser)]
struct P {
    #[command(flatten)]
    a: harness::test_all::TestAllArgs,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!(
        "splitbrain-fuzz-matrix-{}.toml",
        std::process::id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(p) = P::try_parse_from(["fuzz", "--matrix", path.to_str().unwrap_or("")]) {
        let _ = harness::test_all::cells(&p.a);
    }
});
