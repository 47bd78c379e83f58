//! `chart.svg`: ops/s and p99 latency against concurrent tasks for each contender, standard
//! single-command workloads only (the pipeline and hot-key workloads run at one concurrency each),
//! drawn with plotters.

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::bench::BenchError;
use crate::bench::contenders::Contender;
use crate::bench::report::{Report, Row};

/// The chart's size in pixels.
pub const SIZE: (u32, u32) = (1200, 480);

/// Renders the chart as an SVG document.
///
/// # Errors
/// When there is nothing to draw (no single-command rows) or plotters fails.
pub fn render_svg(report: &Report) -> Result<String, BenchError> {
    let rows: Vec<Row> = report
        .rows()
        .into_iter()
        .filter(|r| !r.workload.is_pipeline() && !r.workload.is_hot_keys())
        .collect();
    if rows.is_empty() {
        return Err("no single-command figures to chart".into());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        panel(&left, &rows, "ops/s (median)", false, |r| {
            Some(r.ops_per_sec.median)
        })?;
        panel(
            &right,
            &rows,
            "p99 latency, µs (median, log scale)",
            true,
            |r| r.p99_us.map(|p| p.median),
        )?;
        root.present()?;
    }
    Ok(svg)
}

fn color(contender: Contender) -> RGBColor {
    match contender {
        Contender::Raw => RGBColor(31, 119, 180),
        Contender::Aggregated => RGBColor(214, 39, 40),
        Contender::Direct => RGBColor(255, 127, 14),
        Contender::RedisBenchmark => RGBColor(44, 160, 44),
        Contender::Traced => RGBColor(148, 103, 189),
        Contender::Cached => RGBColor(140, 86, 75),
    }
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    rows: &[Row],
    title: &str,
    log_y: bool,
    figure: impl Fn(&Row) -> Option<f64>,
) -> Result<(), BenchError> {
    let values: Vec<f64> = rows
        .iter()
        .filter_map(&figure)
        .filter(|v| *v > 0.0)
        .collect();
    let max = values.iter().copied().fold(1.0, f64::max);
    let min = values.iter().copied().fold(max, f64::min);
    let max_tasks = rows.iter().map(|r| r.workload.tasks).max().unwrap_or(1);
    #[allow(clippy::cast_precision_loss)]
    let x_range = (0.8..max_tasks as f64 * 1.5).log_scale();
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    let series = |contender: Contender| -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.contender == contender)
            .filter_map(|r| {
                #[allow(clippy::cast_precision_loss)]
                let tasks = r.workload.tasks as f64;
                figure(r).filter(|v| *v > 0.0).map(|v| (tasks, v))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    };
    // The two scales are different coordinate types, so only the ranges differ by branch.
    if log_y {
        let mut chart =
            builder.build_cartesian_2d(x_range, ((min / 1.5)..(max * 1.5)).log_scale())?;
        draw_contenders(&mut chart, &series, SeriesLabelPosition::UpperLeft)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, 0.0..(max * 1.15))?;
        draw_contenders(&mut chart, &series, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

/// The axes, then one line with dots per contender, and the legend at `legend`.
fn draw_contenders<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &impl Fn(Contender) -> Vec<(f64, f64)>,
    legend: SeriesLabelPosition,
) -> Result<(), BenchError>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("concurrent tasks")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for contender in Contender::ALL {
        let points = series(contender);
        if points.is_empty() {
            continue;
        }
        let c = color(contender);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(contender.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::fixture;

    #[test]
    fn draws_both_panels_with_every_contender_of_the_standard_workloads() {
        let svg = render_svg(&fixture()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("ops/s (median)"));
        assert!(svg.contains("p99 latency"));
        for contender in Contender::ALL
            .into_iter()
            .filter(|c| *c != Contender::Cached)
        {
            assert_eq!(
                svg.matches(contender.label()).count(),
                2,
                "{contender} is in both legends"
            );
        }
    }

    #[test]
    fn refuses_an_empty_report() {
        let mut report = fixture();
        report.cells.retain(|c| c.workload.is_pipeline());
        assert!(render_svg(&report).is_err());
    }
}
