//! A tiny SVG text writer: elements with attributes, text, and the escaping that keeps
//! any label (a user's title included) from breaking the document.

use std::fmt::Write;

/// The document being written, as text.
pub(super) struct Svg {
    out: String,
}

/// An attribute value: text (escaped when written) or a coordinate.
#[derive(Clone, Copy)]
pub(super) enum Value<'a> {
    Text(&'a str),
    Num(f64),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(s)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Self {
        Value::Text(s)
    }
}

impl From<f64> for Value<'_> {
    fn from(x: f64) -> Self {
        Value::Num(x)
    }
}

impl Svg {
    /// A document of `width` by `height` pixels; `attrs` go on the root element.
    pub(super) fn new(width: f64, height: f64, attrs: &[(&str, Value<'_>)]) -> Svg {
        let mut svg = Svg { out: String::new() };
        let (w, h) = (num(width), num(height));
        svg.out.push_str(&format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\""
        ));
        svg.attrs(attrs);
        svg.out.push_str(">\n");
        svg
    }

    /// An empty element: `<name attrs/>`.
    pub(super) fn leaf(&mut self, name: &str, attrs: &[(&str, Value<'_>)]) {
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.no_outline(matches!(name, "rect" | "polygon" | "circle"), attrs);
        self.out.push_str("/>\n");
    }

    /// `<line>` from `a` to `b` with its stroke colour and width, then `extra` attributes.
    pub(super) fn line(
        &mut self,
        a: (f64, f64),
        b: (f64, f64),
        stroke: &str,
        width: f64,
        extra: &[(&str, Value<'_>)],
    ) {
        let mut attrs = vec![
            ("x1", a.0.into()),
            ("y1", a.1.into()),
            ("x2", b.0.into()),
            ("y2", b.1.into()),
            ("stroke", stroke.into()),
            ("stroke-width", width.into()),
        ];
        attrs.extend_from_slice(extra);
        self.leaf("line", &attrs);
    }

    /// Opens `<name attrs>`; every `open` needs its `close`.
    pub(super) fn open(&mut self, name: &str, attrs: &[(&str, Value<'_>)]) {
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str(">\n");
    }

    pub(super) fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// `<text attrs>body</text>`, the body escaped.
    pub(super) fn text(&mut self, attrs: &[(&str, Value<'_>)], body: &str) {
        self.out.push_str("<text");
        self.attrs(attrs);
        self.no_outline(true, attrs);
        self.out.push('>');
        escape_into(&mut self.out, body);
        self.out.push_str("</text>\n");
    }

    /// The finished document.
    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }

    /// Says `stroke="none"` on a filled shape or text that names no stroke: SVG's default,
    /// but ImageMagick's own renderer outlines them in black unless told, which makes
    /// text heavy and arrowheads blotchy.
    fn no_outline(&mut self, filled: bool, attrs: &[(&str, Value<'_>)]) {
        if filled && !attrs.iter().any(|(name, _)| *name == "stroke") {
            self.out.push_str(" stroke=\"none\"");
        }
    }

    fn attrs(&mut self, attrs: &[(&str, Value<'_>)]) {
        for (name, value) in attrs {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push_str("=\"");
            match value {
                Value::Text(s) => escape_into(&mut self.out, s),
                Value::Num(x) => self.out.push_str(&num(*x)),
            }
            self.out.push('"');
        }
    }
}

/// A coordinate with one decimal at most (finer is invisible and only makes the file
/// bigger); always the same text for the same number, so output is reproducible.
pub(super) fn num(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        // `-0` would read oddly; it is 0.
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Points of a polyline or polygon: `x,y x,y ...`.
pub(super) fn points(pts: &[(f64, f64)]) -> String {
    let mut s = String::new();
    for (i, (x, y)) in pts.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{},{}", num(*x), num(*y));
    }
    s
}

/// Escapes `s` for XML text and attribute values. Characters XML 1.0 cannot carry at
/// all (most control characters) become U+FFFD: escaping cannot make them legal, and a
/// title with a stray byte must not make the whole picture unreadable.
pub(super) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_illegal_characters() {
        let mut s = String::new();
        escape_into(&mut s, "a<b & \"c\" 'd'>\u{1}");
        assert_eq!(s, "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\u{FFFD}");
    }

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(3.04), "3");
        assert_eq!(num(3.06), "3.1");
        assert_eq!(num(-0.01), "0");
        assert_eq!(points(&[(1.0, 2.5), (3.25, 4.0)]), "1,2.5 3.3,4");
    }

    #[test]
    fn documents_nest() {
        let mut svg = Svg::new(10.0, 20.0, &[("class", "x&y".into())]);
        svg.open("g", &[]);
        svg.leaf("line", &[("x1", 1.5.into())]);
        svg.text(&[], "<n0>");
        svg.close("g");
        assert_eq!(
            svg.finish(),
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"20\" \
             viewBox=\"0 0 10 20\" class=\"x&amp;y\">\n<g>\n<line x1=\"1.5\"/>\n\
             <text stroke=\"none\">&lt;n0&gt;</text>\n</g>\n</svg>\n"
        );
    }
}
