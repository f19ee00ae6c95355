//! Any bytes as a scenario file: never a panic; every problem names its line (UTF-8 or not,
//! nested however deep: inputs here are far below the size past which a file is refused
//! unread); a scenario that passes writes back (`to_toml`) to a file that parses to the very
//! same scenario.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plsim_control::Scenario;

fuzz_target!(|data: &[u8]| {
    match Scenario::from_toml_bytes(data) {
        Ok(s) => {
            let again = Scenario::from_toml_str(&s.to_toml())
                .unwrap_or_else(|p| panic!("its own TOML is refused: {p}"));
            assert_eq!(again, s, "to_toml and back changed it");
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "an error without a problem");
            for p in &problems.0 {
                assert!(p.line.is_some(), "a problem without its line: {p}");
                assert!(!p.message.is_empty(), "a problem without words");
            }
        }
    }
});
