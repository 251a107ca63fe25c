//! Cron expressions: five fields (minute hour day-of-month month day-of-week) or six (seconds
//! first), as Vixie cron reads them: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists,
//! month and weekday names, 7 for Sunday, `$` for the last day of the month, and the shorthands
//! `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. When both day fields are restricted, a
//! day matches either. Times are wall-clock times, counted in seconds since 1970-01-01 00:00:00
//! of that clock (no time zone: `schedule::tick` converts).

/// A parsed expression: the allowed values of each field as bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    last_day: bool,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses an expression; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim().to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            other => other.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(format!("a cron expression has 5 or 6 fields, not {n}")),
        };
        let day_field = rest[2];
        let last_day = day_field == "$";
        Ok(Cron {
            seconds: field(seconds, 0, 59, &[], "seconds")?,
            minutes: field(rest[0], 0, 59, &[], "minutes")?,
            hours: field(rest[1], 0, 23, &[], "hours")?,
            days: if last_day {
                0
            } else {
                field(day_field, 1, 31, &[], "day of month")?
            },
            months: field(rest[3], 1, 12, &MONTHS, "month")?,
            weekdays: {
                let bits = field(rest[4], 0, 7, &WEEKDAYS, "day of week")?;
                // 7 is Sunday too.
                (bits | (bits >> 7)) & 0x7f
            },
            last_day,
            days_restricted: day_field != "*",
            weekdays_restricted: rest[4] != "*",
        })
    }

    /// The first time after `after` (seconds of the wall clock) that the expression matches,
    /// within ten years.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let limit = after + 10 * 366 * 86_400;
        let mut t = after + 1;
        while t <= limit {
            let (day_number, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
            let (year, month, day) = civil_from_days(day_number);
            if !has(self.months, month) {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                t = days_from_civil(y, m, 1) * 86_400;
                continue;
            }
            if !self.day_matches(year, month, day, day_number) {
                t = (day_number + 1) * 86_400;
                continue;
            }
            let (hour, minute, second) = (secs / 3600, secs % 3600 / 60, secs % 60);
            if !has(self.hours, hour as u32) {
                t = day_number * 86_400 + (hour + 1) * 3600;
                continue;
            }
            if !has(self.minutes, minute as u32) {
                t = day_number * 86_400 + hour * 3600 + (minute + 1) * 60;
                continue;
            }
            if !has(self.seconds, second as u32) {
                t += 1;
                continue;
            }
            return Some(t);
        }
        None
    }

    fn day_matches(&self, year: i64, month: u32, day: u32, day_number: i64) -> bool {
        let by_day = if self.last_day {
            day == days_in_month(year, month)
        } else {
            has(self.days, day)
        };
        // 1970-01-01 was a Thursday (4).
        let by_weekday = has(self.weekdays, (day_number + 4).rem_euclid(7) as u32);
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            (true, false) => by_day,
            (false, true) => by_weekday,
            (false, false) => true,
        }
    }
}

fn has(bits: u64, value: u32) -> bool {
    bits & (1u64 << value) != 0
}

/// One field: a comma-separated list of `*`, `n`, `a-b`, each with an optional `/step`.
fn field(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step \"{step}\" in the {what} field"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, min, max, names, what)?,
                value(b, min, max, names, what)?,
            )
        } else {
            let v = value(range, min, max, names, what)?;
            // "5/15" runs from 5 to the end of the range.
            (v, if item.contains('/') { max } else { v })
        };
        if low > high {
            return Err(format!(
                "range {low}-{high} of the {what} field is backwards"
            ));
        }
        for v in (low..=high).step_by(step as usize) {
            bits |= 1u64 << v;
        }
    }
    Ok(bits)
}

fn value(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<u32, String> {
    let offset = if names.len() == 12 { 1 } else { 0 };
    let v = match text.parse::<u32>() {
        Ok(v) => v,
        Err(_) => names
            .iter()
            .position(|n| *n == text)
            .map(|i| i as u32 + offset)
            .ok_or_else(|| format!("\"{text}\" is not a value of the {what} field"))?,
    };
    if v < min || v > max {
        return Err(format!(
            "{v} is out of range for the {what} field ({min}-{max})"
        ));
    }
    Ok(v)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    fn next(expr: &str, after: i64) -> Option<i64> {
        Cron::parse(expr).unwrap().next_after(after)
    }

    #[test]
    fn dates_round_trip() {
        for days in [-800_000, -1, 0, 59, 365, 11_016, 20_454, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn five_and_six_fields() {
        let base = at(2026, 12, 6, 10, 7, 30);
        assert_eq!(next("*/15 * * * *", base), Some(at(2026, 12, 6, 10, 15, 0)));
        assert_eq!(next("* * * * * *", base), Some(base + 1));
        assert_eq!(
            next("*/10 * * * * *", base),
            Some(at(2026, 12, 6, 10, 7, 40))
        );
        assert_eq!(next("0 0 * * *", base), Some(at(2026, 12, 7, 0, 0, 0)));
        assert_eq!(next("30 9 * * 1-5", base), Some(at(2026, 12, 7, 9, 30, 0)));
        assert_eq!(next("@hourly", base), Some(at(2026, 12, 6, 11, 0, 0)));
    }

    #[test]
    fn strictly_after() {
        let tick = at(2026, 12, 6, 10, 15, 0);
        assert_eq!(next("*/15 * * * *", tick), Some(at(2026, 12, 6, 10, 30, 0)));
    }

    #[test]
    fn names_lists_ranges_steps() {
        let base = at(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            next("0 12 * feb,mar mon", base),
            Some(at(2026, 2, 2, 12, 0, 0))
        );
        assert_eq!(next("0 0 * * 7", base), Some(at(2026, 1, 4, 0, 0, 0)));
        assert_eq!(next("0 0 * * SUN", base), Some(at(2026, 1, 4, 0, 0, 0)));
        assert_eq!(next("5-10/5 8 * * *", base), Some(at(2026, 1, 1, 8, 5, 0)));
        assert_eq!(
            next("20/20 8 * * *", at(2026, 1, 1, 8, 21, 0)),
            Some(at(2026, 1, 1, 8, 40, 0))
        );
    }

    #[test]
    fn day_fields_or_when_both_restricted() {
        // The 13th, or any Friday: 2026-02-06 is a Friday, before the 13th.
        let base = at(2026, 2, 1, 0, 0, 0);
        assert_eq!(next("0 0 13 * 5", base), Some(at(2026, 2, 6, 0, 0, 0)));
        assert_eq!(next("0 0 13 * *", base), Some(at(2026, 2, 13, 0, 0, 0)));
    }

    #[test]
    fn last_day_and_leap_years() {
        assert_eq!(
            next("0 12 $ * *", at(2028, 2, 1, 0, 0, 0)),
            Some(at(2028, 2, 29, 12, 0, 0))
        );
        assert_eq!(
            next("0 12 $ * *", at(2026, 4, 30, 13, 0, 0)),
            Some(at(2026, 5, 31, 12, 0, 0))
        );
        assert_eq!(
            next("0 0 29 2 *", at(2026, 3, 1, 0, 0, 0)),
            Some(at(2028, 2, 29, 0, 0, 0))
        );
        assert_eq!(next("0 0 30 2 *", at(2026, 3, 1, 0, 0, 0)), None);
    }

    #[test]
    fn bad_expressions() {
        for bad in [
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "1,,2 * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
