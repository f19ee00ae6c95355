//! The rules a new service or endpoint must meet (every broken rule, with its place).

use super::addresses::AddressSet;
use super::*;

impl ControlPlane {
    pub(super) fn check_service(&self, s: &scenario::Service) -> Vec<(Path, ControlError)> {
        let mut out = Vec::new();
        let key = |k| vec![Seg::Key(k)];
        if let Some(problem) = alias::name_problem(&s.name, true) {
            out.push((
                key("name"),
                ControlError::InvalidName {
                    what: "service name",
                    problem,
                },
            ));
        } else if self.index.service_by_name.contains_key(&s.name) {
            out.push((
                key("name"),
                ControlError::DuplicateName {
                    kind: "service",
                    name: s.name.clone(),
                },
            ));
        }
        if let Some(problem) = s
            .alias_prefix
            .as_deref()
            .and_then(|p| alias::name_problem(p, false))
        {
            out.push((
                key("alias_prefix"),
                ControlError::InvalidName {
                    what: "alias prefix",
                    problem,
                },
            ));
        } else if s.alias_prefix.is_none() && s.name.contains('.') {
            out.push((
                key("alias_prefix"),
                ControlError::InvalidName {
                    what: "alias prefix",
                    problem: format!(
                        "the name `{}` has a `.`; give an alias_prefix without one",
                        s.name
                    ),
                },
            ));
        }
        if let Some(problem) = alias::region_problem(&s.region) {
            out.push((
                key("region"),
                ControlError::InvalidName {
                    what: "region",
                    problem,
                },
            ));
        }
        if let Some(problem) = alias::name_problem(&s.resource_group, true) {
            out.push((
                key("resource_group"),
                ControlError::InvalidName {
                    what: "resource group",
                    problem,
                },
            ));
        }
        if s.subscription.is_empty() {
            out.push((
                key("subscription"),
                ControlError::InvalidName {
                    what: "subscription",
                    problem: "it is empty".to_owned(),
                },
            ));
        }
        match self.index.frontend_ip.get(&s.frontend) {
            None => out.push((
                key("frontend"),
                ControlError::UnknownFrontend(s.frontend.clone()),
            )),
            Some(_) => {
                if let Some(other) = self
                    .index
                    .frontend_user
                    .get(&s.frontend)
                    .and_then(|&i| self.service_at(i))
                {
                    out.push((
                        key("frontend"),
                        ControlError::FrontendInUse {
                            frontend: s.frontend.clone(),
                            service: other.name.clone(),
                        },
                    ));
                }
            }
        }
        if s.nat_ips.is_empty() {
            out.push((key("nat_ips"), ControlError::NoNatIp));
        } else if s.nat_ips.len() > MAX_NAT_IPS {
            out.push((
                key("nat_ips"),
                ControlError::TooManyNatIps {
                    count: s.nat_ips.len(),
                },
            ));
        }
        if let Err(problems) = self.resolve_nat_ips(s) {
            out.extend(problems);
        }
        for (i, sub) in s.auto_approval.iter().enumerate() {
            if !s.visibility.sees(sub, &s.subscription) {
                out.push((
                    vec![Seg::Key("auto_approval"), Seg::Index(i)],
                    ControlError::AutoApprovalNotVisible(sub.clone()),
                ));
            }
        }
        out
    }

    /// The subnet of the provider's VNet a service's NAT IPs come from (`None` without a
    /// provider VNet), or why there is none.
    pub(super) fn nat_subnet(&self, s: &scenario::Service) -> Result<Option<Prefix>, ControlError> {
        match (&self.provider, &s.nat_subnet) {
            (None, None) => Ok(None),
            (None, Some(name)) => Err(ControlError::NoProviderVnet(name.clone())),
            (Some(_), None) => Err(ControlError::NoNatSubnet),
            (Some(p), Some(name)) => p
                .subnets
                .iter()
                .find(|sn| &sn.name == name)
                .map(|sn| Some(sn.prefix))
                .ok_or_else(|| ControlError::UnknownSubnet {
                    vnet: p.name.clone(),
                    subnet: name.clone(),
                }),
        }
    }

    /// The addresses of a new service's NAT IPs, each configuration checked in turn (the ones
    /// before it count as taken), or every problem with its place.
    pub(super) fn resolve_nat_ips(
        &self,
        s: &scenario::Service,
    ) -> Result<Vec<Ipv4Addr>, Vec<(Path, ControlError)>> {
        let subnet = self
            .nat_subnet(s)
            .map_err(|e| vec![(vec![Seg::Key("nat_subnet")], e)])?;
        let mut ips = Vec::new();
        let mut problems = Vec::new();
        for (i, &config) in s.nat_ips.iter().enumerate() {
            match self.nat_ip(subnet, config, &ips) {
                Ok(ip) => ips.push(ip),
                Err(e) => problems.push((vec![Seg::Key("nat_ips"), Seg::Index(i)], e)),
            }
        }
        if problems.is_empty() {
            Ok(ips)
        } else {
            Err(problems)
        }
    }

    /// The address of one NAT IP configuration of a service whose NAT IPs so far are `taken`:
    /// a static one checked (a usable unicast address; inside the NAT subnet and not reserved
    /// there, or private without a provider VNet; not used by anything else), a dynamic one the
    /// lowest free address of the NAT subnet that no static NAT IP of the scenario names.
    pub(super) fn nat_ip(
        &self,
        subnet: Option<Prefix>,
        config: NatIpConfig,
        taken: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, ControlError> {
        let used = |ip: Ipv4Addr| -> Option<ControlError> {
            if taken.contains(&ip) {
                return Some(ControlError::DuplicateNatIp(ip));
            }
            self.address_user(ip)
                .map(|by| ControlError::AddressInUse { ip, by })
        };
        match config {
            NatIpConfig::Static(ip) => {
                if let Some(why) = unusable(ip) {
                    return Err(ControlError::NatIpUnusable { ip, why });
                }
                match subnet {
                    Some(subnet) if !subnet.contains(ip) => {
                        return Err(ControlError::OutsideSubnet { ip, subnet });
                    }
                    Some(subnet) if subnet.is_reserved(ip) => {
                        return Err(ControlError::ReservedAddress { ip, subnet });
                    }
                    None if !private(ip) => return Err(ControlError::NatIpNotPrivate(ip)),
                    _ => {}
                }
                match used(ip) {
                    Some(e) => Err(e),
                    None => Ok(ip),
                }
            }
            NatIpConfig::Dynamic => {
                let subnet = subnet.ok_or(ControlError::DynamicNatIpWithoutSubnet)?;
                // The lowest usable address past the provider's plan (frontends, backends,
                // NAT IPs in use, static NAT IPs) and this service's NAT IPs so far.
                let taken = |ip| taken.contains(&ip);
                lowest_usable(subnet, &self.index.provider_taken, taken)
                    .ok_or(ControlError::SubnetFull(subnet))
            }
        }
    }

    /// What in the provider's address plan uses `ip`: a frontend, a backend or a NAT IP.
    pub(super) fn address_user(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(name) = self.index.frontend_at.get(&ip) {
            return Some(format!("frontend `{name}`"));
        }
        if self.index.backend_at.contains_key(&ip) {
            return Some("a backend".to_owned());
        }
        let &i = self.index.nat_ip_user.get(&ip)?;
        self.service_at(i)
            .map(|s| format!("a NAT IP of service `{}`", s.name))
    }

    pub(super) fn check_endpoint(&self, e: &scenario::Endpoint) -> Vec<(Path, ControlError)> {
        let mut out = Vec::new();
        let key = |k| vec![Seg::Key(k)];
        if let Some(problem) = alias::name_problem(&e.name, true) {
            out.push((
                key("name"),
                ControlError::InvalidName {
                    what: "endpoint name",
                    problem,
                },
            ));
        } else if self.index.endpoint_at.contains_key(&e.name) {
            out.push((
                key("name"),
                ControlError::DuplicateName {
                    kind: "endpoint",
                    name: e.name.clone(),
                },
            ));
        }
        if let Some(nic) = &e.nic_name {
            if let Some(problem) = alias::name_problem(nic, true) {
                out.push((
                    key("nic_name"),
                    ControlError::InvalidName {
                        what: "NIC name",
                        problem,
                    },
                ));
            } else if self.index.nics.contains(nic) {
                out.push((
                    key("nic_name"),
                    ControlError::DuplicateName {
                        kind: "NIC",
                        name: nic.clone(),
                    },
                ));
            }
        }
        if let Some(m) = &e.request_message {
            let n = m.chars().count();
            if n > MAX_REQUEST_MESSAGE {
                out.push((
                    key("request_message"),
                    ControlError::RequestMessageTooLong(n),
                ));
            }
        }
        if self.resolve_target(&e.target).is_none() {
            out.push((key("target"), ControlError::UnknownTarget(e.target.clone())));
        }
        match self.index.vnet_at.get(&e.vnet).map(|&i| &self.vnets[i]) {
            None => out.push((key("vnet"), ControlError::UnknownVnet(e.vnet.clone()))),
            Some(vnet) => {
                if vnet.subscription != e.subscription {
                    out.push((
                        key("subscription"),
                        ControlError::SubscriptionMismatch {
                            subscription: e.subscription.clone(),
                            vnet_subscription: vnet.subscription.clone(),
                        },
                    ));
                }
                match vnet.subnets.iter().find(|s| s.name == e.subnet) {
                    None => out.push((
                        key("subnet"),
                        ControlError::UnknownSubnet {
                            vnet: e.vnet.clone(),
                            subnet: e.subnet.clone(),
                        },
                    )),
                    Some(sn) => {
                        if let Err(err) = self.pick_address(&e.vnet, sn.prefix, e.private_ip) {
                            let at = if e.private_ip.is_some() {
                                "private_ip"
                            } else {
                                "subnet"
                            };
                            out.push((key(at), err));
                        }
                    }
                }
            }
        }
        out
    }

    /// The endpoint's address: the static one if it is usable, else the lowest free one.
    pub(super) fn pick_address(
        &self,
        vnet: &str,
        subnet: Prefix,
        ip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ControlError> {
        let held = self.index.vnet_addresses.get(vnet);
        match ip {
            Some(ip) => {
                if !subnet.contains(ip) {
                    Err(ControlError::OutsideSubnet { ip, subnet })
                } else if subnet.is_reserved(ip) {
                    Err(ControlError::ReservedAddress { ip, subnet })
                } else if let Some(x) = held.and_then(|h| h.holder.get(&ip)) {
                    Err(ControlError::AddressTaken {
                        ip,
                        endpoint: x.clone(),
                    })
                } else {
                    Ok(ip)
                }
            }
            None => {
                let none = AddressSet::default();
                let taken = held.map_or(&none, |h| &h.taken);
                lowest_usable(subnet, taken, |_| false).ok_or(ControlError::SubnetFull(subnet))
            }
        }
    }
}

/// The lowest usable address of `subnet` (see [`Prefix::usable`]) in neither `set` nor `also`
/// (which holds a few addresses at most: each is skipped in turn).
fn lowest_usable(
    subnet: Prefix,
    set: &AddressSet,
    also: impl Fn(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    // As `usable` counts them: from the fifth address to the one before the broadcast.
    let first = u64::from(u32::from(subnet.network())) + 4;
    let end = u64::from(u32::from(subnet.last()));
    if first >= end {
        return None;
    }
    let (mut from, last) = (
        Ipv4Addr::from(first as u32),
        Ipv4Addr::from((end - 1) as u32),
    );
    loop {
        let ip = set.lowest_free_from(from)?;
        if ip > last {
            return None;
        }
        if !also(ip) {
            return Some(ip);
        }
        from = Ipv4Addr::from(u32::from(ip).checked_add(1)?);
    }
}

/// Why `ip` can be no host's address, if it can't.
fn unusable(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.octets()[0] >= 240 {
        Some("a reserved (class E) address")
    } else {
        None
    }
}

/// A private address: RFC 1918, or the shared space of RFC 6598.
fn private(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1]))
}
