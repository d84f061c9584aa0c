//! Reliable, unordered, fault-injectable UDP datagrams for shutter.
//!
//! Layers, bottom up:
//!
//! * [`wire`]: the datagram format (magic, version, sender and incarnations, DATA / ACK /
//!   PING frames, AEAD tag or CRC32C). Anything that fails to decode is dropped and
//!   counted.
//! * [`auth`]: the cluster key ring, AES-256-GCM sealing with per-direction keys,
//!   and the replay window: a secured core drops unsealed, forged, wrong-key and replayed
//!   datagrams before they touch any per-peer state.
//! * [`core`]: the sans-IO protocol ([`Core`]): exactly-once, unordered (optionally
//!   ordered) delivery, fragmentation up to 16 MiB, SACK, RFC 6298/9002 loss recovery,
//!   flow control, unreachable detection, incarnations. Fed with `now: Time`, drained with
//!   `poll_*`; it never reads a clock or touches a socket.
//! * [`faults`]: seeded, replayable fault injection at the datagram boundary (loss incl.
//!   Gilbert-Elliott, duplication, delay/jitter, reordering, corruption, partitions,
//!   bandwidth cap), used by the driver and by the simulator.
//! * `driver` (feature `driver`, on by default): the tokio layer: `UdpIo`, one
//!   socket2-made UDP socket with its peer table and fault injector, and
//!   `Endpoint`, a task running a bare core over it.
//!
//! Run `cargo run --release -p shutter-transport --example pingpong -- --loss 0.3 --json`
//! to see it recover from 30% loss on loopback.

pub mod auth;
pub mod core;
#[cfg(feature = "driver")]
pub mod driver;
pub mod faults;
pub mod time;
pub mod wire;

pub use crate::auth::{Auth, KeyRing};
pub use crate::core::{Config, ConfigError, Core, Event, MessageId, SendError, Stats, Transmit};
pub use time::Time;
