//! What a bench of so many flows needs in memory, checked against what the machine has before
//! anything is built (the flow tables are sized for every flow up front).

use std::net::Ipv4Addr;

use plsim_wire::FlowTuple;

use super::BenchOptions;

/// The path's bytes a live flow, whole process: the load balancer's flow table and the SNAT's
/// (the report's `bytes_per_flow`: 76.0 and 68.4) and nothing else, 144.1 measured at 10M flows
/// by `scripts/memory.sh`; counted as its budget, 160, to be safe.
const PATH_BYTES_PER_FLOW: u64 = 160;

/// What the process holds whatever the flows: the scenario, the threads and their batches, the
/// frames of a round (about 10 MiB measured; twice that and more, to be safe).
const BASE_BYTES: u64 = 64 << 20;

/// The reference loop's table of `flows` flows: a `hashbrown` map sized for them, its buckets
/// the next power of two above 8/7 of them, each an entry and a control byte.
fn reference_bytes(flows: u64) -> u64 {
    let entry = std::mem::size_of::<(FlowTuple, (Ipv4Addr, u16))>() as u64 + 1;
    let buckets = (flows.saturating_mul(8) / 7).max(8).next_power_of_two();
    buckets.saturating_mul(entry)
}

/// Refuses (exit 2) a bench whose flows need more memory than the machine has.
pub(super) fn check(o: &BenchOptions) -> crate::Result<()> {
    let flows = u64::from(o.flows);
    let reference = if o.no_reference {
        0
    } else {
        reference_bytes(flows).div_ceil(flows.max(1))
    };
    crate::memory::check(
        "--flows",
        flows,
        PATH_BYTES_PER_FLOW + reference,
        "a flow",
        BASE_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_table_takes_its_buckets_whole() {
        let entry = std::mem::size_of::<(FlowTuple, (Ipv4Addr, u16))>() as u64 + 1;
        // 1M flows: 1,142,857 buckets wanted, 2^21 made.
        assert_eq!(reference_bytes(1_000_000), (1 << 21) * entry);
        assert_eq!(reference_bytes(0), 8 * entry);
    }
}
