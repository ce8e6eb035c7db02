//! Charts drawn as SVG on the server: a run's Gantt chart (each try of each task: waiting in
//! the queue, then running), the durations of a DAG's tasks over its latest runs, and a
//! calendar of its daily run states.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::{escape_html, fmt_date, fmt_duration};

/// One try's bar: queued from `queued_at`, running from `start_date` to `end_date` (still
/// running: to now).
pub struct GanttTry {
    pub try_number: i32,
    pub state: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

pub struct GanttRow {
    pub task_id: String,
    pub tries: Vec<GanttTry>,
}

const LABEL_W: f64 = 170.0;
const PLOT_W: f64 = 760.0;
const ROW_H: f64 = 22.0;
const AXIS_H: f64 = 22.0;

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1e3
}

/// The Gantt chart of a run; `None` when no try has started.
pub fn gantt(rows: &[GanttRow], now: DateTime<Utc>) -> Option<String> {
    let times = rows.iter().flat_map(|row| &row.tries).flat_map(|t| {
        [
            t.queued_at,
            t.start_date,
            t.end_date.or(t.start_date.map(|_| now)),
        ]
    });
    let (first, last) = times.flatten().fold((None, None), |(lo, hi), t| {
        (
            Some(lo.map_or(t, |lo: DateTime<Utc>| lo.min(t))),
            Some(hi.map_or(t, |hi: DateTime<Utc>| hi.max(t))),
        )
    });
    let (first, last) = (first?, last?);
    let span = seconds(first, last).max(0.001);
    let x = |t: DateTime<Utc>| LABEL_W + seconds(first, t) / span * PLOT_W;
    let height = AXIS_H + rows.len() as f64 * ROW_H + 4.0;
    let width = LABEL_W + PLOT_W + 10.0;
    let mut svg = format!(
        "<svg class=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"Gantt chart of the run's tries\">"
    );
    for step in 0..=4 {
        let at = LABEL_W + PLOT_W * f64::from(step) / 4.0;
        let label = fmt_duration(Some(span * f64::from(step) / 4.0));
        let anchor = match step {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{at:.1}\" y1=\"{AXIS_H}\" x2=\"{at:.1}\" y2=\"{height}\"/>\
             <text class=\"axis\" x=\"{at:.1}\" y=\"14\" text-anchor=\"{anchor}\">+{label}</text>"
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = AXIS_H + i as f64 * ROW_H;
        let _ = write!(
            svg,
            "<text class=\"label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 8.0,
            y + ROW_H * 0.68,
            escape_html(&row.task_id)
        );
        for t in &row.tries {
            let Some(start) = t.start_date.or(t.queued_at) else {
                continue;
            };
            let end = t.end_date.unwrap_or(now).max(start);
            let title = escape_html(&format!(
                "{} try {}: {}\nqueued {}\nstart {}\nend {}\nduration {}",
                row.task_id,
                t.try_number,
                t.state,
                fmt_date(t.queued_at),
                fmt_date(t.start_date),
                fmt_date(t.end_date),
                fmt_duration(t.start_date.map(|s| seconds(s, end))),
            ));
            let _ = write!(
                svg,
                "<g class=\"try\" data-task=\"{}\" data-try=\"{}\"><title>{title}</title>",
                escape_html(&row.task_id),
                t.try_number
            );
            if let (Some(queued), Some(started)) = (t.queued_at, t.start_date)
                && started > queued
            {
                let _ = write!(
                    svg,
                    "<rect class=\"queued\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
                    x(queued),
                    y + 6.0,
                    (x(started) - x(queued)).max(1.0),
                    ROW_H - 12.0
                );
            }
            if let Some(started) = t.start_date {
                let _ = write!(
                    svg,
                    "<rect class=\"st-{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\"/>",
                    escape_html(&t.state),
                    x(started),
                    y + 3.0,
                    (x(end) - x(started)).max(2.0),
                    ROW_H - 6.0
                );
            }
            svg.push_str("</g>");
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// One run's duration of each task (seconds, `None` when it did not run).
pub struct DurationColumn {
    pub run_id: String,
    pub seconds: Vec<Option<f64>>,
}

const SERIES: usize = 8;

/// Task durations over runs (oldest left), one line per task: the [`SERIES`] tasks with the
/// longest total, the rest left out (said in the legend).
pub fn task_durations(task_ids: &[String], columns: &[DurationColumn]) -> Option<String> {
    let mut totals: Vec<(usize, f64)> = (0..task_ids.len())
        .map(|task| {
            let total = columns.iter().filter_map(|c| c.seconds[task]).sum::<f64>();
            (task, total)
        })
        .filter(|(_, total)| *total > 0.0)
        .collect();
    if totals.is_empty() || columns.is_empty() {
        return None;
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let left_out = totals.len().saturating_sub(SERIES);
    totals.truncate(SERIES);
    let longest = columns
        .iter()
        .flat_map(|c| totals.iter().filter_map(|(task, _)| c.seconds[*task]))
        .fold(0.0, f64::max)
        .max(0.001);
    let (left, plot_w, plot_h, top) = (60.0, 700.0, 160.0, 10.0);
    let step = plot_w / (columns.len().max(2) - 1) as f64;
    let x = |i: usize| left + i as f64 * step;
    let y = |s: f64| top + plot_h - s / longest * plot_h;
    let legend_h = 18.0 * totals.len().div_ceil(3) as f64 + if left_out > 0 { 18.0 } else { 0.0 };
    let height = top + plot_h + 24.0 + legend_h;
    let width = left + plot_w + 20.0;
    let mut svg = format!(
        "<svg class=\"durations\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"task durations over the latest runs\">"
    );
    for step in 0..=2 {
        let s = longest * f64::from(step) / 2.0;
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\"/>\
             <text class=\"axis\" x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            y(s),
            left + plot_w,
            left - 6.0,
            y(s) + 4.0,
            fmt_duration(Some(s))
        );
    }
    for (series, (task, _)) in totals.iter().enumerate() {
        let points: Vec<String> = columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.seconds[*task].map(|s| format!("{:.1},{:.1}", x(i), y(s))))
            .collect();
        let name = escape_html(&task_ids[*task]);
        let _ = write!(
            svg,
            "<g class=\"series s{series}\" data-task=\"{name}\"><title>{name}</title>\
             <polyline points=\"{}\"/>",
            points.join(" ")
        );
        for (i, c) in columns.iter().enumerate() {
            if let Some(s) = c.seconds[*task] {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{name} · {} · {}</title></circle>",
                    x(i),
                    y(s),
                    escape_html(&c.run_id),
                    fmt_duration(Some(s))
                );
            }
        }
        let (lx, ly) = (
            left + (series % 3) as f64 * 240.0,
            top + plot_h + 34.0 + (series / 3) as f64 * 18.0,
        );
        let _ = write!(
            svg,
            "<line x1=\"{lx}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/><text class=\"axis\" x=\"{2}\" y=\"{3}\">{name}</text></g>",
            ly - 4.0,
            lx + 16.0,
            lx + 22.0,
            ly
        );
    }
    if left_out > 0 {
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{left}\" y=\"{:.1}\">and {left_out} shorter tasks</text>",
            height - 6.0
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// The calendar's cell of one day: the runs of that day, by state.
pub struct Day {
    pub day: NaiveDate,
    pub state: String,
    pub title: String,
}

/// A year of days, a column per week (Monday on top), each day coloured by its runs: failed if
/// any failed, else running if any is unfinished, else success.
pub fn calendar(days: &[Day], today: NaiveDate) -> String {
    let by_day: BTreeMap<NaiveDate, &Day> = days.iter().map(|d| (d.day, d)).collect();
    let first = today - Duration::days(364);
    let first = first - Duration::days(i64::from(first.weekday().num_days_from_monday()));
    let cell = 12.0;
    let weeks = ((today - first).num_days() / 7 + 1) as f64;
    let (left, top) = (28.0, 16.0);
    let width = left + weeks * (cell + 2.0) + 4.0;
    let height = top + 7.0 * (cell + 2.0) + 4.0;
    let mut svg = format!(
        "<svg class=\"calendar\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"daily run states over the last year\">"
    );
    for (row, name) in [(0, "Mon"), (2, "Wed"), (4, "Fri")] {
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"0\" y=\"{:.1}\">{name}</text>",
            top + f64::from(row) * (cell + 2.0) + cell - 2.0
        );
    }
    let mut day = first;
    while day <= today {
        let offset = (day - first).num_days();
        let (column, row) = ((offset / 7) as f64, (offset % 7) as f64);
        let (px, py) = (left + column * (cell + 2.0), top + row * (cell + 2.0));
        if day.day() == 1 {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{px:.1}\" y=\"10\">{}</text>",
                day.format("%b")
            );
        }
        let (state, title) = match by_day.get(&day) {
            Some(d) => (d.state.as_str(), format!("{}: {}", day, d.title)),
            None => ("none", format!("{day}: no runs")),
        };
        let _ = write!(
            svg,
            "<rect class=\"day st-{state}\" x=\"{px:.1}\" y=\"{py:.1}\" width=\"{cell}\" \
             height=\"{cell}\" rx=\"2\" data-day=\"{day}\"><title>{}</title></rect>",
            escape_html(&title)
        );
        day += Duration::days(1);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        Some(DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(seconds))
    }

    #[test]
    fn the_gantt_draws_every_try_with_its_queued_and_running_parts() {
        let rows = vec![GanttRow {
            task_id: "flaky".into(),
            tries: vec![
                GanttTry {
                    try_number: 1,
                    state: "up_for_retry".into(),
                    queued_at: at(0),
                    start_date: at(1),
                    end_date: at(3),
                },
                GanttTry {
                    try_number: 2,
                    state: "success".into(),
                    queued_at: at(5),
                    start_date: at(6),
                    end_date: at(10),
                },
            ],
        }];
        let svg = gantt(&rows, at(20).unwrap()).expect("a chart");
        assert!(svg.contains("data-try=\"1\"") && svg.contains("data-try=\"2\""));
        assert_eq!(svg.matches("class=\"queued\"").count(), 2);
        assert!(svg.contains("class=\"st-up_for_retry\"") && svg.contains("class=\"st-success\""));
        assert!(
            gantt(&[], at(0).unwrap()).is_none(),
            "nothing ran: no chart"
        );
    }

    #[test]
    fn the_calendar_covers_a_year_and_colours_days_with_runs() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let days = vec![Day {
            day: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            state: "failed".into(),
            title: "1 failed".into(),
        }];
        let svg = calendar(&days, today);
        assert!(svg.matches("class=\"day ").count() >= 365);
        assert!(svg.contains("class=\"day st-failed\" x="));
        assert!(svg.contains("data-day=\"2026-12-07\""));
    }
}
