//! Traffic for plsim: deterministic capture generators (the captures in `pcaps/` are made here,
//! so anyone can regenerate them), and later synthetic workloads and real TCP endpoints.

pub mod captures;
pub mod tcp;
pub mod workload;
