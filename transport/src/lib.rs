//! Reliable, unordered, fault-injectable UDP datagrams for shutter.
//!
//! Work in progress (issue 3): so far only [`time`] exists.

pub mod faults;
pub mod time;

pub use time::Time;
