//! The lookups the control plane's rules make, kept beside its state so that each is one hash
//! or tree lookup: a scenario of thousands of endpoints and NAT IPs checks in time linear in
//! them (give or take a log), not in their square or cube.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::addresses::AddressSet;
use super::{PrivateEndpoint, PrivateLinkService};
use crate::scenario::Scenario;

/// Every lookup of the control plane's state. The state is the truth: each change to its
/// services and endpoints goes through one of the methods below as well.
#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    /// Live services by name.
    pub(super) service_by_name: HashMap<String, usize>,
    /// Live services by alias and by resource id (what an endpoint's target names).
    pub(super) service_by_target: HashMap<String, usize>,
    /// The live service tied to each frontend (by the frontend's name).
    pub(super) frontend_user: HashMap<String, usize>,
    /// Each frontend name's address (the first frontend of that name).
    pub(super) frontend_ip: HashMap<String, Ipv4Addr>,
    /// Each frontend address's name (the first frontend with that address).
    pub(super) frontend_at: HashMap<Ipv4Addr, String>,
    /// Each backend's place in the control plane's list of backends.
    pub(super) backend_at: HashMap<Ipv4Addr, usize>,
    /// The live service each NAT IP in use belongs to.
    pub(super) nat_ip_user: HashMap<Ipv4Addr, usize>,
    /// Every address of the provider's plan a dynamic NAT IP can't take: the frontends, the
    /// backends, the NAT IPs in use and every static NAT IP the scenario names.
    pub(super) provider_taken: AddressSet,
    /// Each VNet name's index in the scenario (the first VNet of that name).
    pub(super) vnet_at: HashMap<String, usize>,
    /// Live endpoints by name: their place in the control plane's list of endpoints.
    pub(super) endpoint_at: HashMap<String, usize>,
    /// The NIC names of the live endpoints.
    pub(super) nics: HashSet<String>,
    /// Per VNet (by name), the addresses its live endpoints hold.
    pub(super) vnet_addresses: HashMap<String, VnetAddresses>,
}

/// The addresses the live endpoints of one VNet hold.
#[derive(Clone, Debug, Default)]
pub(super) struct VnetAddresses {
    /// All of them, as runs.
    pub(super) taken: AddressSet,
    /// Which endpoint holds each.
    pub(super) holder: HashMap<Ipv4Addr, String>,
}

impl Index {
    /// The lookups of a control plane with no service and no endpoint yet.
    pub(super) fn new(
        scenario: &Scenario,
        backends: &[(Ipv4Addr, bool)],
        static_nat_ips: &[Ipv4Addr],
    ) -> Index {
        let mut index = Index::default();
        for f in &scenario.load_balancer.frontends {
            index.frontend_ip.entry(f.name.clone()).or_insert(f.ip);
            index
                .frontend_at
                .entry(f.ip)
                .or_insert_with(|| f.name.clone());
            index.provider_taken.insert(f.ip);
        }
        for (i, &(b, _)) in backends.iter().enumerate() {
            index.backend_at.insert(b, i);
            index.provider_taken.insert(b);
        }
        for &ip in static_nat_ips {
            index.provider_taken.insert(ip);
        }
        for (i, v) in scenario.vnets.iter().enumerate() {
            index.vnet_at.entry(v.name.clone()).or_insert(i);
        }
        index
    }

    /// Service `i` was created.
    pub(super) fn service_created(&mut self, i: usize, s: &PrivateLinkService) {
        self.service_by_name.insert(s.name.clone(), i);
        self.service_by_target.insert(s.alias.clone(), i);
        self.service_by_target.insert(s.resource_id.clone(), i);
        self.frontend_user.insert(s.frontend.clone(), i);
        for &ip in &s.nat_ips {
            self.nat_ip_added(i, ip);
        }
    }

    /// Service `i` got the NAT IP `ip`.
    pub(super) fn nat_ip_added(&mut self, i: usize, ip: Ipv4Addr) {
        self.nat_ip_user.insert(ip, i);
        self.provider_taken.insert(ip);
    }

    /// A service was deleted: its names and its NAT IPs are free again (but a static NAT IP
    /// the scenario names, which no dynamic one ever takes).
    pub(super) fn service_deleted(&mut self, s: &PrivateLinkService, static_nat_ips: &[Ipv4Addr]) {
        self.service_by_name.remove(&s.name);
        self.service_by_target.remove(&s.alias);
        self.service_by_target.remove(&s.resource_id);
        self.frontend_user.remove(&s.frontend);
        for ip in &s.nat_ips {
            self.nat_ip_user.remove(ip);
            let reserved = static_nat_ips.binary_search(ip).is_ok()
                || self.frontend_at.contains_key(ip)
                || self.backend_at.contains_key(ip);
            if !reserved {
                self.provider_taken.remove(*ip);
            }
        }
    }

    /// Endpoint `e` was created at place `at` of the list of endpoints.
    pub(super) fn endpoint_created(&mut self, at: usize, e: &PrivateEndpoint) {
        self.endpoint_at.insert(e.name.clone(), at);
        self.nics.insert(e.nic_name.clone());
        let v = self.vnet_addresses.entry(e.vnet.clone()).or_default();
        v.taken.insert(e.private_ip);
        v.holder.insert(e.private_ip, e.name.clone());
    }

    /// Endpoint `e` was taken out of place `at` of the list of endpoints; `after` are the
    /// endpoints that followed it (now one place lower).
    pub(super) fn endpoint_deleted(
        &mut self,
        at: usize,
        e: &PrivateEndpoint,
        after: &[PrivateEndpoint],
    ) {
        self.endpoint_at.remove(&e.name);
        self.nics.remove(&e.nic_name);
        if let Some(v) = self.vnet_addresses.get_mut(&e.vnet) {
            v.taken.remove(e.private_ip);
            v.holder.remove(&e.private_ip);
        }
        for (k, x) in after.iter().enumerate() {
            self.endpoint_at.insert(x.name.clone(), at + k);
        }
    }
}
