//! Charts as SVG drawn on the server: hourly bars, hourly ranges, and a temperature
//! curve with its band and the hold band. No script, no inline style (colours come
//! from the style sheet through classes), so the page's CSP stays strict.
use maud::{Markup, html};

const W: f64 = 720.0;
const H: f64 = 200.0;
/// Room for the axis labels.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 10.0;

const HOUR_MS: i64 = 3_600_000;

/// The hours a chart spans: `hours` hours from `from_ms`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hours {
    pub(super) from_ms: i64,
    pub(super) hours: usize,
}

impl Hours {
    fn slot(&self) -> f64 {
        (W - LEFT) / self.hours.max(1) as f64
    }

    /// The left edge of the hour starting at `ms`; `None` outside the window.
    fn x(&self, ms: i64) -> Option<f64> {
        let i = (ms - self.from_ms).div_euclid(HOUR_MS);
        (0..self.hours as i64)
            .contains(&i)
            .then(|| LEFT + i as f64 * self.slot())
    }
}

/// The y of `value` on a scale from `lo` (bottom) to `hi` (top).
fn y(value: f64, lo: f64, hi: f64) -> f64 {
    let span = if hi > lo { hi - lo } else { 1.0 };
    H - BOTTOM - (value - lo) / span * (H - BOTTOM - TOP)
}

fn frame(title: &str, hours: Hours, lo: f64, hi: f64, class: &str, body: Markup) -> Markup {
    let label = |ms: i64| super::china_time(ms).get(11..16).unwrap_or_default().to_string();
    let last = hours.from_ms + (hours.hours as i64 - 1).max(0) * HOUR_MS;
    html! {
        figure.chart {
            figcaption { (title) }
            svg class={ "chart " (class) } viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.tick x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (fmt(hi)) }
                text.tick x=(LEFT - 4.0) y=(H - BOTTOM) text-anchor="end" { (fmt(lo)) }
                text.tick x=(LEFT) y=(H - 4.0) { (label(hours.from_ms)) }
                text.tick x=(W) y=(H - 4.0) text-anchor="end" { (label(last)) }
                (body)
            }
        }
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One bar per hour (`(hour start, value)`).
pub(super) fn bars(title: &str, hours: Hours, points: &[(i64, f64)], class: &str) -> Markup {
    let hi = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let w = hours.slot() * 0.8;
    let body = html! {
        @for (ms, value) in points {
            @if let Some(x) = hours.x(*ms) {
                rect.bar x=(x) y=(y(*value, 0.0, hi)) width=(w) height=(H - BOTTOM - y(*value, 0.0, hi)) {
                    title { (super::china_time(*ms)) ": " (fmt(*value)) }
                }
            }
        }
    };
    frame(title, hours, 0.0, hi, class, body)
}

/// One range per hour (`(hour start, low, high)`), e.g. the floors a lift served.
pub(super) fn ranges(title: &str, hours: Hours, points: &[(i64, f64, f64)], class: &str) -> Markup {
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let hi = points.iter().map(|p| p.2).fold(0.0, f64::max).max(lo + 1.0);
    let w = hours.slot() * 0.6;
    let body = html! {
        @for (ms, low, high) in points {
            @if let Some(x) = hours.x(*ms) {
                rect.range x=(x) y=(y(*high, lo, hi)) width=(w) height=((y(*low, lo, hi) - y(*high, lo, hi)).max(2.0)) {
                    title { (super::china_time(*ms)) ": " (fmt(*low)) "–" (fmt(*high)) }
                }
            }
        }
    };
    frame(title, hours, lo, hi, class, body)
}

/// A temperature curve (`(hour start, min, mean, max)`): the mean as a line, min to max
/// as a band, and the hold band (at or above the method's minimum) shaded.
pub(super) fn temperature(title: &str, hours: Hours, points: &[(i64, f64, f64, f64)], hold_min: Option<f64>) -> Markup {
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let hi = points
        .iter()
        .map(|p| p.3)
        .fold(hold_min.unwrap_or(0.0) + 10.0, f64::max);
    let half = hours.slot() / 2.0;
    let at = |ms: i64| hours.x(ms).map(|x| x + half);
    let mean: Vec<String> = points
        .iter()
        .filter_map(|(ms, _, mean, _)| at(*ms).map(|x| format!("{x:.1},{:.1}", y(*mean, lo, hi))))
        .collect();
    let band: Vec<String> = points
        .iter()
        .filter_map(|(ms, _, _, max)| at(*ms).map(|x| format!("{x:.1},{:.1}", y(*max, lo, hi))))
        .chain(
            points
                .iter()
                .rev()
                .filter_map(|(ms, min, _, _)| at(*ms).map(|x| format!("{x:.1},{:.1}", y(*min, lo, hi)))),
        )
        .collect();
    let body = html! {
        @if let Some(hold) = hold_min {
            rect.hold x=(LEFT) y=(TOP) width=(W - LEFT) height=(y(hold, lo, hi) - TOP) {}
            text.tick x=(W - 4.0) y=(y(hold, lo, hi) - 4.0) text-anchor="end" { (fmt(hold)) " °C" }
        }
        polygon.band points=(band.join(" ")) {}
        polyline.mean points=(mean.join(" ")) {}
        @for (ms, _, mean, _) in points {
            @if let Some(x) = at(*ms) {
                circle.point cx=(x) cy=(y(*mean, lo, hi)) r="2" { title { (super::china_time(*ms)) ": " (fmt(*mean)) " °C" } }
            }
        }
    };
    frame(title, hours, lo, hi, "temperature", body)
}

/// Horizontal bars, one per label, longest first as given.
pub(super) fn hbars(title: &str, rows: &[(String, f64)], class: &str) -> Markup {
    const ROW: f64 = 22.0;
    const LABEL: f64 = 160.0;
    let hi = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let height = ROW * rows.len().max(1) as f64;
    html! {
        figure.chart {
            figcaption { (title) }
            svg class={ "chart " (class) } viewBox={ "0 0 " (W) " " (height) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                @for (i, (label, value)) in rows.iter().enumerate() {
                    text.tick x=(LABEL - 6.0) y=(i as f64 * ROW + 15.0) text-anchor="end" { (label) }
                    rect.bar x=(LABEL) y=(i as f64 * ROW + 3.0) width=((value / hi * (W - LABEL - 50.0)).max(1.0)) height=(ROW - 6.0) {}
                    text.tick x=(LABEL + (value / hi * (W - LABEL - 50.0)).max(1.0) + 4.0) y=(i as f64 * ROW + 15.0) { (fmt(*value)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fall_in_their_hour_and_outside_ones_are_left_out() {
        let hours = Hours { from_ms: 0, hours: 24 };
        let svg = bars(
            "t",
            hours,
            &[(0, 4.0), (HOUR_MS * 23, 2.0), (HOUR_MS * 30, 9.0)],
            "trips",
        )
        .into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2, "{svg}");
        assert!(svg.contains("<svg class=\"chart trips\""));
        let svg = temperature("t", hours, &[(0, 20.0, 60.0, 101.0)], Some(100.0)).into_string();
        assert!(svg.contains("class=\"hold\"") && svg.contains("100 °C"), "{svg}");
    }
}
