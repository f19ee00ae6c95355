//! Traffic for plsim, the inputs of the path: deterministic capture generators ([`captures`]:
//! the captures in `pcaps/` are made here, so anyone can regenerate them), synthetic workloads
//! streamed lazily from a seed ([`workload`]), and real TCP endpoints on smoltcp that talk
//! through any path (`tcp`, with the `tcp` feature, on by default).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod captures;
#[cfg(feature = "tcp")]
pub mod tcp;
pub mod workload;
