//! What the lb and snat benchmarks share.

/// How a batch is prefetched before (or while) it is processed.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// No prefetch.
    None,
    /// The index buckets of the whole batch first.
    Buckets,
    /// The bucket of packet `i + k` while processing packet `i`.
    Window(usize),
}

impl Mode {
    /// The benchmark id part.
    pub fn name(self) -> String {
        match self {
            Mode::None => "none".into(),
            Mode::Buckets => "buckets".into(),
            Mode::Window(k) => format!("window/{k}"),
        }
    }
}
