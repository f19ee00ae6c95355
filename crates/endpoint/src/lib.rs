//! The consumer-side private endpoint stage of plsim (sans-IO).
//!
//! One [`EndpointTable`] holds every private endpoint of every consumer VNet, keyed by
//! (VNet, private endpoint address), because two VNets may use the same addresses. On the way
//! out, [`EndpointTable::forward`] passes a packet only while its endpoint's connection is
//! Approved, tags it with the connection's [`LinkId`] and rewrites its destination from the
//! endpoint's address (PE) to the service's load balancer frontend (F), keeping the port. On the
//! way back, [`EndpointTable::reverse`] undoes exactly that rewrite (source F -> PE) and names the
//! VNet the packet goes back to.
//!
//! Approval changes carry the simulated instant they take effect, so a batch of packets with
//! timestamps on both sides of a change is judged packet by packet: a connection that leaves
//! Approved at `t` passes nothing stamped `t` or later, in either direction.
//!
//! The packet methods take `&self`: a packet never changes what a later packet meets, only the
//! control plane does (insert, remove, approval changes). That is what lets the threaded engine
//! run this stage ahead of the others and still give the sequential result. The caller counts
//! what passes and what is dropped.
//!
//! No clocks, no threads, no allocation per packet.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use hashbrown::HashMap;
pub use plsim_wire::VnetId;
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, SimTime};

/// One private endpoint: where it is, which connection it carries, where it leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The connection's link id (unique in the table).
    pub link: LinkId,
    /// The consumer VNet.
    pub vnet: VnetId,
    /// The endpoint's private address in that VNet (unique per VNet).
    pub address: Ipv4Addr,
    /// The service's load balancer frontend IP.
    pub frontend: Ipv4Addr,
    /// Whether the connection is Approved (from time zero, or from its insertion).
    pub approved: bool,
}

/// A consumer packet the endpoint stage refuses (`not_approved`), with the connection it was
/// for when the address is an endpoint's (so the caller can count the drop under it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The connection of the endpoint at the packet's destination, if there is one.
    pub link: Option<LinkId>,
}

impl From<Refused> for DropReason {
    fn from(_: Refused) -> DropReason {
        DropReason::NotApproved
    }
}

/// An endpoint that can't be added, or a link the table does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The VNet already has an endpoint at that address.
    #[error("VNet {vnet} already has endpoint {link} at {address}", vnet = .vnet.0)]
    AddressInUse {
        /// The VNet.
        vnet: VnetId,
        /// The address.
        address: Ipv4Addr,
        /// The link already there.
        link: LinkId,
    },
    /// The link id is already in the table.
    #[error("{0} is already in the table")]
    DuplicateLink(LinkId),
    /// No endpoint carries that link.
    #[error("no endpoint carries {0}")]
    UnknownLink(LinkId),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ep: Endpoint,
    /// The approval state before `since`; `ep.approved` holds from `since` on.
    before: bool,
    since: SimTime,
}

impl Entry {
    #[inline]
    fn approved_at(&self, now: SimTime) -> bool {
        if now >= self.since {
            self.ep.approved
        } else {
            self.before
        }
    }
}

/// Up to this many endpoints are found by a scan of the entries (cheaper than hashing); more
/// through the maps.
const SCAN: usize = 8;

/// Every private endpoint of the simulation: one entry each, found by its VNet and address
/// (a packet's way in) or by its link (its way back), with one lookup either way.
#[derive(Clone, Debug, Default)]
pub struct EndpointTable {
    entries: Vec<Entry>,
    /// With more than [`SCAN`] entries: where each is.
    by_address: HashMap<(VnetId, Ipv4Addr), usize>,
    by_link: HashMap<LinkId, usize>,
}

impl EndpointTable {
    /// An empty table.
    pub fn new() -> EndpointTable {
        EndpointTable::default()
    }

    /// The entry at `address` in `vnet`.
    #[inline]
    fn at_address(&self, vnet: VnetId, address: Ipv4Addr) -> Option<&Entry> {
        if self.entries.len() <= SCAN {
            self.entries
                .iter()
                .find(|e| e.ep.address == address && e.ep.vnet == vnet)
        } else {
            self.by_address
                .get(&(vnet, address))
                .map(|&i| &self.entries[i])
        }
    }

    /// Where the entry of `link` is.
    #[inline]
    fn index_of(&self, link: LinkId) -> Option<usize> {
        if self.entries.len() <= SCAN {
            self.entries.iter().position(|e| e.ep.link == link)
        } else {
            self.by_link.get(&link).copied()
        }
    }

    /// Rebuilds the maps from the entries (after an insert or a removal: control-plane events,
    /// not packets).
    fn reindex(&mut self) {
        self.by_address.clear();
        self.by_link.clear();
        if self.entries.len() > SCAN {
            for (i, e) in self.entries.iter().enumerate() {
                self.by_address.insert((e.ep.vnet, e.ep.address), i);
                self.by_link.insert(e.ep.link, i);
            }
        }
    }

    /// Adds an endpoint. Its address must be free in its VNet and its link id new.
    pub fn insert(&mut self, ep: Endpoint) -> Result<(), EndpointError> {
        if let Some(e) = self.at_address(ep.vnet, ep.address) {
            return Err(EndpointError::AddressInUse {
                vnet: ep.vnet,
                address: ep.address,
                link: e.ep.link,
            });
        }
        if self.index_of(ep.link).is_some() {
            return Err(EndpointError::DuplicateLink(ep.link));
        }
        self.entries.push(Entry {
            ep,
            before: ep.approved,
            since: SimTime::ZERO,
        });
        self.reindex();
        Ok(())
    }

    /// Removes an endpoint (it was deleted), freeing its address in its VNet.
    pub fn remove(&mut self, link: LinkId) -> Result<Endpoint, EndpointError> {
        let i = self
            .index_of(link)
            .ok_or(EndpointError::UnknownLink(link))?;
        let e = self.entries.remove(i);
        self.reindex();
        Ok(e.ep)
    }

    /// Sets whether the link's connection is Approved, from simulated instant `at` on: packets
    /// stamped before `at` still see the previous state (so a batch may straddle the change).
    /// Changes must come in time order per link; a later call replaces an earlier pending one.
    pub fn set_approved(
        &mut self,
        link: LinkId,
        approved: bool,
        at: SimTime,
    ) -> Result<(), EndpointError> {
        let i = self
            .index_of(link)
            .ok_or(EndpointError::UnknownLink(link))?;
        let e = &mut self.entries[i];
        e.before = e.approved_at(at);
        e.since = at;
        e.ep.approved = approved;
        Ok(())
    }

    /// The endpoint carrying `link`, with its approval state as last set.
    pub fn get(&self, link: LinkId) -> Option<&Endpoint> {
        self.index_of(link).map(|i| &self.entries[i].ep)
    }

    /// The link of the endpoint at `address` in `vnet`.
    pub fn lookup(&self, vnet: VnetId, address: Ipv4Addr) -> Option<LinkId> {
        self.at_address(vnet, address).map(|e| e.ep.link)
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A consumer packet from `vnet`, addressed to a private endpoint. When the endpoint at the
    /// packet's destination address has an Approved connection at `now`, rewrites the
    /// destination address to the service's frontend (port kept, checksums updated) and returns
    /// the connection's link id. Otherwise the packet is left untouched and refused
    /// (`not_approved`): that covers Pending, Rejected and Disconnected connections and also an
    /// address that is no endpoint of that VNet (nothing in the VNet would answer it); the
    /// refusal names the endpoint's connection when there is one.
    #[inline]
    pub fn forward(
        &self,
        vnet: VnetId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<LinkId, Refused> {
        let t = view.tuple();
        let Some(e) = self.at_address(vnet, t.dst) else {
            return Err(Refused { link: None });
        };
        if !e.approved_at(now) {
            return Err(Refused {
                link: Some(e.ep.link),
            });
        }
        view.set_destination(frame, e.ep.frontend, t.dport);
        Ok(e.ep.link)
    }

    /// A return packet of connection `link`, from the service's frontend. Rewrites the source
    /// address from the frontend to the endpoint's address (port kept, checksums updated) and
    /// returns the VNet it goes back to. Drops, leaving the packet untouched: `not_approved` when
    /// the connection is not Approved at `now`; `no_flow` when the link is unknown or the source
    /// is not the link's frontend (it can't be the answer to anything the endpoint sent).
    #[inline]
    pub fn reverse(
        &self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<VnetId, DropReason> {
        match self.index_of(link).map(|i| &self.entries[i]) {
            None => Err(DropReason::NoFlow),
            Some(e) if view.tuple().src != e.ep.frontend => Err(DropReason::NoFlow),
            Some(e) if !e.approved_at(now) => Err(DropReason::NotApproved),
            Some(e) => {
                let sport = view.tuple().sport;
                view.set_source(frame, e.ep.address, sport);
                Ok(e.ep.vnet)
            }
        }
    }
}
