//! Server-rendered SVG charts for the web console.
//!
//! The console works without JavaScript, so charts are plain `<svg>` strings
//! built here and embedded directly in the page. Every chart:
//!
//! * has a fixed `viewBox` ([`WIDTH`] × [`HEIGHT`]) and `width="100%"`, so it
//!   scales with its container;
//! * carries a `<title>` and a `<desc>` summarising the numbers, wired up with
//!   `aria-labelledby` / `aria-describedby`, so screen readers get the data;
//! * gives every data point (circle or bar) its own `<title>`, so hovering
//!   shows `label — series: value`;
//! * escapes all caller-supplied text, and never panics: non-finite and
//!   negative values count as 0, mismatched lengths use the shortest, and an
//!   empty or all-zero chart says "No data for this period.".
//!
//! Output is deterministic: the same input always yields the same string.

use std::fmt::{self, Write as _};

/// Width of every chart's `viewBox`, in SVG user units.
pub const WIDTH: f64 = 720.0;
/// Height of every chart's `viewBox`, in SVG user units.
pub const HEIGHT: f64 = 260.0;

/// Space left of the plot for the y-axis tick labels.
const MARGIN_LEFT: f64 = 56.0;
/// Space right of the plot, so the last x label is not clipped.
const MARGIN_RIGHT: f64 = 16.0;
/// Space above the plot for the legend.
const MARGIN_TOP: f64 = 30.0;
/// Space below the plot for the x-axis labels.
const MARGIN_BOTTOM: f64 = 30.0;

/// At most this many x-axis labels are written, however many points there are.
const MAX_X_LABELS: usize = 12;
/// X-axis labels longer than this many characters are shortened with "…".
const MAX_X_LABEL_CHARS: usize = 14;
/// Legend names longer than this many characters are shortened with "…".
const MAX_LEGEND_CHARS: usize = 28;
/// Rough width of one character at the axis font size (10), for layout.
const AXIS_CHAR_WIDTH: f64 = 6.0;
/// Rough width of one character at the legend font size (11), for layout.
const LEGEND_CHAR_WIDTH: f64 = 6.5;

/// Count values above this are clamped, keeping every coordinate finite.
const MAX_COUNT: f64 = 1e15;

/// Text shown in the middle of a chart without data.
const NO_DATA: &str = "No data for this period.";

const TEXT_COLOUR: &str = "#555";
const GRID_COLOUR: &str = "#e5e5e5";
const AXIS_COLOUR: &str = "#999";

/// How values on the y axis are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Plain counts: ticks start at 0 and are written compactly ("1.2k");
    /// values in titles and the description use thousands separators ("12,345").
    Count,
    /// Percentages: values are 0.0..=100.0 (others are clamped), the axis
    /// always runs 0–100 and ticks are written "25 %".
    Percent,
}

/// One line (or one colour of bars) of a chart.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Name shown in the legend and in every point's hover title.
    pub name: &'a str,
    /// One value per x label; NaN, infinite and negative values count as 0.
    pub values: &'a [f64],
    /// CSS colour for the line or bars, such as `"#2f6fb0"`.
    pub colour: &'a str,
}

/// Renders a line chart as a complete, accessible `<svg>` element.
///
/// `labels` holds one x label per point; each series should have as many
/// values. On a mismatch the shortest length wins and the rest is ignored.
pub fn line_chart(title: &str, labels: &[String], series: &[Series<'_>], scale: Scale) -> String {
    render(Kind::Line, title, labels, series, scale)
}

/// Renders a grouped (not stacked) bar chart as a complete, accessible
/// `<svg>` element, taking the same inputs as [`line_chart`].
pub fn bar_chart(title: &str, labels: &[String], series: &[Series<'_>], scale: Scale) -> String {
    render(Kind::Bar, title, labels, series, scale)
}

/// Which kind of chart to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Line,
    Bar,
}

/// A series after cleaning: values truncated to the common length and sanitised.
struct CleanSeries<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<f64>,
}

/// The chart's data after cleaning.
struct Data<'a> {
    labels: &'a [String],
    series: Vec<CleanSeries<'a>>,
    scale: Scale,
}

impl Data<'_> {
    /// Number of points per series.
    fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is anything worth drawing.
    fn has_data(&self) -> bool {
        self.series.iter().any(|s| s.values.iter().any(|&v| v > 0.0))
    }

    /// Largest value of any series (0 when empty).
    fn max_value(&self) -> f64 {
        self.series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max)
    }
}

/// The plot area inside the margins, and the value mapped to its top edge.
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    y_max: f64,
}

impl Plot {
    fn new(y_max: f64) -> Self {
        Self {
            left: MARGIN_LEFT,
            top: MARGIN_TOP,
            width: WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
            height: HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
            y_max,
        }
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Y coordinate of `value`, clamped to the plot.
    fn y(&self, value: f64) -> f64 {
        let fraction = if self.y_max > 0.0 { (value / self.y_max).clamp(0.0, 1.0) } else { 0.0 };
        self.bottom() - fraction * self.height
    }

    /// X coordinate of point `index` of `count` on a line chart.
    fn line_x(&self, index: usize, count: usize) -> f64 {
        if count < 2 {
            self.left + self.width / 2.0
        } else {
            self.left + self.width * index as f64 / (count - 1) as f64
        }
    }

    /// Width of one label's band on a bar chart.
    fn band(&self, count: usize) -> f64 {
        self.width / count.max(1) as f64
    }

    /// X coordinate of the middle of band `index` of `count` on a bar chart.
    fn band_x(&self, index: usize, count: usize) -> f64 {
        self.left + self.band(count) * (index as f64 + 0.5)
    }
}

/// Shared entry point of both chart kinds.
fn render(kind: Kind, title: &str, labels: &[String], series: &[Series<'_>], scale: Scale) -> String {
    let data = clean(labels, series, scale);
    let mut svg = String::new();
    // Writing into a `String` cannot fail, so the `fmt::Result` carries no information.
    let _ = write_chart(&mut svg, kind, title, &data);
    svg
}

fn write_chart(out: &mut String, kind: Kind, title: &str, data: &Data<'_>) -> fmt::Result {
    let id = chart_id(kind, title, data);
    write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-labelledby="{id}-title" aria-describedby="{id}-desc" class="chart" font-family="system-ui, sans-serif">"#
    )?;
    write!(out, r#"<title id="{id}-title">{}</title>"#, escape(title))?;
    write!(out, r#"<desc id="{id}-desc">{}</desc>"#, escape(&describe(data)))?;
    if data.has_data() {
        let ticks = y_ticks(data.max_value(), data.scale);
        let plot = Plot::new(ticks.last().copied().unwrap_or(1.0));
        write_grid(out, &plot, &ticks, data.scale)?;
        write_x_labels(out, &plot, kind, data.labels)?;
        match kind {
            Kind::Line => write_lines(out, &plot, data)?,
            Kind::Bar => write_bars(out, &plot, data)?,
        }
        write_legend(out, &data.series)?;
    } else {
        write_no_data(out)?;
    }
    out.push_str("</svg>");
    Ok(())
}

/// Truncates everything to the shortest length and sanitises the values.
fn clean<'a>(labels: &'a [String], series: &[Series<'a>], scale: Scale) -> Data<'a> {
    let len = series.iter().map(|s| s.values.len()).fold(labels.len(), usize::min);
    let series = series
        .iter()
        .map(|s| CleanSeries {
            name: s.name,
            colour: s.colour,
            values: s.values[..len].iter().map(|&v| clean_value(v, scale)).collect(),
        })
        .collect();
    Data { labels: &labels[..len], series, scale }
}

/// Maps NaN, infinities and negatives to 0 and clamps to the scale's maximum.
fn clean_value(value: f64, scale: Scale) -> f64 {
    let cap = match scale {
        Scale::Count => MAX_COUNT,
        Scale::Percent => 100.0,
    };
    if value.is_finite() && value > 0.0 { value.min(cap) } else { 0.0 }
}

/// A stable id for the chart's `<title>`/`<desc>`, derived from its content
/// (FNV-1a), so several charts on one page get distinct ids deterministically.
fn chart_id(kind: Kind, title: &str, data: &Data<'_>) -> String {
    let mut hash = Fnv::default();
    hash.write(&[kind as u8, data.scale as u8]);
    hash.write(title.as_bytes());
    for label in data.labels {
        hash.write(label.as_bytes());
        hash.write(&[0]);
    }
    for series in &data.series {
        hash.write(series.name.as_bytes());
        hash.write(&[0]);
        for value in &series.values {
            hash.write(&value.to_bits().to_le_bytes());
        }
    }
    format!("chart-{:016x}", hash.0)
}

/// 64-bit FNV-1a; tiny, stable across Rust versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The plain-text summary that goes into `<desc>`.
fn describe(data: &Data<'_>) -> String {
    if !data.has_data() {
        return NO_DATA.to_owned();
    }
    let (first, last) = (&data.labels[0], &data.labels[data.len() - 1]);
    let mut text = if data.len() == 1 {
        format!("1 point: {first}.")
    } else {
        format!("{} points, from {first} to {last}.", data.len())
    };
    for series in &data.series {
        let (max_index, max) = series
            .values
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |best, (i, v)| if v > best.1 { (i, v) } else { best });
        let sum: f64 = series.values.iter().sum();
        let (what, aggregate) = match data.scale {
            Scale::Count => ("total", sum),
            Scale::Percent => ("average", sum / data.len() as f64),
        };
        text.push_str(&format!(
            " {}: {what} {}, maximum {} ({}).",
            series.name,
            format_value(aggregate, data.scale),
            format_value(max, data.scale),
            data.labels[max_index],
        ));
    }
    text
}

/// Y-axis tick values, from 0 upwards; the last one is the top of the axis.
fn y_ticks(max: f64, scale: Scale) -> Vec<f64> {
    match scale {
        Scale::Percent => vec![0.0, 25.0, 50.0, 75.0, 100.0],
        Scale::Count => count_ticks(max),
    }
}

/// "Nice" count ticks: a 1, 2 or 5 × 10ⁿ step (at least 1, since counts are
/// whole), 3–5 intervals, so 4–6 ticks including 0.
fn count_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max.min(MAX_COUNT) } else { 1.0 };
    let step = nice_step(max);
    let intervals = ((max / step).ceil() as usize).clamp(3, 5);
    (0..=intervals).map(|i| i as f64 * step).collect()
}

/// The smallest step of the form 1, 2 or 5 × 10ⁿ (n ≥ 0) that covers `max`
/// in at most 5 intervals.
fn nice_step(max: f64) -> f64 {
    // Start one decade low so rounding in `log10` can never skip the answer.
    let exponent = ((max / 5.0).log10().floor() as i32 - 1).max(0);
    let mut magnitude = 10f64.powi(exponent);
    for _ in 0..400 {
        for multiple in [1.0, 2.0, 5.0] {
            let step = multiple * magnitude;
            if max / step <= 5.0 {
                return step;
            }
        }
        magnitude *= 10.0;
    }
    max // Unreachable for finite `max`; keeps the function total.
}

/// Draws horizontal gridlines with their tick labels, and the x axis.
fn write_grid(out: &mut String, plot: &Plot, ticks: &[f64], scale: Scale) -> fmt::Result {
    let (left, right) = (plot.left, plot.left + plot.width);
    write!(out, r#"<g class="grid" font-size="10" fill="{TEXT_COLOUR}" text-anchor="end">"#)?;
    for &tick in ticks {
        let y = plot.y(tick);
        write!(
            out,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="{GRID_COLOUR}" stroke-width="1"/>"#
        )?;
        write!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, left - 6.0, y + 3.5, escape(&format_tick(tick, scale)))?;
    }
    let bottom = plot.bottom();
    write!(
        out,
        r#"<line x1="{left:.1}" y1="{bottom:.1}" x2="{right:.1}" y2="{bottom:.1}" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#
    )?;
    out.push_str("</g>");
    Ok(())
}

/// Writes the x-axis labels, thinned so they do not overlap.
fn write_x_labels(out: &mut String, plot: &Plot, kind: Kind, labels: &[String]) -> fmt::Result {
    let shown: Vec<String> = labels.iter().map(|l| shorten(l, MAX_X_LABEL_CHARS)).collect();
    let widest = shown.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * AXIS_CHAR_WIDTH;
    let fits = (plot.width / (widest + 12.0)) as usize;
    let y = plot.bottom() + 16.0;
    write!(out, r#"<g class="x-labels" font-size="10" fill="{TEXT_COLOUR}" text-anchor="middle">"#)?;
    for index in thin_labels(labels.len(), fits.min(MAX_X_LABELS)) {
        let x = match kind {
            Kind::Line => plot.line_x(index, labels.len()),
            Kind::Bar => plot.band_x(index, labels.len()),
        };
        // Keep the (estimated) text inside the viewBox.
        let half = shown[index].chars().count() as f64 * AXIS_CHAR_WIDTH / 2.0;
        let x = x.min(WIDTH - 2.0 - half).max(2.0 + half);
        write!(out, r#"<text x="{x:.1}" y="{y:.1}">{}</text>"#, escape(&shown[index]))?;
    }
    out.push_str("</g>");
    Ok(())
}

/// Indices of the labels to show out of `count`: all of them when at most
/// `max` (itself at least 2), otherwise `max` evenly spaced ones, always
/// including the first and the last.
fn thin_labels(count: usize, max: usize) -> Vec<usize> {
    let max = max.max(2);
    if count <= max {
        return (0..count).collect();
    }
    // With count > max the spacing exceeds 1, so the rounded indices are
    // strictly increasing: no duplicates, first 0 and last count - 1.
    let spacing = (count - 1) as f64 / (max - 1) as f64;
    (0..max).map(|i| ((i as f64 * spacing).round() as usize).min(count - 1)).collect()
}

/// Draws one polyline per series, with a hoverable circle on every point.
fn write_lines(out: &mut String, plot: &Plot, data: &Data<'_>) -> fmt::Result {
    let count = data.len();
    let spacing = if count > 1 { plot.width / (count - 1) as f64 } else { plot.width };
    let radius = (spacing / 3.0).clamp(1.0, 3.0);
    for series in &data.series {
        let colour = escape(series.colour);
        write!(out, r#"<g class="series" fill="{colour}">"#)?;
        if count > 1 {
            write!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points=""#
            )?;
            for (i, &value) in series.values.iter().enumerate() {
                let separator = if i == 0 { "" } else { " " };
                write!(out, "{separator}{:.1},{:.1}", plot.line_x(i, count), plot.y(value))?;
            }
            out.push_str(r#""/>"#);
        }
        for (i, &value) in series.values.iter().enumerate() {
            write!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="{radius:.1}">"#, plot.line_x(i, count), plot.y(value))?;
            write_point_title(out, &data.labels[i], series.name, value, data.scale)?;
            out.push_str("</circle>");
        }
        out.push_str("</g>");
    }
    Ok(())
}

/// Draws one group of side-by-side bars per label, each bar hoverable.
fn write_bars(out: &mut String, plot: &Plot, data: &Data<'_>) -> fmt::Result {
    let count = data.len();
    let band = plot.band(count);
    let group = band * 0.8;
    let slot = group / data.series.len().max(1) as f64;
    // Leave a hairline between neighbouring bars when there is room for it.
    let bar_width = if slot > 4.0 { slot - 1.0 } else { slot };
    for (s, series) in data.series.iter().enumerate() {
        write!(out, r#"<g class="series" fill="{}">"#, escape(series.colour))?;
        for (i, &value) in series.values.iter().enumerate() {
            let x = plot.left + band * i as f64 + (band - group) / 2.0 + slot * s as f64;
            let y = plot.y(value);
            let height = plot.bottom() - y;
            write!(out, r#"<rect x="{x:.2}" y="{y:.1}" width="{bar_width:.2}" height="{height:.1}">"#)?;
            write_point_title(out, &data.labels[i], series.name, value, data.scale)?;
            out.push_str("</rect>");
        }
        out.push_str("</g>");
    }
    Ok(())
}

/// Writes the hover `<title>` of one data point: "label — series: value".
fn write_point_title(out: &mut String, label: &str, series: &str, value: f64, scale: Scale) -> fmt::Result {
    let text = format!("{label} — {series}: {}", format_value(value, scale));
    write!(out, "<title>{}</title>", escape(&text))
}

/// Writes the legend along the top: a coloured swatch and the name per series.
fn write_legend(out: &mut String, series: &[CleanSeries<'_>]) -> fmt::Result {
    write!(out, r#"<g class="legend" font-size="11" fill="{TEXT_COLOUR}">"#)?;
    let mut x = MARGIN_LEFT;
    for s in series {
        let name = shorten(s.name, MAX_LEGEND_CHARS);
        write!(out, r#"<rect x="{x:.1}" y="8" width="10" height="10" rx="2" fill="{}"/>"#, escape(s.colour))?;
        write!(out, r#"<text x="{:.1}" y="17">{}</text>"#, x + 14.0, escape(&name))?;
        x += 14.0 + name.chars().count() as f64 * LEGEND_CHAR_WIDTH + 16.0;
    }
    out.push_str("</g>");
    Ok(())
}

/// Writes an empty plot frame with [`NO_DATA`] in the middle.
fn write_no_data(out: &mut String) -> fmt::Result {
    let plot = Plot::new(1.0);
    let (left, right, bottom) = (plot.left, plot.left + plot.width, plot.bottom());
    write!(
        out,
        r#"<line x1="{left:.1}" y1="{bottom:.1}" x2="{right:.1}" y2="{bottom:.1}" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#
    )?;
    write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="13" fill="{TEXT_COLOUR}" text-anchor="middle">{NO_DATA}</text>"#,
        left + plot.width / 2.0,
        plot.top + plot.height / 2.0 + 4.0,
    )
}

/// Writes a value for people: counts with thousands separators ("12,345",
/// "2.5"), percentages with up to one decimal ("12.5 %").
fn format_value(value: f64, scale: Scale) -> String {
    match scale {
        Scale::Count => group_thousands(&one_decimal(value)),
        Scale::Percent => format!("{} %", one_decimal(value)),
    }
}

/// Writes a y-axis tick compactly: "950", "1.2k", "3M", "25 %".
fn format_tick(value: f64, scale: Scale) -> String {
    match scale {
        Scale::Count => format_compact(value),
        Scale::Percent => format!("{} %", one_decimal(value)),
    }
}

/// A count with a k/M/G/T suffix and at most one decimal once it reaches 1,000.
fn format_compact(value: f64) -> String {
    if value < 1000.0 {
        return one_decimal(value);
    }
    let (mut scaled, mut suffix) = (value, "");
    for next in ["k", "M", "G", "T"] {
        // Stay at this suffix unless rounding would write "1000" of it.
        if !suffix.is_empty() && (scaled * 10.0).round() < 10_000.0 {
            break;
        }
        scaled /= 1000.0;
        suffix = next;
    }
    format!("{}{suffix}", one_decimal(scaled))
}

/// `value` rounded to one decimal (halves away from zero), without a
/// trailing ".0" and never "-0".
fn one_decimal(value: f64) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    let rounded = (value * 10.0).round() / 10.0;
    let value = if rounded.is_finite() { rounded } else { value };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// Inserts "," every three digits of the integer part: "12345.5" → "12,345.5".
fn group_thousands(number: &str) -> String {
    let (sign, rest) = number.strip_prefix('-').map_or(("", number), |rest| ("-", rest));
    let (integer, fraction) = rest.split_once('.').map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(number.len() + integer.len() / 3);
    grouped.push_str(sign);
    for (i, digit) in integer.chars().enumerate() {
        if i > 0 && (integer.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if let Some(fraction) = fraction {
        grouped.push('.');
        grouped.push_str(fraction);
    }
    grouped
}

/// Shortens `text` to at most `max` characters, ending in "…" when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// Escapes text for XML content and attribute values, and drops characters
/// XML 1.0 does not allow at all (most control characters).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
