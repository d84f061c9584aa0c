//! Deterministic simulator and cross-crate fault-injection scenarios for shutter. Not yet implemented: see issue 5.
