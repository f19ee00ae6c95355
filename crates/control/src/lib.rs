//! The Private Link control plane: services, endpoints, connections, approval, scenario files (not yet written).
