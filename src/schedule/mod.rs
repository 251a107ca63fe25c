//! Schedules: runs of a flow started by the background worker, on a cron expression (with
//! optional seconds) in a time zone, or on an interval.
//!
//! - `schedule_flow`: schedule_flow; `pause_schedule`: pause_schedule and resume_schedule;
//!   `unschedule`: unschedule; `list_schedules` is SQL (sql/pgflow_schedule.sql)
//! - `fire`: the worker fires due schedules, one run per tick, in the transaction that moves the
//!   schedule to its next tick
//! - `cron`: parsing and matching cron expressions on a wall clock
//!
//! Ticks are instants. A cron expression is matched on the wall clock of its time zone; at a
//! daylight-saving change, a tick whose wall time does not exist fires at the change, and a wall
//! time that occurs twice fires at its first occurrence only.

pub mod cron;
mod fire;

pub(crate) use fire::{fire_due, next_due};
mod pause_schedule;
mod schedule_flow;
mod unschedule;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{INT8OID, INTERVALOID, TEXTOID, TIMESTAMPTZOID};
use pgrx::spi::SpiClient;

use crate::statement::{Statement, first, named};

/// Wake-up key of the database workers (no queue name has a space).
pub(crate) const WAKE_KEY: &str = " pgflow schedules";

/// What a schedule says: a cron expression, or an interval (`every`, counted from `anchor`).
pub(crate) enum Rule {
    Cron(cron::Cron),
    Every,
}

static LOCAL_SECONDS: Statement = Statement::new(
    "SELECT floor(extract(epoch FROM timezone($1, $2)))::bigint AS local",
    &[TEXTOID, TIMESTAMPTZOID],
);

// The instant of a wall time (seconds since 1970 on the zone's clock), and that instant's wall
// time again (the two differ for a wall time that does not exist).
static INSTANT: Statement = Statement::new(
    "SELECT x.at, floor(extract(epoch FROM timezone($1, x.at)))::bigint AS back
     FROM (SELECT (to_timestamp($2) AT TIME ZONE 'UTC') AT TIME ZONE $1 AS at) x",
    &[TEXTOID, INT8OID],
);

static SHIFTED: Statement = Statement::new(
    "SELECT $2 - make_interval(secs => $3) AS at,
            floor(extract(epoch FROM timezone($1, $2 - make_interval(secs => $3))))::bigint AS local",
    &[TEXTOID, TIMESTAMPTZOID, INT8OID],
);

static NEXT_EVERY: Statement = Statement::new(
    "SELECT $1 + $2 * (floor(extract(epoch FROM $3 - $1) / extract(epoch FROM $2)) + 1) AS at",
    &[TIMESTAMPTZOID, INTERVALOID, TIMESTAMPTZOID],
);

fn local_seconds(client: &mut SpiClient<'_>, zone: &str, at: TimestampWithTimeZone) -> Option<i64> {
    first(LOCAL_SECONDS.run(client, &[zone.into(), at.into()])).and_then(|r| named(&r, "local"))
}

fn shifted(
    client: &mut SpiClient<'_>,
    zone: &str,
    at: TimestampWithTimeZone,
    seconds: i64,
) -> Option<(TimestampWithTimeZone, i64)> {
    let row = first(SHIFTED.run(client, &[zone.into(), at.into(), seconds.into()]))?;
    Some((named(&row, "at")?, named(&row, "local")?))
}

/// The first tick of a schedule after `after`.
pub(crate) fn next_tick(
    client: &mut SpiClient<'_>,
    rule: &Rule,
    every: Option<pgrx::datum::Interval>,
    zone: &str,
    anchor: TimestampWithTimeZone,
    after: TimestampWithTimeZone,
) -> Option<TimestampWithTimeZone> {
    match rule {
        Rule::Every => first(NEXT_EVERY.run(client, &[anchor.into(), every.into(), after.into()]))
            .and_then(|row| named(&row, "at")),
        Rule::Cron(cron) => next_cron_tick(client, cron, zone, after),
    }
}

fn next_cron_tick(
    client: &mut SpiClient<'_>,
    cron: &cron::Cron,
    zone: &str,
    after: TimestampWithTimeZone,
) -> Option<TimestampWithTimeZone> {
    let mut wall = local_seconds(client, zone, after)?;
    // A few rounds at most: each passes a wall time that maps to `after` or before it.
    for _ in 0..8 {
        let next_wall = cron.next_after(wall)?;
        let row = first(INSTANT.run(client, &[zone.into(), next_wall.into()]))?;
        let mut at: TimestampWithTimeZone = named(&row, "at")?;
        let back: i64 = named(&row, "back")?;
        if back != next_wall {
            // The wall time does not exist (the clock jumped over it): the tick fires at the
            // change, the first instant whose wall time is past it.
            at = first_instant_past(client, zone, at, next_wall)?;
        } else {
            // A wall time that occurs twice (the clock went back) fires at its first occurrence.
            for earlier in [3600, 1800] {
                if let Some((instant, local)) = shifted(client, zone, at, earlier)
                    && local == next_wall
                {
                    at = instant;
                    break;
                }
            }
        }
        if at > after {
            return Some(at);
        }
        wall = next_wall;
    }
    None
}

/// The first instant, at most two hours before `at`, whose wall time is past `wall` (binary
/// search to the second).
fn first_instant_past(
    client: &mut SpiClient<'_>,
    zone: &str,
    at: TimestampWithTimeZone,
    wall: i64,
) -> Option<TimestampWithTimeZone> {
    let (mut low, mut high) = (0i64, 7200i64); // seconds before `at`: high is not past, low is
    while high - low > 1 {
        let mid = (low + high) / 2;
        let (_, local) = shifted(client, zone, at, mid)?;
        if local > wall {
            low = mid;
        } else {
            high = mid;
        }
    }
    shifted(client, zone, at, low).map(|(instant, _)| instant)
}

#[pgrx::pg_schema]
mod pgflow {
    use pgrx::prelude::*;

    /// The first tick of `schedule` in `time_zone` after `after` (an interval counts from
    /// `anchor`): what schedule_flow and the worker compute, for tests and curious users.
    #[pg_extern(name = "_next_tick", requires = ["pgflow_schedule"])]
    fn next_tick(
        schedule: &str,
        time_zone: &str,
        anchor: TimestampWithTimeZone,
        after: TimestampWithTimeZone,
    ) -> Option<TimestampWithTimeZone> {
        let (rule, every) = super::schedule_flow::parse_rule(schedule);
        Spi::connect_mut(|client| {
            super::schedule_flow::check_zone(client, time_zone);
            super::next_tick(client, &rule, every, time_zone, anchor, after)
        })
    }
}
