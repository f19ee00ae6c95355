//! The packet layer of plsim.
//!
//! Every stage of the simulated Private Link path stands on this crate:
//!
//! * [`classify`] looks at one captured frame of a given [`LinkType`] and returns either an
//!   [`Ipv4Tcp`] view (offsets and the parsed 4-tuple, flags) or exactly one [`DropReason`].
//! * [`Ipv4Tcp::set_source`] and [`Ipv4Tcp::set_destination`] rewrite the IPv4 address and TCP
//!   port in place and update the IPv4 header checksum and the TCP checksum incrementally
//!   (RFC 1624, eqn. 3), so the stored checksums always equal a full recompute.
//! * [`checksum`] has the full recomputes, used to verify.
//! * [`build`] writes well-formed Ethernet/IPv4/TCP frames (generators, tests, benchmarks).
//! * [`hash`] has the deterministic 64-bit mixers every crate hashes with.
//! * The shared vocabulary of the packet path: [`DropReason`], [`DropCounts`], [`LinkId`],
//!   [`SimTime`], [`FlowTuple`].
//!
//! Parsing is hand-written over the bytes (offsets checked once by [`classify`], then read
//! directly); `pnet_packet`'s full checksum recomputes are kept as the test oracle of the
//! incremental updates. Nothing here allocates on the packet path.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod build;
pub mod checksum;
mod classify;
pub mod hash;
mod link;
mod reason;
mod types;

pub use classify::{Ipv4Tcp, classify, classify_l3};
pub use link::{LinkType, vlan};
pub use pnet_packet::tcp::TcpFlags;
pub use reason::{DropCounts, DropReason};
pub use types::{Dir, FlowKey, FlowTuple, LinkId, Place, SimTime, VnetId};
