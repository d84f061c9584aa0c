//! Lays a [`Scene`] out and writes it as SVG: node lines top to bottom in id order, time
//! left to right (one scale but for squeezed idle stretches, see [`Timeline`]; every
//! axis label at its exact time), then messages, the cut and a legend. Only plain elements with presentation attributes (no CSS, no markers), so
//! simple renderers (ImageMagick's own) draw it as browsers do.

use shutter_snapshot::SnapshotId;
use shutter_transport::Time;
use shutter_vclock::NodeId;

use super::PictureOptions;
use super::scene::{Message, Scene};
use super::svg::{Svg, Value, num, points};
use super::timeline::Timeline;

const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const INK: &str = "#222222";
const FAINT: &str = "#666666";
const NODE_LINE: &str = "#9a9a9a";
const GRID: &str = "#ececec";
const SQUEEZED: &str = "#f1f1f1";
const MESSAGE: &str = "#4a6fa5";
const RECORDED: &str = "#f07800";
const LOST: &str = "#8a8a8a";
const CUT: &str = "#8e24aa";
const CRASH: &str = "#d32f2f";
const RESTART: &str = "#2e7d32";

/// Room for the node labels on the left, and a little on the right.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 28.0;
/// Title and caption above the plot.
const TOP: f64 = 86.0;

/// Where things go.
struct Layout {
    x0: f64,
    x1: f64,
    /// The window, µs.
    start: f64,
    end: f64,
    time: Timeline,
    row: f64,
    width: f64,
    bottom: f64,
}

impl Layout {
    fn new(scene: &Scene, options: &PictureOptions) -> Layout {
        let n = scene.nodes.len().max(1) as f64;
        // Rows shrink as nodes are added, but never below what a label and an arrow
        // landing on the line need.
        let row = options
            .row_height
            .map_or((560.0 / n).clamp(30.0, 64.0), |r| r.max(12.0));
        let width = f64::from(options.width.max(400));
        let (x0, x1) = (LEFT, width - RIGHT);
        let (start, end) = (scene.start.as_micros() as f64, scene.end.as_micros() as f64);
        let time = Timeline::new(
            start,
            end,
            x0,
            x1,
            &events(scene),
            options.squeeze_idle.then(|| least_idle(scene)),
        );
        Layout {
            x0,
            x1,
            start,
            end,
            time,
            row,
            width,
            bottom: TOP + row * n,
        }
    }

    /// The x of time `t` in µs (clamped to the window).
    fn x(&self, t: f64) -> f64 {
        self.time.x(t)
    }

    fn x_of(&self, t: Time) -> f64 {
        self.x(t.as_micros() as f64)
    }

    /// Room under the axis line for the labels: a row of tick labels, and one of the
    /// lengths of squeezed stretches if there are any, then the axis title.
    fn under_axis(&self) -> f64 {
        if self.time.gaps().is_empty() {
            46.0
        } else {
            58.0
        }
    }

    /// The y of the `i`th node's line.
    fn y(&self, i: usize) -> f64 {
        TOP + self.row * (i as f64 + 0.5)
    }
}

/// How long a stretch must be idle to be squeezed: six typical message flights (the
/// median send to delivery), so the rhythm of the traffic stays as it is and only
/// waits far out of it (a retransmission's backoff, a node down) are squeezed.
fn least_idle(scene: &Scene) -> f64 {
    let mut flights: Vec<u64> = scene
        .messages
        .iter()
        .filter_map(|m| Some(m.delivered?.as_micros().saturating_sub(m.sent?.as_micros())))
        .collect();
    flights.sort_unstable();
    flights
        .get(flights.len() / 2)
        .map_or(0.0, |f| 6.0 * *f as f64)
}

/// Every moment something drawn happens, sorted: what idle stretches are between.
fn events(scene: &Scene) -> Vec<f64> {
    let mut all: Vec<Time> = scene
        .messages
        .iter()
        .flat_map(|m| [m.sent, m.delivered])
        .flatten()
        .chain(scene.cuts.values().copied())
        .chain(scene.started)
        .chain(scene.completed)
        .chain(
            scene
                .downs
                .iter()
                .flat_map(|d| [Some(d.crashed), d.restarted])
                .flatten(),
        )
        .collect();
    all.sort_unstable();
    all.dedup();
    all.into_iter().map(|t| t.as_micros() as f64).collect()
}

/// The whole picture as SVG text.
pub(super) fn draw(scene: &Scene, id: SnapshotId, options: &PictureOptions) -> String {
    let l = Layout::new(scene, options);
    let items = legend_items(scene, &l);
    let height = items.last().map_or(l.bottom + 50.0, |i| i.3 + 22.0);
    let mut svg = Svg::new(
        l.width,
        height,
        &[
            ("font-family", FONT.into()),
            ("data-snapshot", (&id.to_string()).into()),
            ("data-start-us", (scene.start.as_micros() as f64).into()),
            ("data-end-us", (scene.end.as_micros() as f64).into()),
            ("data-time-map", (&time_map(&l.time)).into()),
        ],
    );
    svg.leaf(
        "rect",
        &[
            ("x", 0.0.into()),
            ("y", 0.0.into()),
            ("width", l.width.into()),
            ("height", height.into()),
            ("fill", "#ffffff".into()),
        ],
    );
    heading(&mut svg, scene, id, options);
    axis(&mut svg, &l);
    node_lines(&mut svg, scene, &l, id.initiator);
    // Plain messages under the recorded ones, so an orange arrow is never hidden.
    for m in scene.messages.iter().filter(|m| !m.recorded) {
        message(&mut svg, scene, &l, m);
    }
    cut(&mut svg, scene, &l, id);
    for m in scene.messages.iter().filter(|m| m.recorded) {
        message(&mut svg, scene, &l, m);
    }
    legend(&mut svg, &items);
    svg.finish()
}

fn heading(svg: &mut Svg, scene: &Scene, id: SnapshotId, options: &PictureOptions) {
    let title = options
        .title
        .clone()
        .unwrap_or_else(|| format!("Snapshot {id}: the cut across {} nodes", scene.nodes.len()));
    svg.text(
        &[
            ("x", 16.0.into()),
            ("y", 26.0.into()),
            ("font-size", 17.0.into()),
            ("font-weight", "bold".into()),
            ("fill", INK.into()),
        ],
        &title,
    );
    let recorded_drawn = scene.messages.iter().filter(|m| m.recorded).count();
    let mut caption = format!(
        "{} messages between {} ms and {} ms; {} of them in the snapshot's channel states.",
        scene.in_window,
        ms(scene.start.as_micros(), 3),
        ms(scene.end.as_micros(), 3),
        recorded_drawn,
    );
    if scene.recorded_found < scene.recorded {
        caption += &format!(
            " {} recorded messages are not in the log.",
            scene.recorded - scene.recorded_found
        );
    }
    svg.text(
        &[
            ("x", 16.0.into()),
            ("y", 48.0.into()),
            ("font-size", 12.5.into()),
            ("fill", FAINT.into()),
        ],
        &caption,
    );
    if scene.messages.len() < scene.in_window {
        svg.text(
            &[
                ("class", "capped".into()),
                ("x", 16.0.into()),
                ("y", 66.0.into()),
                ("font-size", 12.5.into()),
                ("fill", CRASH.into()),
            ],
            &format!(
                "Only {} of the {} messages drawn: the channel-state ones and those nearest \
                 the cut.",
                scene.messages.len(),
                scene.in_window
            ),
        );
    }
}

/// `t:x` pairs, µs and pixels, the breakpoints of the piecewise-linear time axis.
fn time_map(time: &Timeline) -> String {
    time.points()
        .iter()
        .map(|&(t, x)| format!("{}:{}", num(t), num(x)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Time along the bottom at round steps, with faint grid lines up through the plot;
/// each squeezed idle stretch a shaded band with a break in the axis and its length
/// under it.
fn axis(svg: &mut Svg, l: &Layout) {
    // Round times about every 80 px.
    let step = nice_step((80.0 / l.time.scale()).ceil().max(1.0) as u64);
    let top = TOP - 4.0;
    svg.open("g", &[("class", "axis".into())]);
    // Tick labels so far, as (centre, half width), so none is written over another.
    let mut taken: Vec<(f64, f64)> = Vec::new();
    for &(a, b) in l.time.gaps() {
        let (xa, xb) = (l.x(a), l.x(b));
        svg.leaf(
            "rect",
            &[
                ("class", "squeezed".into()),
                ("data-from-us", a.into()),
                ("data-to-us", b.into()),
                ("x", xa.into()),
                ("y", top.into()),
                ("width", (xb - xa).into()),
                ("height", (l.bottom - top + 6.0).into()),
                ("fill", SQUEEZED.into()),
            ],
        );
        // Under the tick labels, on a row of their own: bands are never closer than
        // their own width plus the room either side, so these never meet.
        svg.text(
            &[
                ("class", "squeezed-length".into()),
                ("x", ((xa + xb) / 2.0).into()),
                ("y", (l.bottom + 33.0).into()),
                ("font-size", 10.5.into()),
                ("font-style", "italic".into()),
                ("text-anchor", "middle".into()),
                ("fill", FAINT.into()),
            ],
            &duration(b - a),
        );
    }
    let mut baseline = vec![l.x0];
    for &(a, b) in l.time.gaps() {
        baseline.push(l.x(a));
        baseline.push(l.x(b));
    }
    baseline.push(l.x1);
    for piece in baseline.chunks(2) {
        svg.line((piece[0], l.bottom), (piece[1], l.bottom), FAINT, 1.0, &[]);
    }
    for (a, b) in l.time.pieces() {
        let mut t = (a as u64).div_ceil(step) * step;
        if t as f64 > b {
            // No round time in this piece (a short one between two bands, around one
            // event): one finer label in its middle, so it still has a time.
            let fine = (step / 10).max(1);
            let mid = ((a + b) / 2.0 / fine as f64).round() as u64 * fine;
            if (a..=b).contains(&(mid as f64)) {
                tick(svg, l, &mut taken, mid, decimals_for(fine));
            }
            continue;
        }
        while t as f64 <= b {
            tick(svg, l, &mut taken, t, decimals_for(step));
            t += step;
        }
    }
    let note = if l.time.gaps().is_empty() {
        "virtual time (ms) \u{2192}"
    } else {
        "virtual time (ms) \u{2192}   shaded: idle time squeezed (its length under it)"
    };
    svg.text(
        &[
            ("x", l.x1.into()),
            ("y", (l.bottom + l.under_axis() - 8.0).into()),
            ("font-size", 12.0.into()),
            ("text-anchor", "end".into()),
            ("fill", FAINT.into()),
        ],
        note,
    );
    svg.close("g");
}

/// A grid line, a tick and a label at `t` µs, unless the label would overlap one in
/// `taken`.
fn tick(svg: &mut Svg, l: &Layout, taken: &mut Vec<(f64, f64)>, t: u64, decimals: u32) {
    let x = l.x(t as f64);
    let words = ms(t, decimals);
    let half = label_half_width(&words);
    if taken.iter().any(|(c, h)| (x - c).abs() < half + h + 6.0) {
        return;
    }
    taken.push((x, half));
    svg.line((x, TOP - 4.0), (x, l.bottom), GRID, 1.0, &[]);
    svg.line((x, l.bottom), (x, l.bottom + 5.0), FAINT, 1.0, &[]);
    svg.text(
        &[
            ("class", "tick".into()),
            ("x", x.into()),
            ("y", (l.bottom + 19.0).into()),
            ("font-size", 11.5.into()),
            ("text-anchor", "middle".into()),
            ("fill", FAINT.into()),
        ],
        &words,
    );
}

/// Digits after the point that times at multiples of `step` µs need, in ms.
fn decimals_for(step: u64) -> u32 {
    match step {
        s if s % 1000 == 0 => 0,
        s if s % 100 == 0 => 1,
        s if s % 10 == 0 => 2,
        _ => 3,
    }
}

/// Roughly half the width of a label at the tick size.
fn label_half_width(words: &str) -> f64 {
    words.chars().count() as f64 * 3.3
}

/// A length of time, short: `640 µs`, `8.7 ms`, `43 ms`, `1.2 s`.
fn duration(us: f64) -> String {
    let us = us.round().max(0.0);
    if us < 1000.0 {
        format!("{us} \u{b5}s")
    } else if us < 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        format!("{:.1} s", us / 1_000_000.0)
    }
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `raw`.
fn nice_step(raw: u64) -> u64 {
    let mut mag = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * mag >= raw {
                return m * mag;
            }
        }
        mag *= 10;
    }
}

/// `us` microseconds as milliseconds with `decimals` digits after the point (cut off,
/// not rounded: tick times are multiples of their step, so nothing is cut).
fn ms(us: u64, decimals: u32) -> String {
    if decimals == 0 {
        return (us / 1000).to_string();
    }
    let frac = (us % 1000) / 10u64.pow(3 - decimals);
    format!("{}.{:0width$}", us / 1000, frac, width = decimals as usize)
}

/// One labelled line per node, its down times dotted over it with a cross at the crash
/// and a bar at the restart.
fn node_lines(svg: &mut Svg, scene: &Scene, l: &Layout, initiator: NodeId) {
    for (i, &node) in scene.nodes.iter().enumerate() {
        let y = l.y(i);
        let name = node.to_string();
        svg.leaf(
            "line",
            &[
                ("class", "node".into()),
                ("data-node", (&name).into()),
                ("x1", l.x0.into()),
                ("y1", y.into()),
                ("x2", l.x1.into()),
                ("y2", y.into()),
                ("stroke", NODE_LINE.into()),
                ("stroke-width", 1.2.into()),
            ],
        );
        let mut label = vec![
            ("x", (l.x0 - 10.0).into()),
            ("y", (y + 4.5).into()),
            ("font-size", 13.5.into()),
            ("text-anchor", "end".into()),
            ("fill", INK.into()),
        ];
        if node == initiator {
            label.push(("font-weight", "bold".into()));
        }
        svg.text(&label, &name);
    }
    for d in &scene.downs {
        let Some(i) = scene.nodes.iter().position(|n| *n == d.node) else {
            continue;
        };
        let y = l.y(i);
        let from = l.x_of(d.crashed).max(l.x0);
        let to = d.restarted.map_or(l.x1, |t| l.x_of(t).min(l.x1));
        svg.line((from, y), (to, y), "#ffffff", 4.0, &[]);
        svg.line(
            (from, y),
            (to, y),
            NODE_LINE,
            1.2,
            &[("stroke-dasharray", "2 3".into())],
        );
        if d.crashed >= scene.start {
            cross(svg, l.x_of(d.crashed), y, "crash");
        }
        if let Some(r) = d.restarted.filter(|r| *r <= scene.end) {
            bar(svg, l.x_of(r), y, "restart");
        }
    }
}

fn cross(svg: &mut Svg, x: f64, y: f64, class: &str) {
    let r = 5.5;
    svg.open("g", &[("class", class.into())]);
    for (dx, dy) in [(r, r), (r, -r)] {
        svg.line((x - dx, y - dy), (x + dx, y + dy), CRASH, 2.4, &[]);
    }
    svg.close("g");
}

fn bar(svg: &mut Svg, x: f64, y: f64, class: &str) {
    svg.leaf(
        "rect",
        &[
            ("class", class.into()),
            ("x", (x - 1.5).into()),
            ("y", (y - 7.0).into()),
            ("width", 3.0.into()),
            ("height", 14.0.into()),
            ("fill", RESTART.into()),
        ],
    );
}

/// One message: a line from its send to its delivery, clipped to the window, with an
/// arrowhead where it lands inside. A lost one is dashed from its send to the right edge
/// at its receiver's line.
fn message(svg: &mut Svg, scene: &Scene, l: &Layout, m: &Message) {
    let row = |n: NodeId| scene.nodes.iter().position(|x| *x == n).map(|i| l.y(i));
    let (Some(ys), Some(yd)) = (row(m.from), row(m.to)) else {
        return;
    };
    let (class, colour, width) = if m.recorded {
        ("msg channel", RECORDED, 2.4)
    } else if m.delivered.is_none() {
        ("msg lost", LOST, 1.2)
    } else {
        ("msg", MESSAGE, 1.0)
    };
    // In time units: where the line starts and ends before clipping.
    let ts = m.sent.map_or(l.start, |t| t.as_micros() as f64);
    let (td, lands) = match m.delivered {
        Some(t) => (t.as_micros() as f64, true),
        None => (l.end, false),
    };
    let at = |t: f64| {
        let f = if td > ts { (t - ts) / (td - ts) } else { 0.0 };
        (l.x(t), ys + (yd - ys) * f)
    };
    let (a, b) = (at(ts.max(l.start)), at(td.min(l.end)));
    let head = lands && td <= l.end;
    let name_from = m.from.to_string();
    let name_to = m.to.to_string();
    let stamp = m.ts.to_string();
    svg.open(
        "g",
        &[
            ("class", class.into()),
            ("data-from", (&name_from).into()),
            ("data-to", (&name_to).into()),
            ("data-ts", (&stamp).into()),
        ],
    );
    let mut extra: Vec<(&str, Value<'_>)> = Vec::new();
    if !lands {
        extra.push(("stroke-dasharray", "5 3".into()));
    }
    if !m.recorded {
        extra.push(("stroke-opacity", 0.8.into()));
    }
    svg.line(a, b, colour, width, &extra);
    if head {
        arrowhead(svg, a, b, colour, if m.recorded { 1.5 } else { 1.0 });
    }
    svg.close("g");
}

/// A filled triangle with its tip at `tip`, pointing along `from -> tip`.
fn arrowhead(svg: &mut Svg, from: (f64, f64), tip: (f64, f64), colour: &str, scale: f64) {
    let (dx, dy) = (tip.0 - from.0, tip.1 - from.1);
    let len = (dx * dx + dy * dy).sqrt();
    if len < 1.0 {
        return;
    }
    let (ux, uy) = (dx / len, dy / len);
    let (long, half) = (7.0 * scale, 3.0 * scale);
    let base = (tip.0 - ux * long, tip.1 - uy * long);
    svg.leaf(
        "polygon",
        &[
            (
                "points",
                (&points(&[
                    tip,
                    (base.0 - uy * half, base.1 + ux * half),
                    (base.0 + uy * half, base.1 - ux * half),
                ]))
                    .into(),
            ),
            ("fill", colour.into()),
        ],
    );
}

/// The cut: one point per node at its local cut, joined top to bottom, with the
/// snapshot's start and completion marked on the initiator's line.
fn cut(svg: &mut Svg, scene: &Scene, l: &Layout, id: SnapshotId) {
    let pts: Vec<(NodeId, f64, f64)> = scene
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| scene.cuts.get(n).map(|t| (*n, l.x_of(*t), l.y(i))))
        .collect();
    let xy: Vec<(f64, f64)> = pts.iter().map(|&(_, x, y)| (x, y)).collect();
    svg.leaf(
        "polyline",
        &[
            ("class", "cut".into()),
            ("points", (&points(&xy)).into()),
            ("fill", "none".into()),
            ("stroke", CUT.into()),
            ("stroke-width", 3.0.into()),
            ("stroke-opacity", 0.85.into()),
            ("stroke-linejoin", "round".into()),
        ],
    );
    for &(node, x, y) in &pts {
        svg.leaf(
            "circle",
            &[
                ("class", "cut-point".into()),
                ("data-node", (&node.to_string()).into()),
                ("cx", x.into()),
                ("cy", y.into()),
                ("r", 4.0.into()),
                ("fill", CUT.into()),
            ],
        );
    }
    if let Some(&(_, x, y)) = pts.first() {
        svg.text(
            &[
                ("x", x.into()),
                ("y", (y - l.row / 2.0 - 2.0).into()),
                ("font-size", 12.5.into()),
                ("font-weight", "bold".into()),
                ("text-anchor", "middle".into()),
                ("fill", CUT.into()),
            ],
            &format!("cut {id}"),
        );
    }
    let Some(i) = scene.nodes.iter().position(|n| *n == id.initiator) else {
        return;
    };
    let y = l.y(i);
    let marks = [
        scene.started.map(|t| (t, "start", "end", -4.0)),
        scene.completed.map(|t| (t, "done", "start", 4.0)),
    ];
    for (t, word, anchor, dx) in marks.into_iter().flatten() {
        if t < scene.start || t > scene.end {
            continue;
        }
        let x = l.x_of(t);
        svg.line((x, y - 9.0), (x, y + 9.0), INK, 1.5, &[]);
        svg.text(
            &[
                ("x", (x + dx).into()),
                ("y", (y + 16.0).into()),
                ("font-size", 11.0.into()),
                ("text-anchor", anchor.into()),
                ("fill", INK.into()),
            ],
            word,
        );
    }
}

/// What each mark means, in rows under the axis: `(kind, words, x, y)`. Marks the
/// picture has none of are left out.
fn legend_items(scene: &Scene, l: &Layout) -> Vec<(&'static str, &'static str, f64, f64)> {
    let mut items = vec![
        ("message", "message (send to delivery)"),
        ("channel", "in a channel state of the snapshot"),
        ("cut", "the cut: each node's local snapshot"),
    ];
    if scene.messages.iter().any(|m| m.delivered.is_none()) {
        items.push(("lost", "lost for good"));
    }
    if !scene.downs.is_empty() {
        items.push(("crash", "crash, down, restart"));
    }
    let (mut x, mut y) = (l.x0, l.bottom + l.under_axis() + 18.0);
    let mut placed = Vec::new();
    for (kind, words) in items {
        // About 6.6 px a character at this size, and a gap before the next item.
        let w = 34.0 + words.len() as f64 * 6.6 + 22.0;
        if x > l.x0 && x + w > l.x1 + 22.0 {
            (x, y) = (l.x0, y + 22.0);
        }
        placed.push((kind, words, x, y));
        x += w;
    }
    placed
}

fn legend(svg: &mut Svg, items: &[(&str, &str, f64, f64)]) {
    svg.open("g", &[("class", "legend".into())]);
    for &(kind, words, x, y) in items {
        let sample = |svg: &mut Svg, colour: &str, width: f64, dash: Option<&str>| {
            let mut a: Vec<(&str, Value<'_>)> = vec![
                ("x1", x.into()),
                ("y1", y.into()),
                ("x2", (x + 26.0).into()),
                ("y2", y.into()),
                ("stroke", colour.into()),
                ("stroke-width", width.into()),
            ];
            if let Some(d) = dash {
                a.push(("stroke-dasharray", d.into()));
            }
            svg.leaf("line", &a);
        };
        match kind {
            "message" => {
                sample(svg, MESSAGE, 1.0, None);
                arrowhead(svg, (x, y), (x + 26.0, y), MESSAGE, 1.0);
            }
            "channel" => {
                sample(svg, RECORDED, 2.4, None);
                arrowhead(svg, (x, y), (x + 26.0, y), RECORDED, 1.5);
            }
            "cut" => {
                sample(svg, CUT, 3.0, None);
                svg.leaf(
                    "circle",
                    &[
                        ("cx", (x + 13.0).into()),
                        ("cy", y.into()),
                        ("r", 4.0.into()),
                        ("fill", CUT.into()),
                    ],
                );
            }
            "lost" => sample(svg, LOST, 1.2, Some("5 3")),
            _ => {
                cross(svg, x + 5.0, y, "legend-crash");
                svg.line(
                    (x + 10.0, y),
                    (x + 22.0, y),
                    NODE_LINE,
                    1.2,
                    &[("stroke-dasharray", "2 3".into())],
                );
                bar(svg, x + 25.0, y, "legend-restart");
            }
        }
        svg.text(
            &[
                ("x", (x + 34.0).into()),
                ("y", (y + 4.0).into()),
                ("font-size", 12.0.into()),
                ("fill", INK.into()),
            ],
            words,
        );
    }
    svg.close("g");
}
