//! What the control plane refuses, and where in a scenario.

use std::net::Ipv4Addr;

use plsim_snat::MAX_NAT_IPS;

use crate::net::Prefix;
use crate::plane::{ConnectionState, MAX_REQUEST_MESSAGE};

/// A broken rule: the operation was refused and nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A name that Azure would not accept.
    #[error("invalid {what}: {problem}")]
    InvalidName {
        /// What is named.
        what: &'static str,
        /// Why it is refused.
        problem: String,
    },
    /// Two resources of one kind with the same name.
    #[error("{kind} `{name}` already exists")]
    DuplicateName {
        /// The kind (`service`, `endpoint`, `NIC`).
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// No such service.
    #[error("no service `{0}`")]
    UnknownService(String),
    /// No such endpoint.
    #[error("no private endpoint `{0}`")]
    UnknownEndpoint(String),
    /// No such load balancer frontend.
    #[error("no load balancer frontend `{0}`")]
    UnknownFrontend(String),
    /// Another service is tied to the frontend already.
    #[error("frontend `{frontend}` already serves service `{service}`")]
    FrontendInUse {
        /// The frontend.
        frontend: String,
        /// The service using it.
        service: String,
    },
    /// A service without NAT IP.
    #[error("a Private Link service needs at least one NAT IP")]
    NoNatIp,
    /// More than eight NAT IPs.
    #[error("{count} NAT IPs: a Private Link service has at most {MAX_NAT_IPS}")]
    TooManyNatIps {
        /// How many there would be.
        count: usize,
    },
    /// The same NAT IP twice on one service.
    #[error("NAT IP {0} is configured twice")]
    DuplicateNatIp(Ipv4Addr),
    /// An address already used by something else.
    #[error("{ip} is already used by {by}")]
    AddressInUse {
        /// The address.
        ip: Ipv4Addr,
        /// What uses it.
        by: String,
    },
    /// An auto-approval subscription the service is not visible to.
    #[error(
        "auto-approval subscription `{0}` is not in the visibility (auto-approval must be a subset of visibility)"
    )]
    AutoApprovalNotVisible(String),
    /// No such VNet.
    #[error("no VNet `{0}`")]
    UnknownVnet(String),
    /// No such subnet in the VNet.
    #[error("no subnet `{subnet}` in VNet `{vnet}`")]
    UnknownSubnet {
        /// The VNet.
        vnet: String,
        /// The subnet.
        subnet: String,
    },
    /// The endpoint's subscription is not its VNet's.
    #[error(
        "subscription `{subscription}` is not the VNet's (`{vnet_subscription}`): a private endpoint lives in its VNet's subscription"
    )]
    SubscriptionMismatch {
        /// The endpoint's.
        subscription: String,
        /// The VNet's.
        vnet_subscription: String,
    },
    /// A static IP outside the subnet.
    #[error("{ip} is outside subnet {subnet}")]
    OutsideSubnet {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Prefix,
    },
    /// A static IP Azure reserves (the first four and the last of the subnet).
    #[error("{ip} is reserved in subnet {subnet} (the first four and the last address are)")]
    ReservedAddress {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Prefix,
    },
    /// A static IP another endpoint of the VNet has.
    #[error("{ip} is already the address of endpoint `{endpoint}`")]
    AddressTaken {
        /// The address.
        ip: Ipv4Addr,
        /// The endpoint holding it.
        endpoint: String,
    },
    /// No free address left for a dynamic IP.
    #[error("subnet {0} has no free address left")]
    SubnetFull(Prefix),
    /// A request message over 140 characters.
    #[error("the request message has {0} characters; at most {MAX_REQUEST_MESSAGE}")]
    RequestMessageTooLong(usize),
    /// No live service has this alias or resource id.
    #[error("no service has the alias or resource id `{0}`")]
    UnknownTarget(String),
    /// The service is not visible to the consumer's subscription: the request is refused.
    #[error("service `{service}` is not visible to subscription `{subscription}`: request refused")]
    NotVisible {
        /// The service.
        service: String,
        /// The consumer's subscription.
        subscription: String,
    },
    /// The endpoint already has a connection (an endpoint makes one request in its life).
    #[error("endpoint `{endpoint}` already has a connection ({state}); create a new endpoint")]
    AlreadyRequested {
        /// The endpoint.
        endpoint: String,
        /// Its connection's state.
        state: ConnectionState,
    },
    /// The endpoint has not requested a connection.
    #[error("endpoint `{0}` has no connection")]
    NoConnection(String),
    /// A Rejected connection can never be approved.
    #[error(
        "the connection of `{0}` was rejected and can't be approved: remove it and create a new endpoint"
    )]
    RejectedCannotBeApproved(String),
    /// The connection was removed: the endpoint is only good for deletion.
    #[error("the connection of `{0}` was removed (Disconnected): the endpoint can only be deleted")]
    ConnectionRemoved(String),
    /// A service with Pending or Approved connections can't be deleted.
    #[error("service `{service}` has {count} connection(s): reject or remove them first")]
    ServiceHasConnections {
        /// The service.
        service: String,
        /// How many Pending or Approved connections.
        count: usize,
    },
    /// No backend has this address.
    #[error("no backend {0} in any pool")]
    UnknownBackend(Ipv4Addr),
    /// A NAT IP that is no usable unicast address.
    #[error("{ip} can't be a NAT IP: it is {why}")]
    NatIpUnusable {
        /// The address.
        ip: Ipv4Addr,
        /// What it is instead (`the unspecified address`, `multicast`, ...).
        why: &'static str,
    },
    /// Without the provider's VNet, a NAT IP must be a private address.
    #[error(
        "{0} is not a private address (10/8, 172.16/12, 192.168/16, 100.64/10): NAT IPs are addresses of the provider's VNet"
    )]
    NatIpNotPrivate(Ipv4Addr),
    /// A service of a scenario with a provider VNet names no NAT subnet.
    #[error("set nat_subnet: a service's NAT IPs come from a subnet of the provider's VNet")]
    NoNatSubnet,
    /// A NAT subnet without a provider VNet to hold it.
    #[error("nat_subnet `{0}` needs the provider's VNet (`[provider]`) to hold it")]
    NoProviderVnet(String),
    /// A dynamic NAT IP without a subnet to take it from.
    #[error("a dynamic NAT IP needs the provider's VNet and a nat_subnet to come from")]
    DynamicNatIpWithoutSubnet,
    /// A `create-endpoint` event for an endpoint the scenario does not define.
    #[error("no endpoint `{0}` in [[endpoints]] to create")]
    UndefinedEndpoint(String),
    /// A timeline event failed.
    #[error("timeline[{index}] ({action}): {source}")]
    Event {
        /// The event's index in the scenario's timeline.
        index: usize,
        /// Its action.
        action: &'static str,
        /// What went wrong.
        source: Box<ControlError>,
    },
}

/// A path to a field of a scenario, relative or absolute (`services[0].nat_ips[2]`).
pub(crate) type Path = Vec<Seg>;

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Name(String),
    Index(usize),
}
