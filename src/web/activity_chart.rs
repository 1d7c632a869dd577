//! The overview's activity chart: deliveries, retries and dead letters per
//! minute of one queue family, as inline SVG (no JavaScript, no image
//! request). Private to the overview until the generic SVG helpers of
//! `chart.rs` arrive.

use std::fmt::Write as _;

use maud::{Markup, html};

use crate::queue::activity::Counts;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 130.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 20.0;

/// A line: its label, its colour, and the count it plots.
type Line = (&'static str, &'static str, fn(&Counts) -> u64);

/// The three lines.
const LINES: [Line; 3] = [
    ("deliveries", "#2563eb", |c| c.delivered),
    ("retries", "#d97706", |c| c.retried),
    ("dead letters", "#dc2626", |c| c.dead),
];

/// The legend shown once above the charts.
pub fn legend() -> Markup {
    html! {
        p.muted {
            @for (label, colour, _) in LINES {
                span style={ "color:" (colour) } { "■ " } (label) " "
            }
            " per minute"
        }
    }
}

/// One queue family's chart over `series` (one entry per minute, oldest
/// first, the last being the current minute).
pub fn render(queue: &str, series: &[Counts]) -> Markup {
    let n = series.len();
    let max = series
        .iter()
        .flat_map(|c| LINES.iter().map(move |(_, _, get)| get(c)))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: u64| TOP + plot_h * (1.0 - v as f64 / max as f64);
    let hours = n / 60;
    let summary = format!(
        "{queue}: {} deliveries, {} retries, {} dead letters in the last {} minutes",
        series.iter().map(|c| c.delivered).sum::<u64>(),
        series.iter().map(|c| c.retried).sum::<u64>(),
        series.iter().map(|c| c.dead).sum::<u64>(),
        n
    );
    html! {
        svg.activity width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            role="img" aria-label=(summary) xmlns="http://www.w3.org/2000/svg" {
            title { (summary) }
            line x1=(LEFT) y1=(y(0)) x2=(WIDTH - RIGHT) y2=(y(0)) stroke="#999" stroke-width="1" {}
            line x1=(LEFT) y1=(y(max)) x2=(WIDTH - RIGHT) y2=(y(max)) stroke="#ddd" stroke-width="1" {}
            text x=(LEFT - 4.0) y=(y(max) + 4.0) text-anchor="end" font-size="11" { (max) }
            text x=(LEFT - 4.0) y=(y(0) + 4.0) text-anchor="end" font-size="11" { "0" }
            @for h in 0..=hours {
                @let i = (h * 60).min(n.saturating_sub(1));
                text x=(x(i)) y=(HEIGHT - 4.0) text-anchor="middle" font-size="11" {
                    @if h == hours { "now" } @else { "−" (hours - h) " h" }
                }
            }
            @for (label, colour, get) in LINES {
                polyline fill="none" stroke=(colour) stroke-width="1.5"
                    points=(points(series, get, &x, &y)) { title { (label) } }
            }
        }
    }
}

fn points(
    series: &[Counts],
    get: fn(&Counts) -> u64,
    x: &impl Fn(usize) -> f64,
    y: &impl Fn(u64) -> f64,
) -> String {
    let mut s = String::with_capacity(series.len() * 12);
    for (i, c) in series.iter().enumerate() {
        let _ = write!(s, "{:.1},{:.1} ", x(i), y(get(c)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scale_to_the_largest_count() {
        let mut series = vec![Counts::default(); 180];
        series[179].delivered = 10;
        series[0].dead = 5;
        let svg = render("lark", &series).into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(
            svg.contains(">10</text>"),
            "the top label is the max: {svg}"
        );
        assert!(svg.contains("−3 h") && svg.contains("now"));
        // The last delivery point is on the top line, the first on the axis.
        assert!(svg.contains(&format!("{:.1},{:.1} \"", WIDTH - RIGHT, TOP)));
        assert!(svg.contains("10 deliveries, 0 retries, 5 dead letters"));
    }
}
