//! Where each moment goes across the page. Time is linear, at one scale everywhere,
//! except in idle stretches (no send, delivery, cut, crash or restart) that are both
//! long for the run (many message flights) and long enough to crowd everything else:
//! each of those is squeezed into a narrow band that says how long it is. A snapshot over a lossy link can take ten times longer at one node than
//! at the others (a retransmitted control message), and a linear axis would then leave
//! the interesting part a sliver at the left.

/// The width of a squeezed idle stretch.
pub(super) const GAP_PX: f64 = 46.0;
/// The room kept either side of a squeezed stretch, at the scale before it is kept.
const EVENT_ROOM_PX: f64 = 12.0;
/// The least part of the width an idle stretch must take to be squeezed.
const MIN_SHARE: f64 = 0.15;
/// At most this many stretches are squeezed (the longest ones).
const MAX_GAPS: usize = 6;

/// A piecewise-linear map from time (µs) to x, through `(t, x)` breakpoints.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Timeline {
    /// Increasing in both `t` and `x`; the first is the window's start at the left
    /// edge, the last its end at the right edge.
    points: Vec<(f64, f64)>,
    /// The squeezed stretches, `(from, to)` in µs.
    gaps: Vec<(f64, f64)>,
    /// Pixels per µs outside the gaps.
    scale: f64,
}

impl Timeline {
    /// The window `start..end` (µs) over `x0..x1`, with idle stretches between the
    /// sorted `events` squeezed if they last at least `squeeze` µs (`None`: never).
    pub(super) fn new(
        start: f64,
        end: f64,
        x0: f64,
        x1: f64,
        events: &[f64],
        squeeze: Option<f64>,
    ) -> Self {
        let width = x1 - x0;
        let mut gaps = match squeeze {
            Some(least) => idle(start, end, width, events, least),
            None => Vec::new(),
        };
        let scale = |gaps: &[(f64, f64)]| {
            let squeezed: f64 = gaps.iter().map(|(a, b)| b - a).sum();
            (width - GAP_PX * gaps.len() as f64) / (end - start - squeezed)
        };
        // Each band stops short of the events on either side, so an event between two
        // bands keeps some room and does not sit on their shared edge. That room is
        // taken from the bands, so the scale only drops a little.
        // Whole microseconds, as every event is: the breakpoints stay exact numbers.
        let room = (EVENT_ROOM_PX / scale(&gaps)).ceil();
        gaps.retain(|(a, b)| b - a > 2.0 * room + 1.0);
        for gap in &mut gaps {
            *gap = (gap.0 + room, gap.1 - room);
        }
        let scale = scale(&gaps);
        let mut points = vec![(start, x0)];
        let mut x = x0;
        let mut t = start;
        for &(a, b) in &gaps {
            x += (a - t) * scale;
            points.push((a, x));
            x += GAP_PX;
            points.push((b, x));
            t = b;
        }
        points.push((end, x1));
        Timeline {
            points,
            gaps,
            scale,
        }
    }

    /// The x of time `t` (µs), clamped to the window.
    pub(super) fn x(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        if i == 0 {
            return self.points[0].1;
        }
        if i == self.points.len() {
            return self.points[i - 1].1;
        }
        let ((ta, xa), (tb, xb)) = (self.points[i - 1], self.points[i]);
        xa + (t - ta) / (tb - ta) * (xb - xa)
    }

    /// The breakpoints, for the root element (a tool can map any time with them).
    pub(super) fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The squeezed stretches, `(from, to)` in µs.
    pub(super) fn gaps(&self) -> &[(f64, f64)] {
        &self.gaps
    }

    /// Pixels per µs outside the gaps.
    pub(super) fn scale(&self) -> f64 {
        self.scale
    }

    /// The unsqueezed pieces, `(from, to)` in µs.
    pub(super) fn pieces(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut t = self.points[0].0;
        for &(a, b) in &self.gaps {
            out.push((t, a));
            t = b;
        }
        out.push((t, self.points[self.points.len() - 1].0));
        out
    }
}

/// The idle stretches worth squeezing: the longest gaps between events (the window's
/// ends count as events), each at least `least` long, that would each still be wider
/// than three squeezed bands, and
/// than [`MIN_SHARE`] of the width, at the scale left once they and every longer one
/// are squeezed. A short one is left alone: a band costs the reader more than it saves.
fn idle(start: f64, end: f64, width: f64, events: &[f64], least: f64) -> Vec<(f64, f64)> {
    let mut stops: Vec<f64> = events
        .iter()
        .copied()
        .filter(|t| *t > start && *t < end)
        .collect();
    stops.insert(0, start);
    stops.push(end);
    let mut candidates: Vec<(f64, f64)> = stops
        .windows(2)
        .map(|w| (w[0], w[1]))
        .filter(|(a, b)| b - a >= least)
        .collect();
    // Longest first; equal lengths earliest first, so the choice is reproducible.
    candidates.sort_by(|a, b| {
        (b.1 - b.0)
            .total_cmp(&(a.1 - a.0))
            .then(a.0.total_cmp(&b.0))
    });
    let mut chosen: Vec<(f64, f64)> = Vec::new();
    let mut squeezed = 0.0;
    for (a, b) in candidates.into_iter().take(MAX_GAPS) {
        let n = chosen.len() as f64 + 1.0;
        let scale = (width - GAP_PX * n) / (end - start - squeezed - (b - a));
        if !scale.is_finite()
            || scale <= 0.0
            || (b - a) * scale < (3.0 * GAP_PX).max(MIN_SHARE * width)
        {
            break;
        }
        chosen.push((a, b));
        squeezed += b - a;
    }
    chosen.sort_by(|a, b| a.0.total_cmp(&b.0));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_busy_time_stays_linear() {
        let events: Vec<f64> = (0..100).map(|i| f64::from(i) * 10.0).collect();
        let t = Timeline::new(0.0, 1000.0, 100.0, 1100.0, &events, Some(0.0));
        assert!(t.gaps().is_empty());
        assert_eq!(t.x(250.0), 350.0);
        assert_eq!(t.x(-5.0), 100.0);
        assert_eq!(t.x(2000.0), 1100.0);
    }

    #[test]
    fn a_long_idle_stretch_is_squeezed_and_the_rest_keeps_one_scale() {
        // Busy 0..100, idle to 900, busy 900..1000.
        let mut events: Vec<f64> = (0..=10).map(|i| f64::from(i) * 10.0).collect();
        events.extend((90..=100).map(|i| f64::from(i) * 10.0));
        let t = Timeline::new(0.0, 1000.0, 0.0, 1000.0, &events, Some(0.0));
        let room = (EVENT_ROOM_PX / ((1000.0 - GAP_PX) / 200.0)).ceil();
        assert_eq!(t.gaps(), &[(100.0 + room, 900.0 - room)]);
        let scale = (1000.0 - GAP_PX) / (200.0 + 2.0 * room);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(near(t.scale(), scale));
        assert!(near(t.x(50.0), 50.0 * scale));
        assert!(near(t.x(100.0 + room), (100.0 + room) * scale));
        assert!(near(t.x(900.0), (100.0 + 2.0 * room) * scale + GAP_PX));
        assert!(near(t.x(950.0), (150.0 + 2.0 * room) * scale + GAP_PX));
        assert_eq!(
            t.pieces(),
            vec![(0.0, 100.0 + room), (900.0 - room, 1000.0)]
        );
        // Without squeezing, plain linear.
        let flat = Timeline::new(0.0, 1000.0, 0.0, 1000.0, &events, None);
        assert_eq!(flat.x(500.0), 500.0);
    }

    #[test]
    fn the_map_only_goes_right() {
        let events = [3.0, 4.0, 400.0, 401.0, 402.0, 9000.0, 9100.0, 20000.0];
        let t = Timeline::new(0.0, 30000.0, 50.0, 1050.0, &events, Some(0.0));
        assert!(!t.gaps().is_empty());
        let mut last = f64::MIN;
        for i in 0..=3000 {
            let x = t.x(f64::from(i) * 10.0);
            assert!(x >= last, "{i}");
            last = x;
        }
        assert_eq!(t.x(30000.0), 1050.0);
    }

    #[test]
    fn stretches_shorter_than_asked_stay() {
        let events = [0.0, 100.0, 900.0, 1000.0];
        let t = Timeline::new(0.0, 1000.0, 0.0, 1000.0, &events, Some(801.0));
        assert!(t.gaps().is_empty());
        let t = Timeline::new(0.0, 1000.0, 0.0, 1000.0, &events, Some(800.0));
        assert_eq!(t.gaps().len(), 1);
    }
}
