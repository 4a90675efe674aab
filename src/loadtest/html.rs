//! `loadtest --report FILE.html`: the run as one self-contained page (no script, no external
//! file): the summary and SLO verdicts as tables, and inline SVG plots (drawn with `plotters`)
//! of turn latency percentiles over time, the latency histogram, turns and errors per second,
//! errors by code, and the server's CPU and memory as sampled from `/health`.

use std::fmt::Write;

use plotters::prelude::*;

use super::report::{Report, mb};
use crate::scrub::html as escape;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 300;
/// Plots over time have about this many points.
const TIME_BUCKETS: f64 = 60.0;
const HISTOGRAM_BINS: usize = 40;
/// Server CPU is plotted as its mean over windows of this many seconds.
const CPU_WINDOW_S: f64 = 1.0;

/// One line of a plot.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(256 << 10);
    let verdict = match (report.slos.is_empty(), report.passed()) {
        (true, _) => "no SLO given",
        (false, true) => "every SLO met",
        (false, false) => "SLO MISSED",
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Load test of {url}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Load test of {url}</h1>\n<p class=\"verdict {class}\">{verdict}</p>\n",
        url = escape(&report.url),
        class = if report.passed() { "met" } else { "missed" },
    );
    summary(&mut page, report);
    slos(&mut page, report);
    let buckets = Buckets::for_run(report.duration_s);
    figure(
        &mut page,
        "latency-over-time",
        "Turn latency over time",
        &latency_over_time(report, &buckets),
    );
    figure(
        &mut page,
        "latency-histogram",
        "Turn latency histogram",
        &histogram(report),
    );
    figure(
        &mut page,
        "throughput",
        "Turns and errors per second",
        &throughput(report, &buckets),
    );
    figure(&mut page, "errors", "Errors by code", &errors(report));
    figure(&mut page, "server-cpu", "Server CPU", &server_cpu(report));
    figure(
        &mut page,
        "server-rss",
        "Server memory",
        &server_rss(report),
    );
    page.push_str("</body>\n</html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;\
    color:#222}table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .8em;\
    border-bottom:1px solid #ddd;text-align:left}td.num{text-align:right;\
    font-variant-numeric:tabular-nums}.verdict{font-weight:bold;font-size:1.2em}\
    .met{color:#17702f}.missed{color:#b00020}figure{margin:1.5em 0}\
    figcaption{font-weight:bold;margin-bottom:.3em}p.empty{color:#666}";

fn summary(page: &mut String, report: &Report) {
    let mut rows: Vec<(String, String)> = vec![
        ("connections".into(), report.connections.to_string()),
        ("duration".into(), format!("{:.1} s", report.duration_s)),
        ("turns completed".into(), report.turns_completed.to_string()),
        (
            "turns failed".into(),
            format!(
                "{} ({:.2}%)",
                report.turns_failed,
                report.error_rate * 100.0
            ),
        ),
        ("turns/s".into(), format!("{:.1}", report.turns_per_s)),
    ];
    if let Some(rate) = report.rate {
        rows.push(("paced at".into(), format!("{rate} turns/s")));
    }
    if let Some(call) = &report.tool_call {
        rows.push((
            "tool calls".into(),
            format!("{} of /tool {call}", report.tool_calls),
        ));
    }
    for (name, p) in [
        ("time to first token", &report.ttft_ms),
        ("turn latency", &report.turn_ms),
        ("/health latency", &report.server.health_ms),
    ] {
        rows.push((
            name.into(),
            format!(
                "p50 {:.2} · p95 {:.2} · p99 {:.2} · max {:.2} ms",
                p.p50, p.p95, p.p99, p.max
            ),
        ));
    }
    if let Some(cpu) = report.server.cpu_ms_per_turn {
        rows.push(("server CPU per turn".into(), format!("{cpu:.3} ms")));
    }
    if let (Some(before), Some(after)) = (
        report.server.rss_bytes_before,
        report.server.rss_bytes_after,
    ) {
        rows.push((
            "server RSS before / after".into(),
            format!("{:.1} / {:.1} MB", mb(before), mb(after)),
        ));
    }
    page.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    for (name, value) in rows {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td class=\"num\">{}</td></tr>",
            escape(&name),
            escape(&value)
        );
    }
    page.push_str("</table>\n");
}

fn slos(page: &mut String, report: &Report) {
    page.push_str("<h2>SLOs</h2>\n");
    if report.slos.is_empty() {
        page.push_str("<p class=\"empty\">No SLO was given (--slo).</p>\n");
        return;
    }
    page.push_str(
        "<table id=\"slos\">\n<tr><th>objective</th><th>actual</th><th>verdict</th></tr>\n",
    );
    for verdict in &report.slos {
        let bound = if verdict.slo == "turns_per_s" {
            "≥"
        } else {
            "≤"
        };
        let (class, word) = if verdict.met {
            ("met", "met")
        } else {
            ("missed", "MISSED")
        };
        let _ = writeln!(
            page,
            "<tr><td>{} {bound} {}</td><td class=\"num\">{:.3}</td>\
             <td class=\"{class}\">{word}</td></tr>",
            escape(&verdict.slo),
            verdict.limit,
            verdict.actual
        );
    }
    page.push_str("</table>\n");
}

/// A plot in a `<figure>`, or a line saying why there is none.
fn figure(page: &mut String, id: &str, caption: &str, plot: &Result<String, String>) {
    let _ = write!(
        page,
        "<figure id=\"{id}\">\n<figcaption>{caption}</figcaption>\n"
    );
    match plot {
        Ok(svg) => page.push_str(svg),
        Err(why) => {
            let _ = write!(page, "<p class=\"empty\">{}</p>", escape(why));
        }
    }
    page.push_str("\n</figure>\n");
}

/// Time buckets of a run: about [`TIME_BUCKETS`] of them, at least one second each.
struct Buckets {
    width: f64,
    count: usize,
}

impl Buckets {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small positive counts
    fn for_run(duration_s: f64) -> Self {
        let width = (duration_s / TIME_BUCKETS).ceil().max(1.0);
        let count = (duration_s / width).ceil().max(1.0) as usize;
        Self { width, count }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // non-negative seconds
    fn of(&self, at_s: f64) -> usize {
        ((at_s.max(0.0) / self.width) as usize).min(self.count - 1)
    }

    #[allow(clippy::cast_precision_loss)] // bucket indices
    fn middle(&self, index: usize) -> f64 {
        (index as f64 + 0.5) * self.width
    }
}

fn latency_over_time(report: &Report, buckets: &Buckets) -> Result<String, String> {
    if report.timeline.turns.is_empty() {
        return Err("No turn completed.".into());
    }
    let mut by_bucket: Vec<Vec<f64>> = vec![Vec::new(); buckets.count];
    for &(at, ms) in &report.timeline.turns {
        by_bucket[buckets.of(at)].push(ms);
    }
    let mut series = [
        ("p50", RGBColor(31, 119, 180), 500),
        ("p95", RGBColor(255, 127, 14), 950),
        ("p99", RGBColor(214, 39, 40), 990),
    ]
    .map(|(name, color, _)| Series {
        name,
        color,
        points: Vec::new(),
    });
    for (index, samples) in by_bucket.iter_mut().enumerate() {
        if samples.is_empty() {
            continue;
        }
        samples.sort_by(f64::total_cmp);
        for (line, permille) in series.iter_mut().zip([500, 950, 990]) {
            line.points
                .push((buckets.middle(index), nearest_rank(samples, permille)));
        }
    }
    lines(&series, "seconds into the run", "turn latency (ms)")
}

fn nearest_rank(sorted: &[f64], permille: usize) -> f64 {
    let rank = (sorted.len() * permille).div_ceil(1000).max(1) - 1;
    sorted[rank.min(sorted.len() - 1)]
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // bin arithmetic on small positive numbers
fn histogram(report: &Report) -> Result<String, String> {
    if report.timeline.turns.is_empty() {
        return Err("No turn completed.".into());
    }
    // Up to a little past p99, so one straggler does not squash the rest; slower turns are
    // counted in the last bin.
    let top = (report.turn_ms.p99 * 1.2)
        .max(report.turn_ms.p50 * 2.0)
        .max(0.01);
    let width = top / HISTOGRAM_BINS as f64;
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    for &(_, ms) in &report.timeline.turns {
        counts[((ms / width) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(1).max(1);
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..top, 0.0..(highest as f64 * 1.1))
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "turn latency (ms; the last bin holds all ≥ {top:.1})"
            ))
            .y_desc("turns")
            .draw()
            .map_err(text)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &count)| {
                let x = i as f64 * width;
                Rectangle::new(
                    [(x, 0.0), (x + width * 0.92, count as f64)],
                    RGBColor(31, 119, 180).filled(),
                )
            }))
            .map_err(text)?;
        Ok(())
    })
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn throughput(report: &Report, buckets: &Buckets) -> Result<String, String> {
    if report.timeline.turns.is_empty() && report.timeline.failures.is_empty() {
        return Err("No turn ended.".into());
    }
    let mut turns = vec![0u64; buckets.count];
    let mut failures = vec![0u64; buckets.count];
    for &(at, _) in &report.timeline.turns {
        turns[buckets.of(at)] += 1;
    }
    for &at in &report.timeline.failures {
        failures[buckets.of(at)] += 1;
    }
    let per_second = |counts: &[u64]| {
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (buckets.middle(i), n as f64 / buckets.width))
            .collect()
    };
    lines(
        &[
            Series {
                name: "turns/s",
                color: RGBColor(44, 160, 44),
                points: per_second(&turns),
            },
            Series {
                name: "errors/s",
                color: RGBColor(214, 39, 40),
                points: per_second(&failures),
            },
        ],
        "seconds into the run",
        "per second",
    )
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn errors(report: &Report) -> Result<String, String> {
    if report.errors.is_empty() {
        return Err("No errors.".into());
    }
    let codes: Vec<(&String, u64)> = report.errors.iter().map(|(c, &n)| (c, n)).collect();
    let highest = codes.iter().map(|(_, n)| *n).max().unwrap_or(1) as f64;
    let n = codes.len();
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..highest * 1.15)
            .map_err(text)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|value| match value {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    codes.get(*i).map(|(c, _)| (*c).clone()).unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc("failed turns")
            .draw()
            .map_err(text)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(RGBColor(214, 39, 40).filled())
                    .margin(20)
                    .data(codes.iter().enumerate().map(|(i, (_, n))| (i, *n as f64))),
            )
            .map_err(text)?;
        Ok(())
    })
}

fn server_cpu(report: &Report) -> Result<String, String> {
    let samples: Vec<(f64, f64)> = report
        .timeline
        .health
        .iter()
        .filter_map(|h| h.cpu_seconds.map(|cpu| (h.at_s, cpu)))
        .collect();
    // Over windows of at least CPU_WINDOW_S: the kernel counts CPU time in 10 ms ticks, too
    // coarse for the 25 ms between samples.
    let mut points = Vec::new();
    let mut from = samples.first().copied();
    for &(at, cpu) in samples.iter().skip(1) {
        if let Some((since, was)) = from
            && at - since >= CPU_WINDOW_S
        {
            points.push((at, ((cpu - was) / (at - since) * 100.0).max(0.0)));
            from = Some((at, cpu));
        }
    }
    if points.is_empty() {
        return Err(NO_PROCESS.into());
    }
    lines(
        &[Series {
            name: "CPU (% of one core)",
            color: RGBColor(148, 103, 189),
            points,
        }],
        "seconds into the run",
        "% of one core",
    )
}

#[allow(clippy::cast_precision_loss)] // bytes to megabytes
fn server_rss(report: &Report) -> Result<String, String> {
    let points: Vec<(f64, f64)> = report
        .timeline
        .health
        .iter()
        .filter_map(|h| h.rss_bytes.map(|rss| (h.at_s, mb(rss))))
        .collect();
    if points.is_empty() {
        return Err(NO_PROCESS.into());
    }
    lines(
        &[Series {
            name: "RSS (MB)",
            color: RGBColor(140, 86, 75),
            points,
        }],
        "seconds into the run",
        "MB",
    )
}

const NO_PROCESS: &str = "The server did not give its process figures in /health during the \
    run (they are shown to admin keys: pass --key with an admin key).";

/// A line chart of `series`, from 0 on both axes.
fn lines(series: &[Series], x_desc: &str, y_desc: &str) -> Result<String, String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = all.fold((1e-9_f64, 1e-9_f64), |(x, y), &(px, py)| {
        (x.max(px), y.max(py))
    });
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max * 1.02, 0.0..y_max * 1.15)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(text)?;
        for line in series {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(text)?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(text)?;
        Ok(())
    })
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// An SVG drawn by `paint` on a white area of the page's plot size.
fn draw(paint: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        paint(&root)?;
        root.present().map_err(text)?;
    }
    Ok(svg)
}

fn text(error: impl std::fmt::Display) -> String {
    format!("the plot could not be drawn: {error}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::loadtest::report::{HealthPoint, Percentiles, ServerFigures, Timeline};

    fn report(timeline: Timeline) -> Report {
        Report {
            url: "ws://127.0.0.1:1/ws/chat?<x>".into(),
            connections: 1,
            rate: None,
            duration_s: 0.0,
            turns_completed: timeline.turns.len() as u64,
            turns_failed: 0,
            error_rate: 0.0,
            turns_per_s: 0.0,
            errors: BTreeMap::new(),
            ttft_ms: Percentiles::default(),
            turn_ms: Percentiles::of(vec![Duration::from_millis(2); timeline.turns.len()]),
            server: ServerFigures::default(),
            slos: Vec::new(),
            tool_call: None,
            tool_calls: 0,
            timeline,
        }
    }

    #[test]
    fn an_empty_run_says_what_is_missing_instead_of_plotting() {
        let page = render(&report(Timeline::default()));
        assert!(page.contains("No turn completed."));
        assert!(page.contains("No errors."));
        assert!(page.contains("admin keys"));
        assert!(!page.contains("<svg"));
        assert!(page.contains("?&lt;x&gt;"), "the URL is escaped");
    }

    #[test]
    fn a_run_in_no_time_with_equal_latencies_still_plots() {
        let health = (0..12)
            .map(|i| HealthPoint {
                at_s: f64::from(i) * 0.2,
                round_trip: Duration::from_millis(1),
                cpu_seconds: Some(f64::from(i) * 0.05),
                rss_bytes: Some(40 << 20),
            })
            .collect();
        let page = render(&report(Timeline {
            turns: vec![(0.0, 2.0); 5],
            failures: Vec::new(),
            health,
        }));
        assert_eq!(page.matches("<svg").count(), 5, "every plot but errors");
        assert!(!page.contains("could not be drawn"));
    }
}
