//! The Standard Load Balancer frontend forwarder stage (sans-IO) (not yet written).
