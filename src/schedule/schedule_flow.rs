//! schedule_flow: a flow's runs start on a cron expression or an interval.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{BOOLOID, INTERVALOID, JSONBOID, OIDOID, TEXTOID, TIMESTAMPTZOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{Rule, cron::Cron, next_tick};
use crate::datum::Jsonb;
use crate::error::error;
use crate::executor::{as_extension_owner, pools::check_flow_owner, required};
use crate::statement::{Statement, first, named};

static ZONE_EXISTS: Statement = Statement::new(
    "SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = $1
     UNION ALL SELECT 1 WHERE upper($1) IN ('UTC', 'GMT')
     LIMIT 1",
    &[TEXTOID],
);

// Numbers schedules one at a time (the insert after it counts in a new snapshot).
static LOCK_IDS: Statement = Statement::new(
    "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgflow schedule ids'))",
    &[],
);

static NOW: Statement = Statement::new("SELECT now() AS now", &[]);

static INSERT: Statement = Statement::new(
    "INSERT INTO pgflow._schedules (schedule_id, flow_slug, schedule, every, time_zone, input, catch_up,
                                    next_fire_at, owner, created_at)
     SELECT (SELECT coalesce(max(schedule_id), 0) + 1 FROM pgflow._schedules), $1, $2, $3, $4, $5, $6, $7, $8, $9
     RETURNING schedule_id",
    &[
        TEXTOID,
        TEXTOID,
        INTERVALOID,
        TEXTOID,
        JSONBOID,
        BOOLOID,
        TIMESTAMPTZOID,
        OIDOID,
        TIMESTAMPTZOID,
    ],
);

/// A schedule's rule: a cron expression, or else an interval of at least a second without
/// months; the error says why neither.
pub(crate) fn parse_rule(schedule: &str) -> (Rule, Option<Interval>) {
    let cron_error = match Cron::parse(schedule) {
        Ok(cron) => return (Rule::Cron(cron), None),
        Err(e) => e,
    };
    // PostgreSQL reads "1 * * *" as an interval of one second: only a text with a unit or a
    // time, and none of cron's signs, is taken as an interval.
    let looks_like_interval = !schedule.contains(['*', '/', ',', '$', '?'])
        && schedule.contains(|c: char| c.is_ascii_alphabetic() || c == ':');
    let every = looks_like_interval
        .then(|| crate::transaction::in_subtransaction(
        || {
            Spi::get_one_with_args::<Interval>(
                "SELECT $1::pg_catalog.interval WHERE extract(month FROM $1::pg_catalog.interval) = 0
                   AND extract(year FROM $1::pg_catalog.interval) = 0
                   AND extract(epoch FROM $1::pg_catalog.interval) >= 1",
                &[schedule.into()],
            )
            .ok()
            .flatten()
        },
        |_| true,
    ))
    .and_then(|r| r.ok())
    .flatten();
    match every {
        Some(every) => (Rule::Every, Some(every)),
        None => error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "invalid schedule \"{schedule}\": not a cron expression ({cron_error}), nor an interval of at least 1 second without months"
            ),
        ),
    }
}

pub(crate) fn check_zone(client: &mut SpiClient<'_>, zone: &str) {
    if first(ZONE_EXISTS.run(client, &[zone.into()])).is_none() {
        error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("time zone \"{zone}\" is not known"),
        );
    }
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Starts runs of a flow with `input` on a cron expression (5 fields, or 6 with seconds
    /// first) in `time_zone`, or on an interval such as '30 seconds'. Returns the schedule's id.
    #[pg_extern(requires = ["pgflow_schedule"])]
    fn schedule_flow(
        flow_slug: Option<&str>,
        schedule: Option<&str>,
        input: default!(Option<Jsonb>, "'{}'"),
        time_zone: default!(Option<&str>, "'UTC'"),
        catch_up: default!(Option<bool>, "false"),
    ) -> i64 {
        let flow = required(flow_slug, "flow_slug");
        let schedule = required(schedule, "schedule");
        let zone = required(time_zone, "time_zone");
        let Some(input) = input else {
            error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "input must not be NULL",
            );
        };
        let catch_up = catch_up.unwrap_or(false);
        let (rule, every) = parse_rule(schedule);
        let me = unsafe { pg_sys::GetUserId() };
        Spi::connect_mut(|client| {
            check_flow_owner(client, flow, None, "schedule it");
            check_zone(client, zone);
            let now: TimestampWithTimeZone = first(NOW.run(client, &[]))
                .and_then(|row| named(&row, "now"))
                .unwrap_or_else(|| crate::error::internal_error("now() returned nothing"));
            let next = next_tick(client, &rule, every, zone, now, now);
            LOCK_IDS.run(client, &[]);
            let id = as_extension_owner(|| {
                first(INSERT.run(
                    client,
                    &[
                        flow.into(),
                        schedule.into(),
                        every.into(),
                        zone.into(),
                        Some(input).into(),
                        catch_up.into(),
                        next.into(),
                        me.into(),
                        now.into(),
                    ],
                ))
                .and_then(|row| named::<i64>(&row, "schedule_id"))
            })
            .unwrap_or_else(|| crate::error::internal_error("no schedule was inserted"));
            crate::queue::wake::sent(super::super::WAKE_KEY, 1);
            id
        })
    }
}
