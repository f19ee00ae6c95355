//! Stages on threads joined by lock-free channels; clock, taps and metrics (not yet written).
