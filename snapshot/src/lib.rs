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
//! outputs; they never read a clock or touch a socket. The crate is grouped in layers:
//!
//! * **engines**: [`engine`] (the trait and [`engine::EngineConfig`]), [`mattern`],
//!   [`chandy_lamport`], the collection protocol they share (private `collect`), and
//!   [`life`] (why a restarted node's vector time and snapshot ids never repeat),
//!   [`topology`] (which application channels exist);
//! * **one node, sans-IO**: [`process`] (the application interface: [`process::Process`],
//!   [`process::Context`], and [`process::Node`], one process plus one engine) and
//!   [`stack`] ([`stack::Stack`]: the node plus the transport core, backlogs and every
//!   policy between them, with one input and one output surface) and [`lean`] (the
//!   headers it ships: baselines per channel instead of whole clocks);
//! * **IO** (feature `runtime`, on by default): [`runtime`], the tokio loop around one
//!   stack per node, and an in-process cluster. Without the feature the crate builds
//!   without tokio or socket2;
//! * **data and tools**: [`wire`] and [`global`] (messages on the wire and what a
//!   snapshot yields), [`verify`] (cut consistency, channels, invariants), [`persist`]
//!   (atomic, checksummed snapshot files), [`checkpoint`] (a node's store of its parts
//!   of committed snapshots), [`metrics`] and [`report`] (latency
//!   histograms, `.hgrm`, `.hlog`, JSON), [`bank`] (the example application).
//!
//! The `shutter` binary is the `shutter-cli` package (`snapshot/cli/`).

pub mod bank;
pub mod chandy_lamport;
pub mod checkpoint;
mod collect;
pub mod engine;
pub mod global;
pub mod lean;
pub mod life;
pub mod mattern;
pub mod metrics;
pub mod persist;
pub mod process;
pub mod recovery;
pub mod report;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod stack;
pub mod topology;
pub mod verify;
pub mod wire;

pub use engine::SnapshotEngine;
pub use global::{
    AbortReason, AbortWhy, ChannelCount, Delivery, GlobalSnapshot, InitiateError, SnapshotEvent,
    Timings,
};
pub use wire::{AppHeader, Control, CutCounts, Envelope, LocalReport, RecordedMessage, SnapshotId};

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
