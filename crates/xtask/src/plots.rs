//! The benchmark's pictures: SVG files under `bench/plots/`, drawn with plotters from the raw
//! samples a run took (never from the summary), and linked from RESULTS.md.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One named line of (x, y) points.
#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Line {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
        Line { name: name.into(), points }
    }

    /// The empirical distribution of `samples`: for each sample, the share (in %) at or
    /// below it.
    pub fn cdf(name: impl Into<String>, samples: &[f64]) -> Line {
        let mut xs = samples.to_vec();
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        Line::new(name, xs.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n * 100.0)).collect())
    }
}

const SIZE: (u32, u32) = (960, 540);

fn colour(i: usize) -> RGBColor {
    // Distinguishable on white, and in print.
    const COLOURS: [RGBColor; 6] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    COLOURS[i % COLOURS.len()]
}

fn bounds(lines: &[Line], pick: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let values = lines.iter().flat_map(|l| l.points.iter().map(&pick)).filter(|v| v.is_finite());
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Latency distributions on a logarithmic time axis: one line per series, the share of
/// messages at or below each time.
pub fn distribution(path: &Path, title: &str, lines: &[Line]) -> anyhow::Result<()> {
    let (lo, hi) = bounds(lines, |p| p.0);
    if !lo.is_finite() {
        return Ok(());
    }
    let x = ((lo * 0.8).max(0.01)..hi * 1.25).log_scale();
    draw(path, title, ("milliseconds (log scale)", "% of messages at or below"), x, 0f64..100f64, lines)
}

/// Values over time (or over any x), one line per series; `limit` draws a target line.
pub fn over_time(
    path: &Path,
    title: &str,
    descs: (&str, &str),
    lines: &[Line],
    limit: Option<(f64, &str)>,
) -> anyhow::Result<()> {
    let (x_lo, x_hi) = bounds(lines, |p| p.0);
    let (_, y_hi) = bounds(lines, |p| p.1);
    if !x_lo.is_finite() {
        return Ok(());
    }
    let y_hi = (y_hi.max(limit.map_or(0.0, |l| l.0)) * 1.15).max(f64::MIN_POSITIVE);
    let x_hi = if x_hi > x_lo { x_hi } else { x_lo + 1.0 };
    let mut all = lines.to_vec();
    if let Some((y, words)) = limit {
        all.push(Line::new(words, vec![(x_lo, y), (x_hi, y)]));
    }
    draw(path, title, descs, x_lo..x_hi, 0f64..y_hi, &all)
}

/// One chart: the frame, its axes and their names, the lines and their legend.
fn draw<X, Y>(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    x: X,
    y: Y,
    lines: &[Line],
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(|e| anyhow!("{e}"))?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| anyhow!("{e}"))?;
    for (i, line) in lines.iter().enumerate() {
        let style = ShapeStyle::from(&colour(i)).stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(|e| anyhow!("{e}"))?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_is_an_svg_with_its_lines_and_legend() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("d.svg");
        let a: Vec<f64> = (1..=100).map(|i| f64::from(i) / 10.0).collect();
        distribution(&path, "round trip", &[Line::cdf("hermes", &a), Line::cdf("echo bot", &[1.0, 2.0])])
            .expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("hermes") && svg.contains("echo bot") && svg.contains("round trip"));
        assert!(svg.matches("<polyline").count() >= 2, "one line per series");
    }

    #[test]
    fn a_cdf_ends_at_all_of_the_samples() {
        let l = Line::cdf("x", &[3.0, 1.0, 2.0, 4.0]);
        assert_eq!(l.points, vec![(1.0, 25.0), (2.0, 50.0), (3.0, 75.0), (4.0, 100.0)]);
    }
}
