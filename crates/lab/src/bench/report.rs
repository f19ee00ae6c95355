//! What `plsim bench` reports.

use serde::Serialize;

use crate::summary::Latency;

/// What `plsim bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Million packets per second through the engine (wall clock); a throughput figure only
    /// when `complete`.
    pub mpps: f64,
    /// The single-core reference NAT loop over the same frames, in the same run (`None` with
    /// `--no-reference`).
    pub reference_mpps: Option<f64>,
    /// `mpps / reference_mpps`: the path's time against the loop's over all rounds.
    pub ratio: Option<f64>,
    /// Each round's figures, in order.
    pub rounds: Vec<Round>,
    /// Live flows built before timing.
    pub flows: u32,
    /// Frames pushed.
    pub packets: u64,
    /// Backends of the bench's scenario (enough for every flow to get a NAT port).
    pub backends: usize,
    /// Every packet of the setup and of the timed phase was delivered: the figures are
    /// throughput. False: something was dropped, and the run says so.
    pub complete: bool,
    /// Frames of the timed phase delivered to the backends.
    pub delivered: u64,
    /// Packets dropped in the timed phase.
    pub dropped: u64,
    /// Packets dropped while the flows were opened (SYNs without a port, say).
    pub setup_dropped: u64,
    /// Flows opened per second in the setup (SYN, SYN-ACK, ACK through the whole path).
    pub setup_per_sec: f64,
    /// Flow state per live flow, by stage.
    pub bytes_per_flow: StateBytes,
    /// The process's peak resident memory, in bytes (Linux; 0 where unknown).
    pub peak_rss_bytes: u64,
    /// Wall time of the timed phase.
    pub wall_s: f64,
    /// In-engine latency of the timed phase.
    pub latency_ns: Latency,
    /// Time each stage spent per packet processing (not waiting), in the timed phase.
    pub stage_ns_per_packet: StageNs,
    /// Packets per batch.
    pub batch: usize,
    /// The service sent PROXY protocol v2 headers (`--proxy-protocol`): the timed frames were
    /// shifted past them.
    pub proxy_protocol: bool,
    /// PROXY protocol headers sent while the flows were opened (one per flow when on).
    pub proxy_headers: u64,
}

/// One round of the timed phase: its share of the frames through the path, then through the
/// reference loop.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Round {
    /// Frames in the round.
    pub packets: u64,
    /// Million packets per second through the path.
    pub mpps: f64,
    /// Million packets per second through the reference loop (`None` without it).
    pub reference_mpps: Option<f64>,
    /// `mpps / reference_mpps`.
    pub ratio: Option<f64>,
}

/// Heap bytes of flow state per live flow (capacities: what the allocator handed out).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StateBytes {
    /// The load balancer: its part of each connection record (threaded engine), or its own
    /// flow table (sequential engine), and its other state.
    pub lb: f64,
    /// The SNAT engines: their parts of the records (or their own flow tables) and the port
    /// allocators.
    pub snat: f64,
    /// The shared connection table but the stages' parts: the records' keys and bookkeeping,
    /// the one index, the timers (threaded engine; 0 for the sequential one).
    pub table: f64,
}

/// Nanoseconds per packet each stage spent processing.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StageNs {
    /// The private endpoint (on the driver thread).
    pub endpoint: f64,
    /// The core: the load balancer and the SNAT stage (one stage on the threaded engine, two
    /// in a row on the sequential one), on the core thread.
    pub core: f64,
}

impl BenchReport {
    /// Ok when every packet was delivered; otherwise the error that says its figures are not
    /// throughput (drops are results elsewhere; here they make the figures meaningless).
    pub fn check(&self) -> crate::Result<()> {
        if self.complete {
            return Ok(());
        }
        Err(crate::Error::Input(format!(
            "the bench dropped {} packets ({} while opening the flows): its figures are not throughput",
            self.dropped + self.setup_dropped,
            self.setup_dropped
        )))
    }
}
