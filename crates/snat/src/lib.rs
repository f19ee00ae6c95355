//! The provider-side SNAT engine: NAT IPs, port allocators, flow table, TCP timers (sans-IO) (not yet written).
