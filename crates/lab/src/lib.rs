//! The library the `plsim` binary calls: everything it runs, with no flag parsing and no
//! printing. It sits on top of the path (DESIGN section 3): it builds the stages of a scenario
//! ([`path`]) as [`plsim_engine`] stages ([`stages`]), feeds them a capture or a workload
//! ([`replay`], [`workload`]), runs them ([`run`]), and writes what was found: the summary
//! ([`summary`]), the time series ([`series`]), the output captures ([`replay::PcapTaps`]),
//! plots ([`plot`]). On top of single runs: the fewest NAT IPs a capture needs ([`plan`]),
//! grids of runs ([`sweep`]), both split into points for a cluster ([`points`]), a capture's
//! traffic mix ([`inspect`]), the throughput benchmark
//! ([`bench`](mod@bench)), and real TCP stacks through the path ([`tcp`]). [`report`] words it
//! all for people.
//!
//! Every fallible call returns [`Error`], whose variant decides the exit status.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
mod error;
pub mod files;
pub mod inspect;
pub mod path;
pub mod plan;
pub mod plot;
pub mod points;
pub mod replay;
pub mod report;
pub mod run;
pub mod series;
pub mod show;
pub mod stages;
pub mod stop;
pub mod summary;
pub mod sweep;
pub mod tcp;
pub mod workload;

use std::net::Ipv4Addr;

pub use error::{Error, Result};
pub use plsim_engine::{Batch, Dir, Engine, Meta, Options, RunStats};
use plsim_wire::LinkId;

/// A control-plane change, applied to every stage at one simulated instant, after everything
/// before it has left the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection became Approved: its endpoint passes packets from now on.
    LinkApproved {
        /// The connection.
        link: LinkId,
        /// The consumer VNet of its private endpoint.
        vnet: u32,
        /// The private endpoint's address.
        endpoint: Ipv4Addr,
        /// The service's load balancer frontend.
        frontend: Ipv4Addr,
        /// The service's index.
        service: usize,
    },
    /// A connection was requested and waits for approval: its endpoint exists, passes nothing.
    LinkPending {
        /// The connection.
        link: LinkId,
        /// The consumer VNet of its private endpoint.
        vnet: u32,
        /// The private endpoint's address.
        endpoint: Ipv4Addr,
        /// The service's load balancer frontend.
        frontend: Ipv4Addr,
    },
    /// A connection left Approved (rejected, removed): its packets stop and its flows go.
    LinkClosed {
        /// The connection.
        link: LinkId,
        /// The service's index.
        service: usize,
    },
    /// The endpoint of a connection was deleted: its address is free again.
    LinkDeleted(LinkId),
    /// A backend stopped answering its health probe.
    BackendDown(Ipv4Addr),
    /// A backend answers its health probe again.
    BackendUp(Ipv4Addr),
    /// The load balancer removed these flows at once (their backend went down under
    /// `on_backend_down = reset`): the SNAT stage frees their ports. The load balancer makes
    /// this event itself, for the stages after it.
    FlowsReset(Vec<plsim_lb::ClosedFlow>),
    /// A NAT IP configuration was added to a service.
    NatIpAdded {
        /// The service's index.
        service: usize,
        /// The new NAT IP.
        ip: Ipv4Addr,
    },
}

/// The core of a path built from a scenario: the load balancer, then the SNAT engines.
pub type Core = (stages::LbStage, stages::SnatStage);

/// The edge, the core and the backend end of a path built from a scenario.
pub type PathParts<B> = plsim_engine::Parts<stages::EndpointStage, Core, B>;

/// A finished run of such a path.
pub type Finished<B, T> = plsim_engine::Finished<stages::EndpointStage, Core, B, T>;
