//! Checks of single values: schedules, timezones, dates, ids, and "did you mean" suggestions.
//! Each returns the error message without location; the builder adds the position.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::model::Schedule;

/// Airflow's presets and their 5-field crontab.
const PRESETS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// A `schedule:` string: `@once`, a preset, or a 5-field crontab (converted for the `cron` crate).
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let written = text.trim();
    if written == "@once" {
        return Ok(Schedule::Once);
    }
    let crontab = if written.starts_with('@') {
        PRESETS.iter().find(|(name, _)| *name == written).map(|(_, crontab)| *crontab).ok_or_else(|| {
            format!(
                "unknown schedule preset `{written}`; use @once, @hourly, @daily, @weekly, @monthly, @yearly or a 5-field cron expression"
            )
        })?
    } else {
        written
    };
    let seconds_form = crontab_to_seconds_form(crontab)?;
    seconds_form.parse::<cron::Schedule>().map_err(|error| {
        // The crate's message repeats the seconds form with a caret; its last line is the reason.
        let text = error.to_string();
        let reason = text
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or(&text)
            .trim()
            .to_string();
        format!("invalid cron expression `{written}`: {reason}")
    })?;
    Ok(Schedule::Cron {
        expression: written.to_string(),
        seconds_form,
    })
}

/// `m h dom mon dow` → `0 m h dom mon dow'`, where `dow'` counts days the `cron` crate's way
/// (1 = Sunday … 7 = Saturday; crontab has 0 or 7 = Sunday … 6 = Saturday).
fn crontab_to_seconds_form(crontab: &str) -> Result<String, String> {
    let fields: Vec<&str> = crontab.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "invalid cron expression `{crontab}`: expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    // The crate ANDs day-of-month and day-of-week; crontab ORs them. Refuse rather than misfire.
    if fields[2] != "*" && fields[2] != "?" && fields[4] != "*" && fields[4] != "?" {
        return Err(format!(
            "invalid cron expression `{crontab}`: restricting both day-of-month and day-of-week is not supported; write two DAGs or use one of them"
        ));
    }
    let day_of_week = convert_day_of_week(fields[4])
        .map_err(|message| format!("invalid cron expression `{crontab}`: {message}"))?;
    Ok(format!(
        "0 {} {} {} {} {day_of_week}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

fn convert_day_of_week(field: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        let range = match range.split_once('-') {
            Some((start, end)) => {
                let start = day_number(start)?;
                let end = day_number(end)?;
                // `5-7` (Fri-Sun): Sunday 7 wraps to the crate's 1.
                if end == "1" && start != "1" {
                    format!("{start}-7,1")
                } else {
                    format!("{start}-{end}")
                }
            }
            None => day_number(range)?,
        };
        parts.push(match step {
            Some(step) => format!("{range}/{step}"),
            None => range,
        });
    }
    Ok(parts.join(","))
}

fn day_number(text: &str) -> Result<String, String> {
    match text.parse::<u8>() {
        Ok(0 | 7) => Ok("1".into()),
        Ok(day @ 1..=6) => Ok((day + 1).to_string()),
        Ok(day) => Err(format!("day of week {day} is out of range 0-7")),
        // `*`, `?` and names (MON, fri) mean the same to both.
        Err(_) => Ok(text.to_string()),
    }
}

pub fn parse_timezone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!("unknown timezone `{text}`; use an IANA name like `UTC` or `Europe/Paris`")
    })
}

/// `2023-09-03`, `2023-09-03 10:00`, `2023-09-03T10:00:00`, optionally with `Z` or an offset.
/// Dates without an offset are in the DAG's timezone (as in Airflow).
pub fn parse_date(text: &str, timezone: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(datetime) = DateTime::parse_from_rfc3339(text) {
        return Ok(datetime.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(datetime) = DateTime::parse_from_str(text, format) {
            return Ok(datetime.with_timezone(&Utc));
        }
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|date| date.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| {
        format!("invalid date `{text}`; expected e.g. `2023-09-03` or `2023-09-03 10:00`")
    })?;
    timezone
        .from_local_datetime(&naive)
        .earliest()
        .map(|datetime| datetime.with_timezone(&Utc))
        .ok_or_else(|| format!("`{text}` does not exist in timezone {timezone}"))
}

/// Airflow's rule for dag and task ids: letters, digits, `_`, `-`, `.`; at most 250 characters.
pub fn check_id(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.len() > 250 {
        return Err("is longer than 250 characters".into());
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "`{text}` contains `{bad}`; use letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

/// The known name closest to a typo, if close enough to be a likely intent.
pub fn suggest<'a>(typo: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|name| (edit_distance(typo, name), *name))
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds_form(text: &str) -> String {
        match parse_schedule(text).unwrap() {
            Schedule::Cron { seconds_form, .. } => seconds_form,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crontabs_and_presets_convert_to_the_seconds_form() {
        assert_eq!(seconds_form("0 3 * * *"), "0 0 3 * * *");
        assert_eq!(seconds_form("@daily"), "0 0 0 * * *");
        assert_eq!(seconds_form("*/15 9-17 * * 1-5"), "0 */15 9-17 * * 2-6");
        assert_eq!(seconds_form("0 0 * * 0"), "0 0 0 * * 1");
        assert_eq!(seconds_form("0 0 * * 5-7"), "0 0 0 * * 6-7,1");
        assert_eq!(seconds_form("0 0 * * MON-FRI"), "0 0 0 * * MON-FRI");
        assert_eq!(parse_schedule("@once"), Ok(Schedule::Once));
    }

    #[test]
    fn weekday_numbers_keep_their_crontab_meaning() {
        use chrono::Datelike;
        // crontab 1 = Monday.
        let schedule = parse_schedule("0 0 * * 1").unwrap().cron().unwrap();
        let next = schedule.upcoming(Utc).next().unwrap();
        assert_eq!(next.weekday(), chrono::Weekday::Mon);
    }

    #[test]
    fn bad_schedules_are_rejected_with_the_crate_message() {
        let error = parse_schedule("61 * * * *").unwrap_err();
        assert!(error.contains("Minutes"), "{error}");
        assert!(
            parse_schedule("0 0 0 * * *")
                .unwrap_err()
                .contains("expected 5 fields")
        );
        assert!(
            parse_schedule("@fortnightly")
                .unwrap_err()
                .contains("unknown schedule preset")
        );
        assert!(
            parse_schedule("0 0 1 * 1")
                .unwrap_err()
                .contains("both day-of-month and day-of-week")
        );
    }

    #[test]
    fn dates_without_offset_are_in_the_dag_timezone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            parse_date("2023-09-03 10:00", paris).unwrap().to_rfc3339(),
            "2023-09-03T08:00:00+00:00"
        );
        assert_eq!(
            parse_date("2023-09-03", Tz::UTC).unwrap().to_rfc3339(),
            "2023-09-03T00:00:00+00:00"
        );
        assert_eq!(
            parse_date("2023-09-03T10:00:00Z", paris)
                .unwrap()
                .to_rfc3339(),
            "2023-09-03T10:00:00+00:00"
        );
        assert!(parse_date("03/09/2023", Tz::UTC).is_err());
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(
            suggest("shedule", &["schedule", "start_date"]),
            Some("schedule")
        );
        assert_eq!(suggest("banana", &["schedule", "start_date"]), None);
    }
}
