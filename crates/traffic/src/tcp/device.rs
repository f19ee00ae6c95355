//! The smoltcp device of one simulated host: bare IPv4 packets (`Medium::Ip`) in from a receive
//! queue, out into a shared outbox, in buffers taken from and returned to a shared pool.

use std::cell::RefCell;
use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The IP MTU of every simulated host (so the TCP MSS is 1460).
pub(crate) const MTU: usize = 1500;

/// Packet buffers shared by every host of a run: the pool of spare buffers, and the packets the
/// host being polled has sent. One thread uses them; `RefCell` lets a receive token and a
/// transmit token of the same device both reach them.
#[derive(Default)]
pub(crate) struct Bufs {
    pool: RefCell<Vec<Vec<u8>>>,
    out: RefCell<Vec<Vec<u8>>>,
}

impl Bufs {
    /// A buffer to fill (from the pool when one is spare).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut b = self.pool.borrow_mut().pop().unwrap_or_default();
        b.clear();
        b.resize(len, 0);
        b
    }

    /// Returns a buffer to the pool.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        self.pool.borrow_mut().push(buf);
    }

    /// Moves the packets sent since the last call into `into` (which is cleared first).
    pub(crate) fn drain_out(&self, into: &mut Vec<Vec<u8>>) {
        into.clear();
        into.append(&mut self.out.borrow_mut());
    }

    /// How many packets are waiting in the outbox.
    pub(crate) fn out_len(&self) -> usize {
        self.out.borrow().len()
    }
}

/// A host's device for the length of one poll: its receive queue, and the shared buffers.
pub(crate) struct Port<'a> {
    pub(crate) rx: &'a mut VecDeque<Vec<u8>>,
    pub(crate) bufs: &'a Bufs,
}

pub(crate) struct Rx<'a> {
    buf: Vec<u8>,
    bufs: &'a Bufs,
}

pub(crate) struct Tx<'a> {
    bufs: &'a Bufs,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.buf);
        self.bufs.give(self.buf);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = self.bufs.take(len);
        let r = f(&mut buf);
        self.bufs.out.borrow_mut().push(buf);
        r
    }
}

impl phy::Device for Port<'_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buf = self.rx.pop_front()?;
        Some((
            Rx {
                buf,
                bufs: self.bufs,
            },
            Tx { bufs: self.bufs },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx { bufs: self.bufs })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // The default checksum capabilities: smoltcp checks every received checksum and
        // computes every sent one, so a wrong rewrite anywhere on the path fails the run.
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}
