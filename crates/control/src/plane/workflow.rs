//! The operations of the workflow: create, request, approve, reject, remove, delete, NAT IPs
//! and backends. Each refuses with the rule it would break, or returns its effects.

use super::*;

impl ControlPlane {
    pub(super) fn make_service(
        &mut self,
        s: &scenario::Service,
        nat_ips: Vec<Ipv4Addr>,
    ) -> PrivateLinkService {
        let alias = loop {
            let a = alias::alias(s.prefix(), &alias::guid(&mut self.rng), &s.region);
            if self.aliases.insert(a.clone()) {
                break a;
            }
        };
        let frontend_ip = self
            .index
            .frontend_ip
            .get(&s.frontend)
            .copied()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        PrivateLinkService {
            name: s.name.clone(),
            subscription: s.subscription.clone(),
            resource_id: s.resource_id(),
            alias,
            provisioning_state: ProvisioningState::Succeeded,
            visibility: s.visibility.clone(),
            auto_approval: s.auto_approval.clone(),
            frontend: s.frontend.clone(),
            frontend_ip,
            nat_ips,
            nat_subnet: self.nat_subnet(s).ok().flatten(),
            connections: Vec::new(),
        }
    }

    pub(super) fn create_endpoint_checked(
        &mut self,
        e: &scenario::Endpoint,
    ) -> Result<(), Vec<(Path, ControlError)>> {
        let problems = self.check_endpoint(e);
        if !problems.is_empty() {
            return Err(problems);
        }
        let vnet_index = *self.index.vnet_at.get(&e.vnet).expect("checked");
        let vnet = &self.vnets[vnet_index];
        let prefix = vnet
            .subnets
            .iter()
            .find(|s| s.name == e.subnet)
            .expect("checked")
            .prefix;
        let private_ip = self
            .pick_address(&e.vnet, prefix, e.private_ip)
            .map_err(|err| vec![(Vec::new(), err)])?;
        let nic_name = match &e.nic_name {
            Some(n) => n.clone(),
            None => format!("{}.nic.{}", e.name, alias::guid(&mut self.rng)),
        };
        let endpoint = PrivateEndpoint {
            name: e.name.clone(),
            subscription: e.subscription.clone(),
            vnet: e.vnet.clone(),
            vnet_index: VnetId(vnet_index as u32),
            subnet: e.subnet.clone(),
            private_ip,
            static_ip: e.private_ip.is_some(),
            nic_name,
            target: e.target.clone(),
            request_message: e.request_message.clone(),
            connection: None,
        };
        self.index.endpoint_created(self.endpoints.len(), &endpoint);
        self.endpoints.push(endpoint);
        Ok(())
    }

    /// Creates a private endpoint (no connection yet: see [`request`](Self::request)). Checks
    /// the name, NIC name, request message, target, VNet, subscription and subnet, and gives it
    /// its static IP (inside the subnet, not reserved, not taken) or the lowest free address.
    pub fn create_endpoint(&mut self, e: &scenario::Endpoint) -> Result<(), ControlError> {
        self.create_endpoint_checked(e)
            .map_err(|mut v| v.swap_remove(0).1)
    }

    /// The endpoint requests its connection: Approved at once when its subscription has RBAC
    /// rights (the provider's own) or is in the auto-approval list ([`Effect::LinkApproved`]),
    /// Pending when the service is visible to it ([`Effect::LinkPending`]), refused
    /// ([`ControlError::NotVisible`]) otherwise. The new connection gets the next link id.
    pub fn request(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let e = self
            .endpoint(endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        if let Some(c) = e.connection {
            return Err(ControlError::AlreadyRequested {
                endpoint: endpoint.to_owned(),
                state: c.state,
            });
        }
        let service = self
            .resolve_target(&e.target)
            .ok_or_else(|| ControlError::UnknownTarget(e.target.clone()))?;
        let svc = self.service_at(service).expect("resolved");
        let sub = e.subscription.as_str();
        let state = if sub == svc.subscription || svc.auto_approval.iter().any(|s| s == sub) {
            ConnectionState::Approved
        } else if svc.visibility.sees(sub, &svc.subscription) {
            ConnectionState::Pending
        } else {
            return Err(ControlError::NotVisible {
                service: svc.name.clone(),
                subscription: sub.to_owned(),
            });
        };
        let link = LinkId(self.next_link);
        self.next_link += 1;
        let conn = Connection {
            link,
            service,
            state,
        };
        self.endpoint_mut(endpoint)?.connection = Some(conn);
        if let Some(s) = self.services[service].as_mut() {
            s.connections.push(endpoint.to_owned());
        }
        Ok(self.requested_effect(endpoint))
    }

    pub(super) fn approved_effect(&self, endpoint: &str) -> Vec<Effect> {
        match self.endpoint(endpoint).and_then(|e| self.link_of(e)) {
            Some(l) if l.state == ConnectionState::Approved => vec![Effect::LinkApproved(l)],
            _ => Vec::new(),
        }
    }

    /// What a new request means for the data plane: its link, Approved or Pending.
    pub(super) fn requested_effect(&self, endpoint: &str) -> Vec<Effect> {
        match self.endpoint(endpoint).and_then(|e| self.link_of(e)) {
            Some(l) if l.state == ConnectionState::Approved => vec![Effect::LinkApproved(l)],
            Some(l) if l.state == ConnectionState::Pending => vec![Effect::LinkPending(l)],
            _ => Vec::new(),
        }
    }

    pub(super) fn set_state(
        &mut self,
        endpoint: &str,
        state: ConnectionState,
    ) -> Result<Vec<Effect>, ControlError> {
        let old = self.connection(endpoint)?;
        let e = self.endpoint_mut(endpoint)?;
        if let Some(c) = e.connection.as_mut() {
            c.state = state;
        }
        if old.state == ConnectionState::Approved && state != ConnectionState::Approved {
            Ok(vec![Effect::LinkClosed {
                link: old.link,
                service: old.service,
                state,
            }])
        } else {
            Ok(self.approved_effect(endpoint))
        }
    }

    /// The provider approves: Pending -> Approved ([`Effect::LinkApproved`]); Approved stays
    /// Approved (no effect); Rejected can never be approved; Disconnected can only be deleted.
    pub fn approve(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        match self.connection(endpoint)?.state {
            ConnectionState::Pending => self.set_state(endpoint, ConnectionState::Approved),
            ConnectionState::Approved => Ok(Vec::new()),
            ConnectionState::Rejected => {
                Err(ControlError::RejectedCannotBeApproved(endpoint.to_owned()))
            }
            ConnectionState::Disconnected => {
                Err(ControlError::ConnectionRemoved(endpoint.to_owned()))
            }
        }
    }

    /// The provider rejects: Pending -> Rejected; Approved -> Rejected ([`Effect::LinkClosed`]);
    /// Rejected stays Rejected (no effect); Disconnected can only be deleted.
    pub fn reject(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        match self.connection(endpoint)?.state {
            ConnectionState::Pending | ConnectionState::Approved => {
                self.set_state(endpoint, ConnectionState::Rejected)
            }
            ConnectionState::Rejected => Ok(Vec::new()),
            ConnectionState::Disconnected => {
                Err(ControlError::ConnectionRemoved(endpoint.to_owned()))
            }
        }
    }

    /// The provider removes the connection, whatever its state: it becomes Disconnected on the
    /// consumer side ([`Effect::LinkClosed`] if it was Approved) and leaves the service's list.
    /// Removing a Disconnected connection again is an error.
    pub fn remove(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let c = self.connection(endpoint)?;
        if c.state == ConnectionState::Disconnected {
            return Err(ControlError::ConnectionRemoved(endpoint.to_owned()));
        }
        self.detach(c.service, endpoint);
        self.set_state(endpoint, ConnectionState::Disconnected)
    }

    pub(super) fn detach(&mut self, service: usize, endpoint: &str) {
        if let Some(Some(s)) = self.services.get_mut(service) {
            s.connections.retain(|n| n != endpoint);
        }
    }

    /// The consumer deletes the endpoint, in any state: [`Effect::LinkClosed`] if it was
    /// Approved, then [`Effect::LinkDeleted`] if it had a connection. Its address is free again.
    pub fn delete_endpoint(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let pos = *self
            .index
            .endpoint_at
            .get(endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        let mut effects = Vec::new();
        if let Some(c) = self.endpoints[pos].connection {
            if c.state != ConnectionState::Disconnected {
                self.detach(c.service, endpoint);
            }
            if c.state == ConnectionState::Approved {
                effects.push(Effect::LinkClosed {
                    link: c.link,
                    service: c.service,
                    state: ConnectionState::Disconnected,
                });
            }
            effects.push(Effect::LinkDeleted(c.link));
        }
        let gone = self.endpoints.remove(pos);
        self.index
            .endpoint_deleted(pos, &gone, &self.endpoints[pos..]);
        self.deleted.push(gone);
        Ok(effects)
    }

    /// Creates an endpoint the scenario defines for a `create-endpoint` event, and requests
    /// its connection unless it says `connect = false`: the same rules as at time zero.
    pub fn create_later(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let e = self
            .later
            .get(endpoint)
            .cloned()
            .ok_or_else(|| ControlError::UndefinedEndpoint(endpoint.to_owned()))?;
        self.create_endpoint(&e)?;
        if e.connect {
            self.request(&e.name)
        } else {
            Ok(Vec::new())
        }
    }

    /// The provider deletes the service: refused while it has Pending or Approved connections
    /// (the documents: "reject all connections and delete the service"). Rejected connections
    /// left on it become Disconnected. The alias is never issued again.
    pub fn delete_service(&mut self, service: &str) -> Result<Vec<Effect>, ControlError> {
        let idx = self.service_index(service)?;
        let names = self.services[idx]
            .as_ref()
            .map(|s| s.connections.clone())
            .unwrap_or_default();
        let count = names
            .iter()
            .filter(|n| {
                matches!(
                    self.connection_state(n),
                    Some(ConnectionState::Pending | ConnectionState::Approved)
                )
            })
            .count();
        if count > 0 {
            return Err(ControlError::ServiceHasConnections {
                service: service.to_owned(),
                count,
            });
        }
        for n in &names {
            self.set_state(n, ConnectionState::Disconnected)?;
        }
        if let Some(gone) = self.services[idx].take() {
            self.index.service_deleted(&gone, &self.static_nat_ips);
        }
        Ok(Vec::new())
    }

    /// Adds a NAT IP configuration: at most eight, distinct, not used elsewhere, from the
    /// service's NAT subnet (a dynamic one takes its lowest free address).
    pub fn add_nat_ip(
        &mut self,
        service: &str,
        config: NatIpConfig,
    ) -> Result<Vec<Effect>, ControlError> {
        let idx = self.service_index(service)?;
        let svc = self.service_at(idx).expect("live");
        if svc.nat_ips.len() >= MAX_NAT_IPS {
            return Err(ControlError::TooManyNatIps {
                count: svc.nat_ips.len() + 1,
            });
        }
        let ip = self.nat_ip(svc.nat_subnet, config, &svc.nat_ips)?;
        if let Some(s) = self.services[idx].as_mut() {
            s.nat_ips.push(ip);
        }
        self.index.nat_ip_added(idx, ip);
        Ok(vec![Effect::NatIpAdded { service: idx, ip }])
    }

    /// Marks a backend down or up; an effect only when that changes its state.
    pub fn set_backend(
        &mut self,
        backend: Ipv4Addr,
        up: bool,
    ) -> Result<Vec<Effect>, ControlError> {
        let &at = self
            .index
            .backend_at
            .get(&backend)
            .ok_or(ControlError::UnknownBackend(backend))?;
        let b = &mut self.backends[at];
        if b.1 == up {
            return Ok(Vec::new());
        }
        b.1 = up;
        Ok(vec![if up {
            Effect::BackendUp(backend)
        } else {
            Effect::BackendDown(backend)
        }])
    }
}
