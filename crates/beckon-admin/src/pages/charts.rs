//! Charts drawn on the server as SVG: lift over time with its interval band, an interval
//! against zero, and bars over time. No script and no chart library: the page is complete
//! when it arrives, prints, and reads the same with scripts off. Every number is formatted
//! here and every label escaped, so nothing a person typed reaches the markup raw.

use std::fmt::Write as _;

/// Width and height of a time chart's drawing area, in SVG units.
const W: f64 = 640.0;
const H: f64 = 180.0;
/// Margins: left (the y labels), right, top, bottom (the x labels).
const ML: f64 = 48.0;
const MR: f64 = 12.0;
const MT: f64 = 10.0;
const MB: f64 = 24.0;

/// One instant of a series: its label, the estimate and its interval (all optional: an
/// instant before both arms have visitors has none).
#[derive(Clone, Debug)]
pub struct BandPoint {
    /// The x label (a date or a time).
    pub label: String,
    /// The estimate.
    pub mid: Option<f64>,
    /// The interval's lower end.
    pub low: Option<f64>,
    /// Its upper end.
    pub high: Option<f64>,
}

/// Escapes text for SVG or HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A percentage with its sign, for relative lifts (`+12.3%`).
pub fn signed_pct(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 {
            "+∞".into()
        } else {
            "−∞".into()
        };
    }
    let v = x * 100.0;
    if v.abs() >= 100.0 {
        format!("{v:+.0}%")
    } else {
        format!("{v:+.1}%")
    }
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// A "nice" step for an axis spanning `span`.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 4.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

/// Lift over time: the estimate as a line, its interval as a band, and zero marked. Bounds
/// beyond ±`clip` (relative) are drawn at the edge, so that one wild early interval does not
/// flatten the rest. `title` names the chart for screen readers.
pub fn band_chart(points: &[BandPoint], clip: f64, title: &str) -> String {
    let xs = points.len().max(2) as f64 - 1.0;
    let x = |i: usize| ML + (W - ML - MR) * i as f64 / xs;
    let clipped = |v: f64| v.clamp(-clip, clip);
    let mut lo: f64 = 0.0;
    let mut hi: f64 = 0.0;
    for p in points {
        for v in [p.mid, p.low, p.high].into_iter().filter_map(finite) {
            lo = lo.min(clipped(v));
            hi = hi.max(clipped(v));
        }
    }
    if hi - lo < 0.02 {
        hi += 0.01;
        lo -= 0.01;
    }
    let step = nice_step(hi - lo);
    lo = (lo / step).floor() * step;
    hi = (hi / step).ceil() * step;
    let y = |v: f64| MT + (H - MT - MB) * (hi - clipped(v)) / (hi - lo);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    // Grid and y labels.
    let mut v = lo;
    while v <= hi + step / 2.0 {
        let yy = y(v);
        let zero = v.abs() < step / 2.0;
        let _ = write!(
            svg,
            r#"<line class="{}" x1="{ML}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            if zero { "zero" } else { "grid" },
            W - MR,
            ML - 6.0,
            yy + 4.0,
            esc(&signed_pct(v))
        );
        v += step;
    }
    // The band: upper edge left to right, lower edge back, for each run of points that have
    // an interval.
    for run in runs(points, |p| {
        finite(p.low).is_some() && finite(p.high).is_some()
    }) {
        let mut d = String::new();
        for &i in &run {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if d.is_empty() { "M" } else { "L" },
                x(i),
                y(points[i].high.unwrap_or(0.0))
            );
        }
        for &i in run.iter().rev() {
            let _ = write!(d, "L{:.1},{:.1} ", x(i), y(points[i].low.unwrap_or(0.0)));
        }
        let _ = write!(svg, r#"<path class="band" d="{}Z"/>"#, d.trim_end());
    }
    for run in runs(points, |p| finite(p.mid).is_some()) {
        let mut d = String::new();
        for &i in &run {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if d.is_empty() { "M" } else { "L" },
                x(i),
                y(points[i].mid.unwrap_or(0.0))
            );
        }
        let _ = write!(svg, r#"<path class="line" d="{}"/>"#, d.trim_end());
        if let Some(&last) = run.last() {
            let _ = write!(
                svg,
                r#"<circle class="dot" cx="{:.1}" cy="{:.1}" r="3"/>"#,
                x(last),
                y(points[last].mid.unwrap_or(0.0))
            );
        }
    }
    x_labels(&mut svg, points.iter().map(|p| p.label.as_str()), x);
    svg.push_str("</svg>");
    svg
}

/// Runs of consecutive indices whose points pass `keep`.
fn runs(points: &[BandPoint], keep: impl Fn(&BandPoint) -> bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if keep(p) {
            current.push(i);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The first, middle and last labels under the drawing area.
fn x_labels<'a>(svg: &mut String, labels: impl Iterator<Item = &'a str>, x: impl Fn(usize) -> f64) {
    let labels: Vec<&str> = labels.collect();
    let n = labels.len();
    let mut shown = vec![0, n / 2, n.saturating_sub(1)];
    shown.dedup();
    for i in shown.into_iter().filter(|&i| i < n) {
        let anchor = if i == 0 {
            "start"
        } else if i + 1 == n {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x(i),
            H - 6.0,
            esc(labels[i])
        );
    }
}

/// An interval against zero, as one row: the fixed-horizon interval as a bar with its
/// estimate, the always-valid one as a thinner bar around it. The scale runs from
/// −`span` to +`span`, and bounds beyond it end in an arrow.
pub fn interval(
    mid: f64,
    fixed: (f64, f64),
    always: Option<(f64, f64)>,
    span: f64,
    title: &str,
) -> String {
    const IW: f64 = 240.0;
    const IH: f64 = 28.0;
    let x = |v: f64| {
        let v = if v.is_finite() {
            v
        } else {
            v.signum() * span * 2.0
        };
        (IW / 2.0 + (IW / 2.0 - 8.0) * v.clamp(-span * 1.02, span * 1.02) / span)
            .clamp(2.0, IW - 2.0)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="interval" viewBox="0 0 {IW} {IH}" role="img" aria-label="{}"><title>{}</title><line class="zero" x1="{:.1}" x2="{:.1}" y1="2" y2="{}"/>"#,
        esc(title),
        esc(title),
        IW / 2.0,
        IW / 2.0,
        IH - 2.0
    );
    if let Some((lo, hi)) = always {
        let _ = write!(
            svg,
            r#"<line class="always" x1="{:.1}" x2="{:.1}" y1="{}" y2="{}"/>"#,
            x(lo),
            x(hi),
            IH / 2.0,
            IH / 2.0
        );
    }
    let (lo, hi) = fixed;
    let class = if lo > 0.0 {
        "fixed up"
    } else if hi < 0.0 {
        "fixed down"
    } else {
        "fixed"
    };
    let _ = write!(
        svg,
        r#"<rect class="{class}" x="{:.1}" y="{}" width="{:.1}" height="8" rx="2"/><circle class="dot" cx="{:.1}" cy="{}" r="4"/></svg>"#,
        x(lo),
        IH / 2.0 - 4.0,
        (x(hi) - x(lo)).max(1.0),
        x(mid),
        IH / 2.0
    );
    svg
}

/// Bars over time (money, calls): one per step, with its value on hover.
pub fn bars(values: &[(String, f64)], unit: &str, title: &str) -> String {
    let max = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let n = values.len().max(1) as f64;
    let slot = (W - ML - MR) / n;
    let y = |v: f64| MT + (H - MT - MB) * (1.0 - v / top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = top * frac;
        let _ = write!(
            svg,
            r#"<line class="{}" x1="{ML}" x2="{}" y1="{:.1}" y2="{:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            if frac == 0.0 { "zero" } else { "grid" },
            W - MR,
            y(v),
            y(v),
            ML - 6.0,
            y(v) + 4.0,
            esc(&short(v))
        );
    }
    for (i, (label, v)) in values.iter().enumerate() {
        let h = (y(0.0) - y(*v)).max(if *v > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>{}: {} {}</title></rect>"#,
            ML + slot * i as f64 + slot * 0.15,
            y(0.0) - h,
            (slot * 0.7).max(1.0),
            esc(label),
            esc(&short(*v)),
            esc(unit)
        );
    }
    x_labels(&mut svg, values.iter().map(|(l, _)| l.as_str()), |i| {
        ML + slot * i as f64 + slot / 2.0
    });
    svg.push_str("</svg>");
    svg
}

/// A number in few characters (`0.042`, `3.1`, `12k`).
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".to_owned()
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, mid: Option<f64>, low: Option<f64>, high: Option<f64>) -> BandPoint {
        BandPoint {
            label: label.into(),
            mid,
            low,
            high,
        }
    }

    #[test]
    fn a_band_chart_draws_the_band_the_line_and_zero_and_escapes_labels() {
        let points = vec![
            p("<b>", None, None, None),
            p("b", Some(0.1), Some(-0.2), Some(0.4)),
            p("c", Some(0.12), Some(-0.05), Some(0.3)),
            p("d", Some(0.11), Some(f64::NEG_INFINITY), Some(9.0)),
        ];
        let svg = band_chart(&points, 1.0, "Lift \"over\" time");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"class="band""#), "{svg}");
        assert!(svg.contains(r#"class="line""#));
        assert!(svg.contains(r#"class="zero""#), "zero is marked");
        assert!(
            svg.contains("&lt;b&gt;") && !svg.contains("<b>"),
            "labels are escaped"
        );
        assert!(svg.contains("Lift &quot;over&quot; time"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn an_interval_is_coloured_by_which_side_of_zero_it_is() {
        assert!(interval(0.2, (0.1, 0.3), Some((0.0, 0.4)), 0.5, "x").contains("fixed up"));
        assert!(interval(-0.2, (-0.3, -0.1), None, 0.5, "x").contains("fixed down"));
        let straddles = interval(0.0, (-0.1, 0.1), None, 0.5, "x");
        assert!(straddles.contains(r#"class="fixed""#));
        let wild = interval(0.0, (f64::NEG_INFINITY, f64::INFINITY), None, 0.5, "x");
        assert!(!wild.contains("NaN") && !wild.contains("inf"), "{wild}");
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bars(
            &[("a".into(), 1.0), ("b".into(), 0.0), ("c".into(), 4.0)],
            "USD",
            "Cost",
        );
        assert_eq!(svg.matches(r#"class="bar""#).count(), 3);
        assert!(svg.contains("c: 4.00 USD"));
        assert!(
            bars(&[], "USD", "Cost").ends_with("</svg>"),
            "empty still draws"
        );
    }

    #[test]
    fn percentages_carry_their_sign() {
        assert_eq!(signed_pct(0.123), "+12.3%");
        assert_eq!(signed_pct(-0.05), "-5.0%");
        assert_eq!(signed_pct(2.5), "+250%");
        assert_eq!(signed_pct(f64::INFINITY), "+∞");
    }
}
