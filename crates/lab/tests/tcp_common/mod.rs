//! The path of a scenario as a `plsim_traffic::tcp::Path` (`plsim_lab::tcp::TcpStages`), for
//! the tests of the echo workload through the whole path.

#![allow(dead_code)]

use plsim_control::Scenario;
use plsim_traffic::tcp::EchoSpec;

/// The path of a scenario, one packet at a time.
pub type Stages = plsim_lab::tcp::TcpStages;

/// The stages of `scenario` and an echo spec aimed at its first endpoint and its first pool's
/// backends, with `EchoSpec::new`'s connections and bytes, lingering past the FIN hold.
pub fn of(scenario: &Scenario) -> (Stages, EchoSpec) {
    let (stages, mut spec) = plsim_lab::tcp::tcp_path(scenario, 0, 0).expect("the scenario builds");
    let defaults = EchoSpec::new(spec.endpoint, spec.backends.clone());
    spec.connections = defaults.connections;
    spec.bytes = defaults.bytes;
    (stages, spec)
}
