//! The library the `plsim` binary calls: everything it runs, with no flag parsing and no
//! printing. It sits on top of the path (`docs/architecture.md`, section 3): it builds the stages of a scenario
//! ([`path`]) as [`plsim_engine`] stages ([`stages`]), feeds them a capture or a workload
//! ([`replay`], [`workload`]), runs them ([`run`]), and writes what was found: the summary
//! ([`summary`]), the time series ([`series`]), the output captures ([`replay::PcapTaps`]),
//! plots ([`plot`]). On top of single runs: the fewest NAT IPs a capture needs ([`plan`]),
//! grids of runs ([`sweep`]), both split into points for a cluster ([`points`]), a capture's
//! traffic mix ([`inspect`]), the throughput benchmark
//! ([`bench`](mod@bench)), and real TCP stacks through the path ([`tcp`]). [`report`] words it
//! all for people; [`memory`] says what this machine has for a run.
//!
//! Every fallible call returns [`Error`], whose variant decides the exit status.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod core;
mod error;
pub mod files;
pub mod html;
pub mod inspect;
pub mod memory;
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
pub mod theory;
pub mod workload;

pub use error::{Error, Result};
pub use plsim_control::Effect;
pub use plsim_engine::{Batch, Dir, Engine, Meta, Options, RunStats};
pub use plsim_snat::ReuseTracking;

/// A change applied to every stage at one simulated instant, after everything before it has
/// left the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A change of the control plane, as it made it (a connection approved, pending, closed or
    /// deleted; a backend down or up; a NAT IP added).
    Control(Effect),
    /// The load balancer removed these flows at once (their backend went down under
    /// `on_backend_down = reset`): the SNAT stage frees their ports. The load balancer makes
    /// this event itself, for the stages after it.
    FlowsReset(Vec<plsim_lb::ClosedFlow>),
}

impl From<Effect> for Event {
    fn from(effect: Effect) -> Event {
        Event::Control(effect)
    }
}

/// The core of a path built from a scenario as the stages run on their own tables: the load
/// balancer, then the SNAT engines (the sequential engine's, the definition of a run).
pub type Core = (stages::LbStage, stages::SnatStage);

/// The core as one stage whose connections are one record each (the threaded engine's; see
/// [`core`]).
pub type SharedCore = (core::CoreStage,);

/// A finished run of a path built from a scenario, with either core.
pub type Finished<C, B, T> = plsim_engine::Finished<stages::EndpointStage, C, B, T>;

/// What a run's results read of the core, whichever way it is composed.
pub trait CoreView {
    /// The load balancer.
    fn lb(&self) -> &stages::LbStage;
    /// The SNAT engines.
    fn snat(&self) -> &stages::SnatStage;
    /// The SNAT engines, to set up sampling and take the samples.
    fn snat_mut(&mut self) -> &mut stages::SnatStage;
}

impl CoreView for Core {
    fn lb(&self) -> &stages::LbStage {
        &self.0
    }
    fn snat(&self) -> &stages::SnatStage {
        &self.1
    }
    fn snat_mut(&mut self) -> &mut stages::SnatStage {
        &mut self.1
    }
}

impl CoreView for SharedCore {
    fn lb(&self) -> &stages::LbStage {
        self.0.lb()
    }
    fn snat(&self) -> &stages::SnatStage {
        self.0.snat()
    }
    fn snat_mut(&mut self) -> &mut stages::SnatStage {
        self.0.snat_mut()
    }
}
