//! Fuzz target: Porcupine's log formats (etcd Jepsen logs, kv logs) and format detection.
#![no_main]
use checkers::formats::{parse, Format};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(Format::PorcupineEtcd, text);
        let _ = parse(Format::PorcupineKv, text);
        let _ = Format::detect("fuzz.log", text);
    }
});
