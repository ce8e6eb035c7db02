//! When scheduled runs happen: Airflow 2's data-interval semantics for cron schedules.
//!
//! A run covers `[start, end)`; it is created once `end` has passed; its `logical_date` is `start`.
//! Cron expressions are evaluated in the DAG's timezone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::dag::{Dag, Schedule};

/// The next scheduled run of a DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRun {
    pub logical_date: DateTime<Utc>,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    /// The run may be created at or after this time.
    pub create_after: DateTime<Utc>,
}

/// The data interval of the last scheduled run, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
}

fn next_tick(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

fn prev_tick(cron: &cron::Schedule, tz: Tz, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.after(&before.with_timezone(&tz))
        .next_back()
        .map(|t| t.with_timezone(&Utc))
}

/// `time` itself when it is a tick, else the next tick.
fn align_next(cron: &cron::Schedule, tz: Tz, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if cron.includes(time.with_timezone(&tz)) {
        Some(time)
    } else {
        next_tick(cron, tz, time)
    }
}

/// `time` itself when it is a tick, else the previous tick.
fn align_prev(cron: &cron::Schedule, tz: Tz, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if cron.includes(time.with_timezone(&tz)) {
        Some(time)
    } else {
        prev_tick(cron, tz, time)
    }
}

/// The next run after `last` (Airflow's `next_dagrun_info`), or `None` when there is none:
/// manual-only DAGs, `@once` already run, or past `end_date`.
///
/// Without `catchup`, the run skips to the latest interval that has already ended at `now`.
/// A DAG without `start_date` behaves as `catchup: false` (there is nothing to catch up from).
pub fn next_run(dag: &Dag, last: Option<LastRun>, now: DateTime<Utc>) -> Option<NextRun> {
    match &dag.schedule {
        Schedule::Manual => None,
        Schedule::Once => {
            if last.is_some() {
                return None;
            }
            let start = dag.start_date.unwrap_or(now);
            Some(NextRun {
                logical_date: start,
                interval_start: start,
                interval_end: start,
                create_after: start,
            })
        }
        Schedule::Cron { .. } => {
            let cron = dag.schedule.cron()?;
            let tz = dag.timezone;
            let earliest = dag
                .start_date
                .and_then(|start| align_next(&cron, tz, start));
            let mut start = match (last, earliest) {
                (Some(last), Some(earliest)) => last.interval_end.max(earliest),
                (Some(last), None) => last.interval_end,
                (None, Some(earliest)) => earliest,
                (None, None) => skip_to_latest(&cron, tz, now)?,
            };
            if (!dag.catchup || dag.start_date.is_none())
                && let Some(latest) = skip_to_latest(&cron, tz, now)
            {
                start = start.max(latest);
            }
            // A stored interval end may not be a tick (the schedule was edited): realign.
            let start = align_next(&cron, tz, start)?;
            if dag.end_date.is_some_and(|end| start > end) {
                return None;
            }
            let end = next_tick(&cron, tz, start)?;
            Some(NextRun {
                logical_date: start,
                interval_start: start,
                interval_end: end,
                create_after: end,
            })
        }
    }
}

/// The start of the latest interval that has ended at `now` (Airflow's `_skip_to_latest`).
fn skip_to_latest(cron: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let last_end = align_prev(cron, tz, now)?;
    prev_tick(cron, tz, last_end)
}

/// The data interval of a manual run at `logical_date` (Airflow's `infer_manual_data_interval`):
/// for a cron schedule, the latest complete interval ending at or before it; otherwise the
/// instant itself.
pub fn manual_interval(dag: &Dag, logical_date: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let Some(cron) = dag.schedule.cron() else {
        return (logical_date, logical_date);
    };
    let tz = dag.timezone;
    match align_prev(&cron, tz, logical_date)
        .and_then(|end| Some((prev_tick(&cron, tz, end)?, end)))
    {
        Some(interval) => interval,
        None => (logical_date, logical_date),
    }
}

/// The data interval of a backfill run at `logical_date`: the schedule's interval starting
/// there (the instant itself for non-cron schedules).
pub fn interval_starting_at(
    dag: &Dag,
    logical_date: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    match dag.schedule.cron() {
        Some(cron) => match next_tick(&cron, dag.timezone, logical_date) {
            Some(end) => (logical_date, end),
            None => (logical_date, logical_date),
        },
        None => (logical_date, logical_date),
    }
}

/// Every interval start of the schedule in `[start, end]` (for backfills).
pub fn ticks_between(dag: &Dag, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let Some(cron) = dag.schedule.cron() else {
        return vec![start];
    };
    let tz = dag.timezone;
    let mut ticks = Vec::new();
    let mut next = align_next(&cron, tz, start);
    while let Some(tick) = next.filter(|tick| *tick <= end) {
        ticks.push(tick);
        next = next_tick(&cron, tz, tick);
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::values::parse_schedule;

    fn dag(schedule: &str, start: &str, catchup: bool) -> Dag {
        let mut dag = Dag::default();
        dag.schedule = parse_schedule(schedule).unwrap();
        dag.start_date = Some(start.parse().unwrap());
        dag.catchup = catchup;
        dag
    }

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn daily_catchup_walks_every_interval() {
        let dag = dag("@daily", "2024-01-01T00:00:00Z", true);
        let now = t("2024-01-03T12:00:00Z");
        let first = next_run(&dag, None, now).unwrap();
        assert_eq!(first.logical_date, t("2024-01-01T00:00:00Z"));
        assert_eq!(first.interval_end, t("2024-01-02T00:00:00Z"));
        assert_eq!(first.create_after, first.interval_end);
        let last = LastRun {
            interval_start: first.interval_start,
            interval_end: first.interval_end,
        };
        let second = next_run(&dag, Some(last), now).unwrap();
        assert_eq!(second.logical_date, t("2024-01-02T00:00:00Z"));
        let last = LastRun {
            interval_start: second.interval_start,
            interval_end: second.interval_end,
        };
        let third = next_run(&dag, Some(last), now).unwrap();
        // Not yet due: its interval ends tomorrow.
        assert_eq!(third.create_after, t("2024-01-04T00:00:00Z"));
    }

    #[test]
    fn without_catchup_only_the_latest_interval_runs() {
        let dag = dag("@daily", "2024-01-01T00:00:00Z", false);
        let next = next_run(&dag, None, t("2024-01-10T12:00:00Z")).unwrap();
        assert_eq!(next.logical_date, t("2024-01-09T00:00:00Z"));
        assert_eq!(next.interval_end, t("2024-01-10T00:00:00Z"));
    }

    #[test]
    fn an_unaligned_start_date_starts_at_the_next_tick_and_end_date_stops() {
        let mut dag = dag("0 3 * * *", "2024-01-01T10:00:00Z", true);
        let next = next_run(&dag, None, t("2024-02-01T00:00:00Z")).unwrap();
        assert_eq!(next.logical_date, t("2024-01-02T03:00:00Z"));
        dag.end_date = Some(t("2024-01-01T23:00:00Z"));
        assert_eq!(next_run(&dag, None, t("2024-02-01T00:00:00Z")), None);
    }

    #[test]
    fn timezones_shift_ticks() {
        let mut dag = dag("@daily", "2024-01-01T00:00:00Z", true);
        dag.timezone = "Europe/Paris".parse().unwrap();
        let next = next_run(&dag, None, t("2024-02-01T00:00:00Z")).unwrap();
        // Midnight in Paris is 23:00 UTC in winter.
        assert_eq!(next.logical_date, t("2024-01-01T23:00:00Z"));
    }

    #[test]
    fn once_and_manual() {
        let once = dag("@once", "2024-01-01T00:00:00Z", true);
        let next = next_run(&once, None, t("2024-02-01T00:00:00Z")).unwrap();
        assert_eq!(next.logical_date, t("2024-01-01T00:00:00Z"));
        let last = LastRun {
            interval_start: next.interval_start,
            interval_end: next.interval_end,
        };
        assert_eq!(next_run(&once, Some(last), t("2024-02-01T00:00:00Z")), None);
        assert_eq!(
            next_run(&Dag::default(), None, t("2024-02-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn manual_runs_cover_the_latest_complete_interval() {
        let dag = dag("@daily", "2024-01-01T00:00:00Z", true);
        let (start, end) = manual_interval(&dag, t("2024-01-05T10:00:00Z"));
        assert_eq!(
            (start, end),
            (t("2024-01-04T00:00:00Z"), t("2024-01-05T00:00:00Z"))
        );
        let at = t("2024-01-05T10:00:00Z");
        assert_eq!(manual_interval(&Dag::default(), at), (at, at));
    }
}
