//! Replaying a capture: the feeder that splits it into the consumer side and the backend side
//! ([`CaptureFeeder`], reading a [`PacketSource`]), the backend emulation that addresses the
//! server's packets ([`BackendEmulation`]), and the taps that write what each side saw
//! ([`PcapTaps`]).

mod backend;
mod feeder;
mod source;
mod taps;

pub use backend::BackendEmulation;
pub use feeder::{CaptureFeeder, InputStats};
pub use source::{Frames, Packet, PacketSource};
pub use taps::{PcapTaps, Written};
