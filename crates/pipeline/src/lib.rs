//! The path of plsim built from a scenario, and what runs it: the stages as
//! [`plsim_engine`] stages, replay input and output, the summary, the benchmark, real TCP.

pub mod bench;
pub mod path;
pub mod replay;
pub mod sim;
pub mod stages;
pub mod summary;
pub mod tcp;

use std::net::Ipv4Addr;

pub use plsim_engine::{Batch, Dir, Engine, Meta, Options, RunStats};
use plsim_wire::LinkId;

/// A control-plane change, applied to every stage at one simulated instant, after everything
/// before it has left the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection became Approved: its endpoint passes packets from now on.
    LinkApproved {
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
    /// A connection left Approved (rejected, removed): its packets stop and its flows go.
    LinkClosed { link: LinkId, service: usize },
    /// A backend stopped answering its health probe.
    BackendDown(Ipv4Addr),
    /// A backend answers its health probe again.
    BackendUp(Ipv4Addr),
    /// A NAT IP configuration was added to a service.
    NatIpAdded { service: usize, ip: Ipv4Addr },
}

/// The edge, the core and the backend end of a path built from a scenario.
pub type PathParts<B> =
    plsim_engine::Parts<stages::EndpointStage, (stages::LbStage, stages::SnatStage), B>;

/// A finished run of such a path.
pub type Finished<B, T> =
    plsim_engine::Finished<stages::EndpointStage, (stages::LbStage, stages::SnatStage), B, T>;
