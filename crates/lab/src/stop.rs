//! Stopping early on request: a run asked to stop (Ctrl-C, say) reads no more input, lets what
//! is in flight through the path, and reports what it processed, marked `interrupted`; a
//! sweep or a plan runs no further point or replay.
//!
//! ```
//! use plsim_lab::stop::Stop;
//!
//! let stop = Stop::new();
//! let seen_by_a_run = stop.clone();
//! assert!(!seen_by_a_run.requested());
//! stop.request();
//! assert!(seen_by_a_run.requested());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request to stop, shared by whoever asks (a signal handler) and whoever obeys (runs).
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// No stop requested yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every run that holds this to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for a signal handler to set (it may do nothing else).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Stop {
    /// A stop that Ctrl-C (SIGINT) and SIGTERM request: the first signal asks the runs
    /// holding it to stop and report what they processed; a second one ends the process at
    /// once (status 130). With the reason, when the handlers can't be installed (the signals
    /// then end the process as they would anyway).
    pub fn on_signals() -> (Stop, Option<String>) {
        let stop = Stop::new();
        let mut failed = None;
        #[cfg(unix)]
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // The first registration exits only when the flag is already set, which the
            // second does: the order makes the first signal a request and the second the end.
            let registered =
                signal_hook::flag::register_conditional_shutdown(signal, 130, stop.flag())
                    .and_then(|_| signal_hook::flag::register(signal, stop.flag()));
            if let Err(e) = registered {
                failed = Some(format!("Ctrl-C will end the run without its results: {e}"));
            }
        }
        (stop, failed)
    }
}
