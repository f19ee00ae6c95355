//! The consumer-side private endpoint stage (sans-IO) (not yet written).
