//! Consistent global snapshots over unordered, lossy channels.
//!
//! The heart of this crate is a pair of sans-IO snapshot engines behind one trait,
//! [`engine::SnapshotEngine`]:
//!
//! * [`mattern::Engine`]: Mattern's vector-time algorithm with counting, correct over
//!   reliable but *unordered* channels (what `shutter-transport` provides);
//! * [`chandy_lamport::Engine`]: the textbook marker algorithm, correct only over FIFO
//!   channels, kept as a baseline and to show why the Mattern path exists.
//!
//! Engines take `(from, message)` inputs with a `now: Time` and produce `(to, control)`
//! outputs; they never read a clock or touch a socket. Around them:
//!
//! * [`process`]: the application interface ([`process::Process`], [`process::Context`])
//!   and [`process::Node`], sans-IO glue of one process and one engine;
//! * [`verify`]: cut consistency, channel sanity and application invariants;
//! * [`life`]: why a restarted node's vector time and snapshot ids never repeat;
//! * [`bank`]: the example application (random transfers, conserved total);
//! * [`persist`]: atomic, checksummed snapshot files and restore helpers;
//! * [`metrics`]: latency and size histograms of completed snapshots;
//! * [`report`]: `.hgrm`, `.hlog`, JSON and SVG latency reports;
//! * [`runtime`]: the tokio node runtime (one task per node) and an in-process cluster;
//! * [`wire`] and [`global`]: messages on the wire and what a snapshot yields;
//! * `cli` (feature `cli`, on by default): the `shutter` command line.

pub mod bank;
pub mod chandy_lamport;
mod collect;
pub mod engine;
pub mod global;
pub mod life;
pub mod mattern;
pub mod metrics;
pub mod persist;
pub mod process;
pub mod report;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod stack;
pub mod verify;
pub mod wire;

pub use engine::SnapshotEngine;
pub use global::{
    AbortReason, AbortWhy, Delivery, GlobalSnapshot, InitiateError, SnapshotEvent, Timings,
};
pub use wire::{AppHeader, Control, Envelope, LocalReport, RecordedMessage, SnapshotId};

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
