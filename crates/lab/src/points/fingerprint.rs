//! The fingerprint of a run split into points (`sweep --point`, `plan --point`): of what its
//! points depend on, and of the capture's bytes as read, so a result from another grid,
//! another scenario, another version or another capture can't be merged in by mistake. The
//! capture's fingerprint is its bytes, not its path: a point read from a file and one read from
//! standard input agree.
//!
//! What goes in is one JSON document, written by `serde_json` with no whitespace and the
//! fields in this order:
//!
//! - `plsim`: plsim's version (another version may run a point differently);
//! - `command`: `"sweep"` or `"plan"`;
//! - `settings`: everything else the command's points depend on, in the command's own struct
//!   (its fields in their order; see `sweep`'s and `plan`'s `Settings`);
//! - `capture`: the XXH3-128 of the capture's bytes as read, 32 hex digits, or `null` for a
//!   synthetic workload.
//!
//! The fingerprint is the XXH3-128 of that document's bytes, 32 hex digits. Nothing in it is
//! a Rust `Debug` text: structs serialize their fields in declaration order, numbers in
//! `serde_json`'s shortest round-trip form, settings in the syntax of their flags; no map
//! whose order could vary is in it. A test pins the fingerprint of a fixed document, so a
//! change to how it is written can't pass unnoticed.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use plsim_pcap::Reader;
use serde::Serialize;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use super::Command;
use crate::Result;

/// The hash of a capture's bytes, taken as the capture is read.
#[derive(Clone, Default)]
pub struct InputHash(Arc<Mutex<Xxh3>>);

impl InputHash {
    /// Opens a capture (a file, or `-` for standard input) whose bytes go through this hash.
    pub fn open(&self, pcap: &Path) -> Result<Reader> {
        let hash = Arc::clone(&self.0);
        Ok(Reader::open_through(pcap, |input| Hashing { input, hash })?)
    }

    /// The hash of the bytes read so far: 32 hex digits.
    pub fn digest(&self) -> String {
        hex(self.0.lock().expect("not poisoned").digest128())
    }
}

/// 128 bits as 32 hex digits.
fn hex(h: u128) -> String {
    format!("{h:032x}")
}

/// What a fingerprint is the hash of (see the [module](self) docs).
#[derive(Serialize)]
struct Document<'a, S> {
    plsim: &'a str,
    command: Command,
    settings: &'a S,
    capture: Option<String>,
}

/// The fingerprint of a run of `command` with `settings`, on the capture read through
/// `capture` (none: a synthetic workload): 32 hex digits.
pub fn fingerprint<S: Serialize>(
    command: Command,
    settings: &S,
    capture: Option<&InputHash>,
) -> String {
    of(
        env!("CARGO_PKG_VERSION"),
        command,
        settings,
        capture.map(InputHash::digest),
    )
}

/// The fingerprint of the document of these fields.
pub(crate) fn of<S: Serialize>(
    plsim: &str,
    command: Command,
    settings: &S,
    capture: Option<String>,
) -> String {
    hex(xxh3_128(&document(plsim, command, settings, capture)))
}

/// The document of these fields, as hashed.
fn document<S: Serialize>(
    plsim: &str,
    command: Command,
    settings: &S,
    capture: Option<String>,
) -> Vec<u8> {
    let doc = Document {
        plsim,
        command,
        settings,
        capture,
    };
    serde_json::to_vec(&doc).expect("a fingerprint's settings serialize")
}

/// A byte stream read through a hash.
struct Hashing {
    input: Box<dyn Read + Send>,
    hash: Arc<Mutex<Xxh3>>,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hash.lock().expect("not poisoned").update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Settings {
        scenario: Option<&'static str>,
        load: Vec<f64>,
        pickup: bool,
    }

    /// The fingerprint of a fixed document, pinned: a change to how it is serialized or hashed
    /// changes every fingerprint, and must be made on purpose (here).
    #[test]
    fn the_fingerprint_of_a_fixed_document_is_pinned() {
        let settings = Settings {
            scenario: None,
            load: vec![0.5, 2.0],
            pickup: true,
        };
        let capture = Some(hex(xxh3_128(b"a capture's bytes")));
        assert_eq!(
            String::from_utf8(document(
                "1.2.3",
                Command::Sweep,
                &settings,
                capture.clone()
            ))
            .unwrap(),
            "{\"plsim\":\"1.2.3\",\"command\":\"sweep\",\"settings\":{\"scenario\":null,\
             \"load\":[0.5,2.0],\"pickup\":true},\"capture\":\"fc575b8239a300655d072a2c8d1f60f5\"}"
        );
        assert_eq!(
            of("1.2.3", Command::Sweep, &settings, capture),
            "22bdd44ebb9eb6922ddf575e05765e55"
        );
        // Each field counts.
        let base = of("1.2.3", Command::Plan, &settings, None);
        assert_ne!(base, of("1.2.4", Command::Plan, &settings, None));
        assert_ne!(base, of("1.2.3", Command::Sweep, &settings, None));
        assert_ne!(base, of("1.2.3", Command::Plan, &settings, Some(hex(0))));
    }
}
