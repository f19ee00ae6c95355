//! How `plsim bench` runs.

use plsim_engine::{DEFAULT_BATCH, Engine};

/// How `plsim bench` runs. (With the `cli` feature, clap parses the flags straight into it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BenchOptions {
    /// Live flows to build before timing (at least 1).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))
    )]
    pub flows: u32,
    /// 64-byte frames to push through the path (at least 1).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 20_000_000, value_parser = clap::value_parser!(u64).range(1..))
    )]
    pub packets: u64,
    /// Packets per batch.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = DEFAULT_BATCH, value_parser = plsim_engine::parse_batch)
    )]
    pub batch: usize,
    /// threaded, or sequential (one thread, for comparison).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ENGINE", default_value_t = Engine::Threaded)
    )]
    pub engine: Engine,
    /// Split the timed frames into N rounds, each through the path and then through the
    /// reference loop, so that a shared machine's slow spells hit both alike (1 to 100).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", default_value_t = 5,
            value_parser = clap::value_parser!(u32).range(1..=100))
    )]
    pub rounds: u32,
    /// Leave out the reference loop: its table would count in the peak memory
    /// (`scripts/memory.sh` measures the path alone).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_reference: bool,
    /// The service sends PROXY protocol v2 headers (one per flow as it opens; every timed
    /// frame then has its sequence number shifted): what the option costs.
    #[cfg_attr(feature = "cli", arg(long))]
    pub proxy_protocol: bool,
}

impl Default for BenchOptions {
    /// The command's defaults: 1M flows, 20M frames, five rounds, the threaded engine.
    fn default() -> Self {
        BenchOptions {
            flows: 1_000_000,
            packets: 20_000_000,
            batch: DEFAULT_BATCH,
            engine: Engine::Threaded,
            rounds: 5,
            no_reference: false,
            proxy_protocol: false,
        }
    }
}
