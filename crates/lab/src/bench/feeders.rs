//! The bench's two feeders: the setup's (each flow's SYN, SYN-ACK and ACK) and the timed
//! phase's (established-flow ACKs, round robin).

use plsim_engine::{Batch, Dir, Feeder, Fill};
use plsim_wire::VnetId;

use super::frames::Template;
use crate::Event;

/// Opens the flows: for each chunk of flows, their SYNs, their SYN-ACKs (from the backend
/// side) and their ACKs.
pub(super) struct Setup {
    pub(super) syn: Template,
    pub(super) syn_ack: Template,
    pub(super) ack: Template,
    pub(super) vnet: VnetId,
    pub(super) flows: u32,
    pub(super) next: u32,
    pub(super) seq: u64,
}

impl Feeder<Event> for Setup {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let chunk = (max / 3).max(1) as u32;
        let end = self.next.saturating_add(chunk).min(self.flows);
        for (t, dir) in [
            (&self.syn, Dir::Forward),
            (&self.syn_ack, Dir::Reverse),
            (&self.ack, Dir::Forward),
        ] {
            for i in self.next..end {
                t.push(batch, i, self.seq, self.vnet, dir);
                self.seq += 1;
            }
        }
        self.next = end;
        if self.next == self.flows {
            Fill::Done
        } else {
            Fill::More
        }
    }
}

/// Established-flow ACKs, one frame per flow, the flows round robin.
pub(super) struct Traffic {
    pub(super) ack: Template,
    pub(super) vnet: VnetId,
    pub(super) flows: u32,
    pub(super) packets: u64,
    pub(super) sent: u64,
    /// The next packet's place in the whole run (the setup's packets came first).
    pub(super) seq: u64,
}

impl Feeder<Event> for Traffic {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let end = (self.sent + max as u64).min(self.packets);
        for k in self.sent..end {
            let i = (k % u64::from(self.flows)) as u32;
            self.ack.push(batch, i, self.seq, self.vnet, Dir::Forward);
            self.seq += 1;
        }
        self.sent = end;
        if self.sent == self.packets {
            Fill::Done
        } else {
            Fill::More
        }
    }
}
