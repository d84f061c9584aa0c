//! The one shape every part of the benchmark returns: a titled table (printed side by
//! side and written to JSON as is) plus the issue-14 targets it can judge, each with the
//! measured figure and by how much it misses. Figures are never hard-coded here: a
//! target only compares numbers a part measured in this run.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// One table of results.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    /// Short name, also the subcommand (`headers`, `rate`, ...).
    pub name: String,
    /// What the table shows and how it was measured, one line.
    pub title: String,
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows; each as long as `columns`. Numbers stay numbers in the JSON.
    pub rows: Vec<Vec<Value>>,
    /// Issue 14 targets judged from these rows.
    pub targets: Vec<Target>,
    /// Caveats worth reading next to the figures.
    pub notes: Vec<String>,
}

impl Section {
    /// An empty table with these columns.
    pub fn new(name: &str, title: impl Into<String>, columns: &[&str]) -> Section {
        Section {
            name: name.to_owned(),
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row; a row of the wrong width is a bug in the part, so it is padded
    /// or cut rather than breaking the table.
    pub fn row(&mut self, mut cells: Vec<Value>) {
        cells.resize(self.columns.len(), Value::Null);
        self.rows.push(cells);
    }

    /// The table as aligned text, then the targets and notes.
    pub fn render(&self) -> String {
        let text: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                text.iter()
                    .map(|r| r[i].len())
                    .chain([self.columns[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!("== {}: {}\n", self.name, self.title);
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let _ = writeln!(out, "{}", line(&self.columns));
        let _ = writeln!(
            out,
            "{}",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-+-")
        );
        for r in &text {
            let _ = writeln!(out, "{}", line(r));
        }
        for t in &self.targets {
            let _ = writeln!(out, "target: {}", t.line());
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// How a number prints in a table: integers plainly, others with 2 decimals (3
/// significant digits below 1).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) if f.abs() < 1.0 && f != 0.0 => format!("{f:.3}"),
            (_, _, Some(f)) => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A number cell; NaN and infinities (an empty measurement) become null.
pub fn num(x: f64) -> Value {
    // Whole numbers (counts, sizes) stay integers in the table and the JSON.
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return Value::from(x as i64);
    }
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A text cell.
pub fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

/// Which way a target points.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum Goal {
    /// The measured value must be at most the target.
    AtMost,
    /// The measured value must be at least the target.
    AtLeast,
}

/// One issue-14 target checked against this run.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The target as the issue states it.
    pub what: String,
    /// Measured value (None if this run did not measure it, e.g. a part at tiny size).
    pub measured: Option<f64>,
    /// The bound.
    pub bound: f64,
    /// Unit of both.
    pub unit: String,
    /// Direction.
    pub goal: Goal,
    /// Whether it is met.
    pub met: Option<bool>,
}

impl Target {
    /// Judges `measured` against `bound`.
    pub fn new(
        what: impl Into<String>,
        measured: Option<f64>,
        goal: Goal,
        bound: f64,
        unit: &str,
    ) -> Target {
        let measured = measured.filter(|m| m.is_finite());
        let met = measured.map(|m| match goal {
            Goal::AtMost => m <= bound,
            Goal::AtLeast => m >= bound,
        });
        Target {
            what: what.into(),
            measured,
            bound,
            unit: unit.to_owned(),
            goal,
            met,
        }
    }

    /// `what: measured X unit -> met` or `-> NOT met by D unit (Rx)`.
    pub fn line(&self) -> String {
        let Some(m) = self.measured else {
            return format!("{}: not measured in this run", self.what);
        };
        let verdict = if self.met == Some(true) {
            "met".to_owned()
        } else {
            let by = (m - self.bound).abs();
            let ratio = if self.bound != 0.0 {
                m / self.bound
            } else {
                f64::INFINITY
            };
            format!("NOT met by {by:.2} {} ({ratio:.2}x the bound)", self.unit)
        };
        format!("{}: measured {m:.3} {} -> {verdict}", self.what, self.unit)
    }
}

/// Median of `xs` (NaN if empty); sorts a copy.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_judge_both_directions() {
        assert_eq!(
            Target::new("x", Some(3.0), Goal::AtMost, 5.0, "B").met,
            Some(true)
        );
        assert_eq!(
            Target::new("x", Some(6.0), Goal::AtMost, 5.0, "B").met,
            Some(false)
        );
        assert_eq!(
            Target::new("x", Some(0.5), Goal::AtLeast, 1.0, "x").met,
            Some(false)
        );
        assert_eq!(Target::new("x", None, Goal::AtLeast, 1.0, "x").met, None);
        assert!(
            Target::new("x", Some(6.0), Goal::AtMost, 5.0, "B")
                .line()
                .contains("NOT met by 1.00 B")
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rows_render_aligned() {
        let mut s = Section::new("t", "test", &["a", "bb"]);
        s.row(vec![text("x"), num(1.5)]);
        s.row(vec![num(0.25)]);
        let r = s.render();
        assert!(
            r.contains("1.50") && r.contains("0.250") && r.contains(" -"),
            "{r}"
        );
    }
}
