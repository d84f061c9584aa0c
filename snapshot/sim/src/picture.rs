//! A picture of the cut: a space-time diagram of one snapshot as SVG text, drawn from an
//! event log.
//!
//! One horizontal line per node (`n0` at the top, in id order), time running left to
//! right over a window around the snapshot (by default from a little before the
//! earliest local cut, or the start, to a little after the completion). Every
//! application message in the window is an arrow from its sender's line at the moment
//! it was sent to its receiver's line at the moment it was delivered; one never
//! delivered (lost for good) is dashed to the right edge. The cut is a thick line
//! through each node's local snapshot; the messages the snapshot recorded in its
//! channel states (sent before their sender's cut, delivered after their receiver's)
//! are orange. Crashes, down times and restarts are marked on the node's line, and the
//! snapshot's start and completion on the initiator's (whose label is bold).
//!
//! Time keeps one scale across the picture, except that an idle stretch (nothing sent,
//! delivered, cut, crashed or restarted) lasting many message flights, which would
//! crowd the rest into a corner, is squeezed into a narrow shaded band with its length
//! written under it ([`PictureOptions::squeeze_idle`]); every axis label is the exact
//! virtual time at its place. Past [`PictureOptions::max_arrows`] messages, the
//! picture draws the channel-state ones and those nearest the cut, and says so.
//!
//! The output depends on nothing but its inputs: the same report gives the same bytes.
//! The SVG uses plain elements with presentation attributes only, so simple renderers
//! (ImageMagick's) draw it as browsers do. For tools, each element says what it is:
//! node lines carry `class="node" data-node`, message groups `class="msg"` (plus
//! `channel` or `lost`) with `data-from`, `data-to` and `data-ts`, the cut is the
//! `polyline class="cut"`, and the root gives the window (`data-start-us`,
//! `data-end-us`) and the time axis as `t:x` breakpoints (`data-time-map`, µs and
//! pixels, linear between them).
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use shutter_sim::{Context, NodeId, Process, Sim, Topology};
//! use shutter_sim::picture::PictureOptions;
//!
//! /// Each node passes a counter on around a one-way ring every tick.
//! struct Pass(u32);
//! #[derive(Serialize, Deserialize)]
//! struct State(u32);
//!
//! impl Process for Pass {
//!     type State = State;
//!     fn on_tick(&mut self, ctx: &mut Context) {
//!         let next = ctx.peers()[0];
//!         ctx.send(next, self.0.to_le_bytes().to_vec());
//!     }
//!     fn on_message(&mut self, _: &mut Context, _: NodeId, _: &[u8]) { self.0 += 1; }
//!     fn snapshot(&self) -> State { State(self.0) }
//!     fn restore(&mut self, s: State) { self.0 = s.0; }
//! }
//!
//! let report = Sim::new(Topology::ring(4), |_| Pass(0))
//!     .tick(Some(Duration::from_millis(1)))
//!     .snapshot_at(Duration::from_micros(5_100), NodeId(0))
//!     .run_for(Duration::from_millis(10));
//! let id = report.completed[0].id;
//! let svg = report.svg(id).unwrap();
//! assert!(svg.starts_with("<svg"));
//! // The same, with a title of your own and a fixed window.
//! let options = PictureOptions {
//!     title: Some("Passing on a ring".into()),
//!     window: Some((shutter_sim::Time(4_000), shutter_sim::Time(7_000))),
//!     ..PictureOptions::default()
//! };
//! let svg = shutter_sim::picture::space_time_svg(&report, id, &options).unwrap();
//! assert!(svg.contains("Passing on a ring"));
//! ```
//!
//! [`render`] draws from any log and snapshot (not only a [`Report`]'s), for a log
//! gathered elsewhere in the same shape.

mod draw;
mod scene;
mod svg;
mod timeline;

use shutter_snapshot::{GlobalSnapshot, SnapshotId};
use shutter_transport::Time;

use crate::report::{LogEntry, Report};

/// How to draw a picture. `PictureOptions::default()` suits most runs.
#[derive(Clone, Debug, PartialEq)]
pub struct PictureOptions {
    /// The shown time. `None` (the default): from the earliest local cut (or the
    /// snapshot's start) to its completion (or the latest cut), widened on each side by
    /// [`PictureOptions::margin`].
    pub window: Option<(Time, Time)>,
    /// How much to widen the automatic window on each side, as a fraction of the time
    /// the snapshot took (default 0.3; at least 50 µs either way).
    pub margin: f64,
    /// The most message arrows drawn (default 300). Past it, every channel-state message
    /// is still drawn, with the other messages nearest the cut, and the picture says
    /// how many it left out.
    pub max_arrows: usize,
    /// Squeeze idle stretches of the window (no send, delivery, cut, crash or restart)
    /// long enough to crowd the rest into narrow shaded bands that give their length
    /// (default true). Elsewhere time keeps one scale, and the axis labels stay exact.
    pub squeeze_idle: bool,
    /// Width in pixels (default 1100; at least 400).
    pub width: u32,
    /// Distance between node lines in pixels (default: 64 for a few nodes, down to 30
    /// for many; at least 12).
    pub row_height: Option<f64>,
    /// The title (default: the snapshot and the number of nodes).
    pub title: Option<String>,
}

impl Default for PictureOptions {
    fn default() -> Self {
        PictureOptions {
            window: None,
            margin: 0.3,
            max_arrows: 300,
            squeeze_idle: true,
            width: 1100,
            row_height: None,
            title: None,
        }
    }
}

/// Why a picture could not be drawn.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    /// The snapshot did not complete in this run: it was abandoned.
    #[error("snapshot {0} was aborted: only a completed snapshot has a cut to draw")]
    Aborted(SnapshotId),
    /// No snapshot with this id completed in this run.
    #[error("no snapshot {id} completed in this run (completed: {completed})")]
    Unknown {
        /// The id asked for.
        id: SnapshotId,
        /// The ids that did complete, for the message.
        completed: String,
    },
    /// The log is empty (the run was made with [`crate::Sim::log`] off).
    #[error("the report has no event log to draw from: run with Sim::log(true), the default")]
    NoLog,
    /// Neither the snapshot's timings nor the log say where any node took its cut.
    #[error("snapshot {0} has no local cut times, in its timings or in the log")]
    NoCuts(SnapshotId),
    /// [`PictureOptions::window`] is empty.
    #[error("the window {start}..{end} is empty")]
    EmptyWindow {
        /// Its start.
        start: Time,
        /// Its end.
        end: Time,
    },
}

/// The space-time diagram of the completed snapshot `id` of `report`, as SVG text.
pub fn space_time_svg(
    report: &Report,
    id: SnapshotId,
    options: &PictureOptions,
) -> Result<String, PictureError> {
    let Some(snap) = report.completed.iter().find(|s| s.id == id) else {
        if report.aborted.iter().any(|(a, _)| *a == id) {
            return Err(PictureError::Aborted(id));
        }
        let completed = report
            .completed
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>();
        return Err(PictureError::Unknown {
            id,
            completed: if completed.is_empty() {
                "none".to_string()
            } else {
                completed.join(", ")
            },
        });
    };
    render(&report.log, snap, options)
}

/// The space-time diagram of `snapshot` drawn from `log` (entries in the order they
/// happened, all in one time base, as a [`Report`]'s are).
pub fn render(
    log: &[LogEntry],
    snapshot: &GlobalSnapshot,
    options: &PictureOptions,
) -> Result<String, PictureError> {
    let scene = scene::Scene::new(log, snapshot, options)?;
    Ok(draw::draw(&scene, snapshot.id, options))
}

impl Report {
    /// The space-time diagram of the completed snapshot `id`, with the default
    /// [`PictureOptions`] (see [`crate::picture`]).
    pub fn svg(&self, id: SnapshotId) -> Result<String, PictureError> {
        space_time_svg(self, id, &PictureOptions::default())
    }
}
