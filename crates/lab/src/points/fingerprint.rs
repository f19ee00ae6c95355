//! The fingerprint of a run split into points (`sweep --point`, `plan --point`): of what its
//! points depend on, and of the capture's bytes as read, so a result from another grid,
//! another scenario, another version or another capture can't be merged in by mistake. The
//! capture's fingerprint is its bytes, not its path: a point read from a file and one read from
//! standard input agree.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use plsim_pcap::Reader;
use xxhash_rust::xxh3::Xxh3;

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

    /// The fingerprint of `settings` (everything but the input, in words) and of the bytes
    /// read so far: 32 hex digits.
    pub fn with(&self, settings: &str) -> String {
        let mut h = Xxh3::new();
        h.update(settings.as_bytes());
        h.update(
            &self
                .0
                .lock()
                .expect("not poisoned")
                .digest128()
                .to_le_bytes(),
        );
        format!("{:032x}", h.digest128())
    }
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

/// The scenario a run reads, in words for a fingerprint: the file's text, or the built-in one.
pub fn scenario_text(file: Option<&Path>) -> Result<String> {
    match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| crate::Error::io(f, &e)),
        None => Ok("the built-in scenario".to_owned()),
    }
}
