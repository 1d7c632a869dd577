//! Server-side SVG charts for the pages, written with maud (so every label
//! is escaped) and readable without JavaScript: a stacked bar chart, a
//! timeline of lanes on a time axis, and a multi-series chart per time
//! bucket. Each draws an axis, its labels and a legend, gives every mark a
//! `<title>` (the browser's tooltip), and says "no data" instead of drawing
//! an empty frame.
//!
//! Pure: no I/O, no clock. Values that are not finite are drawn as 0 and
//! never reach the SVG as `NaN`.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

/// Chart size in SVG units; the CSS scales it to the page width.
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
/// Room for the y labels (left), the legend (top) and the x labels (bottom).
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 46.0;

/// Series colours, in order (colour-blind friendly, Okabe–Ito), and the grey
/// of a series named [`OTHER`].
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];
const GREY: &str = "#b0b0b0";
/// The name of the series that gathers the rest; drawn grey.
pub const OTHER: &str = "other";

fn colour(i: usize, name: &str) -> &'static str {
    if name == OTHER {
        GREY
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// A finite value, else 0.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// An SVG coordinate: one decimal, never `NaN`.
fn n(v: f64) -> String {
    format!("{:.1}", finite(v))
}

/// A value as a label: whole numbers without decimals.
fn label(v: f64) -> String {
    let v = finite(v);
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// A round upper bound ≥ `max` (1, 2 or 5 × 10ⁿ) and its tick step, so the
/// y axis has 4–5 round ticks.
fn nice_scale(max: f64) -> (f64, f64) {
    let max = finite(max);
    if max <= 0.0 {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn plot_w() -> f64 {
    WIDTH - LEFT - RIGHT
}
fn plot_h() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// y of `v` on a 0..`max` axis.
fn y_of(v: f64, max: f64) -> f64 {
    TOP + plot_h() * (1.0 - (finite(v) / max).clamp(0.0, 1.0))
}

/// The `<svg>` element every chart is drawn in.
fn frame(class: &str, title: &str, height: f64, inner: Markup) -> Markup {
    html! {
        svg class={ "chart " (class) } xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WIDTH) " " (n(height)) } width=(WIDTH) height=(n(height))
            style="max-width: 100%; height: auto"
            font-family="system-ui, sans-serif" font-size="11" {
            title { (title) }
            (inner)
        }
    }
}

/// What a chart says when it has nothing to draw.
fn no_data(class: &str, title: &str) -> Markup {
    frame(
        class,
        title,
        HEIGHT,
        html! {
            rect x="0.5" y="0.5" width=(WIDTH - 1.0) height=(HEIGHT - 1.0) fill="#fafafa" stroke="#e4e4e4" {}
            text.no-data x=(n(WIDTH / 2.0)) y=(n(HEIGHT / 2.0)) text-anchor="middle" fill="#777" font-size="14" { "no data" }
        },
    )
}

/// The y axis: grid lines, tick labels and the axis label (rotated).
fn y_axis(max: f64, step: f64, y_label: &str) -> Markup {
    let ticks: Vec<f64> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= max + step / 1000.0)
        .collect();
    html! {
        g.y-axis {
            @for v in &ticks {
                line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(y_of(*v, max))) y2=(n(y_of(*v, max))) stroke="#e4e4e4" {}
                text x=(n(LEFT - 6.0)) y=(n(y_of(*v, max) + 4.0)) text-anchor="end" fill="#555" { (label(*v)) }
            }
            text x="12" y=(n(TOP + plot_h() / 2.0)) text-anchor="middle" fill="#555"
                transform={ "rotate(-90 12 " (n(TOP + plot_h() / 2.0)) ")" } { (y_label) }
        }
    }
}

/// The x axis label, under the tick labels.
fn x_label(x_label: &str) -> Markup {
    html! {
        line.x-axis x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(TOP + plot_h())) y2=(n(TOP + plot_h())) stroke="#888" {}
        text x=(n(LEFT + plot_w() / 2.0)) y=(n(HEIGHT - 6.0)) text-anchor="middle" fill="#555" { (x_label) }
    }
}

/// The legend: a swatch and a name per series, on rows across the top.
fn legend(names: &[&str]) -> Markup {
    // A legend entry is as wide as its name (about 6.5 units per character).
    let mut x = LEFT;
    let mut y = 14.0;
    let mut placed = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let w = 22.0 + 6.5 * name.chars().count().min(40) as f64;
        if x + w > WIDTH - RIGHT && x > LEFT {
            x = LEFT;
            y += 14.0;
        }
        placed.push((i, *name, x, y));
        x += w;
    }
    html! {
        g.legend {
            @for (i, name, x, y) in placed {
                rect x=(n(x)) y=(n(y - 9.0)) width="10" height="10" fill=(colour(i, name)) {}
                text x=(n(x + 14.0)) y=(n(y)) fill="#222" { (truncate(name, 40)) }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Every `step`-th of `count` x labels, so about 12 fit.
fn label_step(count: usize) -> usize {
    count.div_ceil(12).max(1)
}

/// Stacked bars: one bar per category (e.g. a date), each series a
/// segment, bottom to top in the order given. `series` holds one value per
/// category (missing ones count 0).
pub fn stacked_bars(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    x_title: &str,
    y_title: &str,
) -> Markup {
    let value = |s: &[f64], c: usize| finite(s.get(c).copied().unwrap_or(0.0)).max(0.0);
    let totals: Vec<f64> = (0..categories.len())
        .map(|c| series.iter().map(|(_, v)| value(v, c)).sum())
        .collect();
    let top = totals.iter().copied().fold(0.0, f64::max);
    if categories.is_empty() || series.is_empty() || top <= 0.0 {
        return no_data("stacked", title);
    }
    let (max, step) = nice_scale(top);
    let slot = plot_w() / categories.len() as f64;
    let bar = (slot * 0.75).max(1.0);
    let every = label_step(categories.len());
    let names: Vec<&str> = series.iter().map(|(s, _)| s.as_str()).collect();
    frame(
        "stacked",
        title,
        HEIGHT,
        html! {
            (y_axis(max, step, y_title))
            (legend(&names))
            @for (c, cat) in categories.iter().enumerate() {
                @let x = LEFT + slot * c as f64 + (slot - bar) / 2.0;
                g.bar {
                    title { (cat) ": " (label(totals[c])) }
                    @for (s, (name, values)) in series.iter().enumerate() {
                        @let below: f64 = series[..s].iter().map(|(_, v)| value(v, c)).sum();
                        @let v = value(values, c);
                        @if v > 0.0 {
                            rect x=(n(x)) width=(n(bar))
                                y=(n(y_of(below + v, max))) height=(n(y_of(below, max) - y_of(below + v, max)))
                                fill=(colour(s, name)) {
                                title { (cat) " · " (name) ": " (label(v)) }
                            }
                        }
                    }
                }
                @if c % every == 0 {
                    text x=(n(x + bar / 2.0)) y=(n(TOP + plot_h() + 14.0)) text-anchor="middle" fill="#555" { (cat) }
                }
            }
            (x_label(x_title))
        },
    )
}

/// A lane of a [`timeline`]: a bar over `span` and a mark at each of
/// `marks` (e.g. a run from its start to its last page, a mark per page).
#[derive(Clone, Debug)]
pub struct Lane {
    pub label: String,
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub marks: Vec<DateTime<Utc>>,
    /// What a mark is, for its tooltip (e.g. "page written").
    pub mark_name: String,
}

/// How times on an axis spanning `span` are labelled.
fn time_format(span: chrono::Duration) -> &'static str {
    let ms = span.num_milliseconds();
    if ms <= 120_000 {
        "%H:%M:%S"
    } else if ms <= 2 * 86_400_000 {
        "%H:%M"
    } else {
        "%m-%d %H:%M"
    }
}

/// Ticks at `times`, labelled in `fmt`; a label that reads like the one
/// before it is left out (within a few seconds several ticks read alike).
fn labelled(times: impl Iterator<Item = DateTime<Utc>>, fmt: &str) -> Vec<(DateTime<Utc>, String)> {
    let mut ticks: Vec<(DateTime<Utc>, String)> = Vec::new();
    for t in times {
        let text = t.format(fmt).to_string();
        if ticks.last().is_none_or(|(_, last)| *last != text) {
            ticks.push((t, text));
        }
    }
    ticks
}

/// A time axis from `from` to `to`: 6 evenly spaced ticks.
fn time_ticks(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, String)> {
    let span = (to - from).num_milliseconds().max(1);
    labelled(
        (0..=5).map(|i| from + chrono::Duration::milliseconds(span * i / 5)),
        time_format(to - from),
    )
}

/// x of `t` on the `from`..`to` axis.
fn x_of(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let span = (to - from).num_milliseconds().max(1) as f64;
    LEFT + plot_w() * ((t - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0)
}

/// The bounds of every time in `times`, widened to at least a second.
fn time_bounds(
    times: impl Iterator<Item = DateTime<Utc>>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (mut lo, mut hi): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for t in times {
        lo = Some(lo.map_or(t, |l| l.min(t)));
        hi = Some(hi.map_or(t, |h| h.max(t)));
    }
    let (lo, hi) = (lo?, hi?);
    Some(if hi - lo < chrono::Duration::seconds(1) {
        (
            lo - chrono::Duration::milliseconds(500),
            hi + chrono::Duration::milliseconds(500),
        )
    } else {
        (lo, hi)
    })
}

fn time_axis(
    ticks: Vec<(DateTime<Utc>, String)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bottom: f64,
) -> Markup {
    html! {
        g.x-ticks {
            @for (t, text) in ticks {
                line x1=(n(x_of(t, from, to))) x2=(n(x_of(t, from, to))) y1=(n(TOP)) y2=(n(bottom)) stroke="#eee" {}
                text x=(n(x_of(t, from, to))) y=(n(bottom + 14.0)) text-anchor="middle" fill="#555" { (text) }
            }
        }
    }
}

/// A timeline: one lane per row on a shared UTC time axis.
pub fn timeline(title: &str, lanes: &[Lane]) -> Markup {
    let times = lanes.iter().flat_map(|l| {
        l.span
            .into_iter()
            .flat_map(|(a, b)| [a, b])
            .chain(l.marks.iter().copied())
    });
    let Some((from, to)) = time_bounds(times) else {
        return no_data("timeline", title);
    };
    // A lane is a row of its own; the chart grows with them.
    let lane_h = 28.0;
    let bottom = TOP + lane_h * lanes.len() as f64;
    frame(
        "timeline",
        title,
        bottom + BOTTOM,
        html! {
            (time_axis(time_ticks(from, to), from, to, bottom))
            @for (i, lane) in lanes.iter().enumerate() {
                @let mid = TOP + lane_h * (i as f64 + 0.5);
                g.lane {
                    text x=(n(LEFT - 6.0)) y=(n(mid + 4.0)) text-anchor="end" fill="#222" { (truncate(&lane.label, 12)) }
                    @if let Some((a, b)) = lane.span {
                        rect x=(n(x_of(a, from, to))) y=(n(mid - lane_h * 0.3))
                            width=(n((x_of(b, from, to) - x_of(a, from, to)).max(2.0))) height=(n(lane_h * 0.6))
                            fill=(colour(i, "")) fill-opacity="0.25" {
                            title { (lane.label) ": " (a.format("%H:%M:%S")) "–" (b.format("%H:%M:%S")) " UTC" }
                        }
                    }
                    @for m in &lane.marks {
                        circle cx=(n(x_of(*m, from, to))) cy=(n(mid)) r="3.5" fill=(colour(i, "")) {
                            title { (lane.label) " · " (lane.mark_name) " at " (m.format("%H:%M:%S")) " UTC" }
                        }
                    }
                }
            }
            line.x-axis x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(bottom)) y2=(n(bottom)) stroke="#888" {}
            text x=(n(LEFT + plot_w() / 2.0)) y=(n(bottom + 32.0)) text-anchor="middle" fill="#555" { "time (UTC)" }
        },
    )
}

/// How [`per_bucket`] draws its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A line per series through its points.
    Lines,
    /// Bars side by side per time bucket.
    Bars,
}

/// A series of values per time bucket (e.g. deliveries per minute).
pub type TimeSeries = (String, Vec<(DateTime<Utc>, f64)>);

fn nonzero(points: &[(DateTime<Utc>, f64)]) -> usize {
    points.iter().filter(|(_, v)| *v != 0.0).count()
}

/// Several series of values per time bucket on a shared UTC time axis.
pub fn per_bucket(title: &str, series: &[TimeSeries], shape: Shape, y_title: &str) -> Markup {
    let Some((from, to)) = time_bounds(series.iter().flat_map(|(_, p)| p.iter().map(|(t, _)| *t)))
    else {
        return no_data("per-bucket", title);
    };
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| finite(*v)))
        .fold(0.0, f64::max);
    let (max, step) = nice_scale(top);
    let names: Vec<&str> = series.iter().map(|(s, _)| s.as_str()).collect();
    // Bars: the narrowest gap between buckets shares out among the series,
    // and the axis reaches half a gap past the first and last bucket so
    // their bars stay inside it.
    let mut buckets: Vec<DateTime<Utc>> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(t, _)| *t))
        .collect();
    buckets.sort();
    buckets.dedup();
    let gap = buckets
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > chrono::Duration::zero())
        .min()
        .unwrap_or((to - from) / 8);
    let (from, to) = match shape {
        Shape::Bars => (from - gap / 2, to + gap / 2),
        Shape::Lines => (from, to),
    };
    let gap_w = x_of(from + gap, from, to) - x_of(from, from, to);
    // Bars are labelled at their buckets (at most about 8 of them).
    let ticks = match shape {
        Shape::Bars => labelled(
            buckets
                .iter()
                .step_by(buckets.len().div_ceil(8).max(1))
                .copied(),
            time_format(to - from),
        ),
        Shape::Lines => time_ticks(from, to),
    };
    let bar = (gap_w * 0.8 / series.len().max(1) as f64).max(1.0);
    let bottom = TOP + plot_h();
    frame(
        "per-bucket",
        title,
        HEIGHT,
        html! {
            (y_axis(max, step, y_title))
            (time_axis(ticks, from, to, bottom))
            (legend(&names))
            @for (s, (name, points)) in series.iter().enumerate() {
                g.series {
                    @if shape == Shape::Lines && points.len() > 1 {
                        polyline fill="none" stroke=(colour(s, name)) stroke-width="2"
                            points=(points.iter().map(|(t, v)| format!("{},{}", n(x_of(*t, from, to)), n(y_of(*v, max)))).collect::<Vec<_>>().join(" ")) {}
                    }
                    // A long line (hours of minutes) is drawn without a
                    // marker per point: hundreds of them would make the page
                    // heavy (kilobytes a refresh) and say nothing the line
                    // does not; its non-zero points keep their hover text
                    // up to 60 of them.
                    @let markers = shape == Shape::Bars || points.len() <= 60 || nonzero(points) <= 60;
                    @for (t, v) in points.iter().filter(|(_, v)| markers && (*v != 0.0 || points.len() <= 60)) {
                        @match shape {
                            Shape::Lines => {
                                circle cx=(n(x_of(*t, from, to))) cy=(n(y_of(*v, max))) r="2.5" fill=(colour(s, name)) {
                                    title { (name) " at " (t.format("%H:%M:%S")) ": " (label(*v)) }
                                }
                            }
                            Shape::Bars => {
                                @let x = x_of(*t, from, to) - bar * series.len() as f64 / 2.0 + bar * s as f64;
                                rect x=(n(x)) width=(n(bar)) y=(n(y_of(*v, max))) height=(n(bottom - y_of(*v, max))) fill=(colour(s, name)) {
                                    title { (name) " at " (t.format("%H:%M:%S")) ": " (label(*v)) }
                                }
                            }
                        }
                    }
                }
            }
            (x_label("time (UTC)"))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Every tag is closed in order (SVG inside HTML has no void elements).
    fn balanced(svg: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').ok_or("unclosed <")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or("").to_string();
                stack.push(name);
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("left open: {stack:?}"))
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, h, m, 0).unwrap()
    }

    #[test]
    fn stacked_bars_draw_a_segment_per_nonzero_value_with_legend_and_axes() {
        let cats: Vec<String> = vec!["03-01".into(), "03-02".into(), "03-03".into()];
        let series = vec![
            ("DiskFull".to_string(), vec![3.0, 0.0, 5.0]),
            (OTHER.to_string(), vec![1.0, 2.0, 0.0]),
        ];
        let svg = stacked_bars("volume", &cats, &series, "date", "alert rows").into_string();
        balanced(&svg).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(
            svg.matches("<rect").count(),
            4 + 2,
            "4 segments, 2 swatches"
        );
        assert!(svg.contains("DiskFull") && svg.contains("alert rows") && svg.contains("date"));
        assert!(svg.contains("03-03 · DiskFull: 5"), "tooltips: {svg}");
        assert!(svg.contains(GREY), "other is grey");
        // The tallest bar (5) reaches a round axis top with a tick label.
        assert!(svg.contains(">6<") || svg.contains(">5<"), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let cats = vec!["<b>d</b>".to_string()];
        let series = vec![("a&b <script>x</script>".to_string(), vec![1.0])];
        let svg = stacked_bars("t\"", &cats, &series, "x", "y").into_string();
        balanced(&svg).unwrap();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("a&amp;b &lt;script&gt;"), "{svg}");
        let lane = Lane {
            label: "<i>run</i>".into(),
            span: Some((t(1, 0), t(2, 0))),
            marks: vec![t(1, 30)],
            mark_name: "page & more".into(),
        };
        let svg = timeline("runs", &[lane]).into_string();
        balanced(&svg).unwrap();
        assert!(
            !svg.contains("<i>") && svg.contains("page &amp; more"),
            "{svg}"
        );
    }

    #[test]
    fn empty_input_says_no_data() {
        for svg in [
            stacked_bars("a", &[], &[], "x", "y"),
            stacked_bars("a", &["d".into()], &[("s".into(), vec![0.0])], "x", "y"),
            timeline("b", &[]),
            timeline(
                "b",
                &[Lane {
                    label: "r".into(),
                    span: None,
                    marks: vec![],
                    mark_name: String::new(),
                }],
            ),
            per_bucket("c", &[], Shape::Lines, "y"),
            per_bucket("c", &[("q".into(), vec![])], Shape::Bars, "y"),
        ] {
            let svg = svg.into_string();
            balanced(&svg).unwrap();
            assert!(svg.contains("no data"), "{svg}");
        }
    }

    #[test]
    fn non_finite_values_never_reach_the_svg() {
        let series = vec![
            ("a".to_string(), vec![(t(1, 0), f64::NAN), (t(1, 1), 2.0)]),
            (
                "b".to_string(),
                vec![(t(1, 0), f64::INFINITY), (t(1, 1), -1.0)],
            ),
        ];
        for shape in [Shape::Lines, Shape::Bars] {
            let svg = per_bucket("q", &series, shape, "per minute").into_string();
            balanced(&svg).unwrap();
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        let svg = stacked_bars(
            "s",
            &["d".into()],
            &[("a".into(), vec![f64::NAN]), ("b".into(), vec![2.0])],
            "x",
            "y",
        )
        .into_string();
        assert!(!svg.contains("NaN"), "{svg}");
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 2,
            "one segment, two swatches"
        );
    }

    #[test]
    fn per_bucket_draws_each_series_on_a_time_axis() {
        let series = vec![
            (
                "deliveries".to_string(),
                vec![(t(1, 0), 10.0), (t(1, 1), 12.0), (t(1, 2), 8.0)],
            ),
            ("dead".to_string(), vec![(t(1, 1), 1.0)]),
        ];
        let svg = per_bucket("q", &series, Shape::Lines, "per minute").into_string();
        balanced(&svg).unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "a single point has no line"
        );
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("01:00") && svg.contains("01:02"), "{svg}");
        assert!(svg.contains("dead at 01:01:00: 1"), "{svg}");
        let svg = per_bucket("q", &series, Shape::Bars, "per minute").into_string();
        balanced(&svg).unwrap();
        assert_eq!(svg.matches("<rect").count(), 4 + 2, "4 bars, 2 swatches");
    }

    #[test]
    fn a_timeline_has_a_lane_per_row_and_a_mark_per_event() {
        let lanes = vec![
            Lane {
                label: "run-1".into(),
                span: Some((t(1, 0), t(1, 10))),
                marks: vec![t(1, 2), t(1, 5), t(1, 10)],
                mark_name: "page written".into(),
            },
            Lane {
                label: "run-2".into(),
                span: Some((t(2, 0), t(2, 1))),
                marks: vec![t(2, 1)],
                mark_name: "page written".into(),
            },
        ];
        let svg = timeline("pages", &lanes).into_string();
        balanced(&svg).unwrap();
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(
            svg.contains("run-1 · page written at 01:05:00 UTC"),
            "{svg}"
        );
        assert!(svg.contains("time (UTC)"));
    }

    #[test]
    fn the_y_axis_is_round() {
        assert_eq!(nice_scale(0.0), (1.0, 0.25));
        assert_eq!(nice_scale(7.0), (8.0, 2.0));
        assert_eq!(nice_scale(95.0), (100.0, 50.0));
        assert_eq!(nice_scale(1234.0), (1500.0, 500.0));
        assert_eq!(nice_scale(f64::NAN), (1.0, 0.25));
    }
}
