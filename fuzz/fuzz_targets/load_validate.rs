//! Fuzzes loading + validation + planning: any bytes must give Ok or a
//! located error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runbook::check_text(std::path::Path::new("/nonexistent/fuzz.yaml"), text);
    }
});
