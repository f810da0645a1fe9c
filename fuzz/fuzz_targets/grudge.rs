//! Fuzz target: custom grudges (JSON or TOML) against a five-node cluster.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let _ = nemesis::Grudge::parse(text, "fuzz", &nodes);
    }
});
