//! Fuzz target: the history reader (`history.jsonl`, one JSON op a line).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = checkers::history::read_jsonl(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = checkers::formats::parse(checkers::formats::Format::Jsonl, text);
    }
});
