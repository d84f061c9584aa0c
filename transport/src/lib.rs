//! Reliable, unordered, fault-injectable UDP datagrams for shutter.
//!
//! Work in progress (issue 3): so far only [`time`] exists.

pub mod faults;
pub mod core;
pub mod driver;
pub mod time;
pub mod wire;

pub use time::Time;
pub use crate::core::{Config, ConfigError, Core, Event, MessageId, SendError, Stats, Transmit};
