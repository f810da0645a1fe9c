//! Fuzz target: the EDN reader and Jepsen EDN histories.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = checkers::formats::edn::read_elements(text);
        let _ = checkers::formats::parse(checkers::formats::Format::Edn, text);
    }
});
