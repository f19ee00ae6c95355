//! Synthetic workloads, capture generators and real TCP endpoints (not yet written).
