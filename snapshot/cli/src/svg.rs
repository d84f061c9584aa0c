//! SVG percentile plots (latency against percentile on a log "nines" axis), drawn with
//! plotters' SVG backend so no system font library is needed.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Draws one line per `(label, histogram)`: x = percentile as "nines"
/// (`-log10(1 - p)`, so 90% -> 1, 99% -> 2, 99.9% -> 3), y = latency in milliseconds.
pub fn write_percentile_svg(
    path: &Path,
    title: &str,
    series: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];
    let curves: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().map(|(label, h)| (*label, curve(h))).collect();
    let max_x = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(2.0f64, f64::max)
        .min(6.0);
    let max_y = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| nines_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Points `(nines, ms)` of a histogram's percentile curve: the `.hgrm` rows below 100%.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    shutter_snapshot::report::percentile_steps(h, 5)
        .into_iter()
        .filter(|s| s.level < 100.0)
        .map(|s| (-(1.0 - s.level / 100.0).log10(), s.value as f64 / 1000.0))
        .collect()
}

fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p < 99.0 {
        format!("{p:.0}%")
    } else {
        let digits = format!("{p:.4}");
        format!("{}%", digits.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shutter_snapshot::report::new_histogram;

    #[test]
    fn writes_well_formed_svg() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=5000u64 {
            a.record(v * 3).unwrap();
            b.record(v * 11).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("shutter-svg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.svg");
        write_percentile_svg(&path, "latency", &[("delivery", &a), ("snapshot", &b)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains("<polyline"), "lines drawn");
        assert!(text.contains("delivery"), "legend present");
        if std::env::var_os("SHUTTER_KEEP_SVG").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn nines_axis_labels() {
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
