//! Fuzz target: the nodes file and the `--nodes` flag.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = harness::nodes::parse_nodes(text, "fuzz");
        let _ = harness::nodes::parse_nodes_flag(text);
    }
});
