//! Reading captures (classic pcap in both byte orders with microsecond or nanosecond timestamps,
//! and pcapng with several interfaces) and writing classic pcap.
//!
//! Parsing is done by the `pcap-parser` crate (rusticata); this crate adds what plsim needs on top:
//! one [`Reader`] for both formats that yields [`Frame`]s with nanosecond timestamps and their
//! link type, errors that name the file and the reason, and graceful handling of a capture cut
//! short or damaged after its header: every complete record before the damage is yielded, then
//! [`Reader::truncated`] is set and [`Reader::warning`] says what happened.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod reader;
mod writer;

pub use reader::{Format, Frame, FrameBuf, ReadError, Reader, STDIN};
pub use writer::Writer;
