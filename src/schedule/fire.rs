//! The background worker fires due schedules: for each due tick, one run (its idempotency key
//! names the schedule and the tick) and the schedule's move to its next tick commit together,
//! so a tick fires once across crashes and restarts. A schedule that catches up fires every tick
//! it missed, one after the other; one that does not skips ticks later than
//! `pgflow.schedule_grace`, and goes on from its next tick after now.

use std::time::Duration;

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{BOOLOID, INT4OID, INT8OID, TIMESTAMPTZOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::next_tick;
use super::schedule_flow::parse_rule;
use crate::datum::Jsonb;
use crate::statement::{Statement, first, named};

// The earliest due tick of an active schedule.
static DUE: Statement = Statement::new(
    "SELECT s.schedule_id, s.flow_slug, s.schedule, s.every, s.time_zone, s.input, s.catch_up,
            s.next_fire_at, s.owner::oid AS owner, s.created_at, now() AS now,
            now() - s.next_fire_at > make_interval(secs => $1) AS late,
            to_char(s.next_fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS tick
     FROM pgflow._schedules s
     WHERE NOT s.paused AND s.next_fire_at <= now()
     ORDER BY s.next_fire_at
     LIMIT 1
     FOR UPDATE SKIP LOCKED",
    &[INT4OID],
);

static MOVE_ON: Statement = Statement::new(
    "UPDATE pgflow._schedules
     SET next_fire_at = $2,
         last_fire_at = CASE WHEN $3 THEN next_fire_at ELSE last_fire_at END,
         last_run_id = coalesce($4, last_run_id)
     WHERE schedule_id = $1",
    &[INT8OID, TIMESTAMPTZOID, BOOLOID, UUIDOID],
);

static NEXT_DUE: Statement = Statement::new(
    "SELECT ceil(extract(epoch FROM min(next_fire_at) - clock_timestamp()) * 1000)::bigint AS ms
     FROM pgflow._schedules WHERE NOT paused",
    &[],
);

/// Fires up to `limit` due ticks; returns how many ticks it looked at.
pub(crate) fn fire_due(client: &mut SpiClient<'_>, limit: i32) -> i32 {
    let grace = crate::guc::SCHEDULE_GRACE.get();
    let mut seen = 0;
    while seen < limit {
        let Some(row) = first(DUE.run(client, &[grace.into()])) else {
            break;
        };
        seen += 1;
        let id: i64 = named(&row, "schedule_id").unwrap_or_default();
        let flow: String = named(&row, "flow_slug").unwrap_or_default();
        let schedule: String = named(&row, "schedule").unwrap_or_default();
        let zone: String = named(&row, "time_zone").unwrap_or_default();
        let every: Option<Interval> = named(&row, "every");
        let input: Option<Jsonb> = named(&row, "input");
        let catch_up: bool = named(&row, "catch_up").unwrap_or(false);
        let late: bool = named(&row, "late").unwrap_or(false);
        let tick_text: String = named(&row, "tick").unwrap_or_default();
        let (Some(tick), Some(now), Some(anchor), Some(owner)) = (
            named::<TimestampWithTimeZone>(&row, "next_fire_at"),
            named::<TimestampWithTimeZone>(&row, "now"),
            named::<TimestampWithTimeZone>(&row, "created_at"),
            named::<pg_sys::Oid>(&row, "owner"),
        ) else {
            break;
        };
        let fire = catch_up || !late;
        let run = if fire {
            start(client, id, &flow, input, owner, &tick_text)
        } else {
            None
        };
        let (rule, every) = match every {
            Some(every) => (super::Rule::Every, Some(every)),
            None => parse_rule(&schedule),
        };
        let after = if fire { tick } else { now };
        let next = next_tick(client, &rule, every, &zone, anchor, after);
        MOVE_ON.run(
            client,
            &[id.into(), next.into(), run.is_some().into(), run.into()],
        );
    }
    seen
}

/// Starts the tick's run as the schedule's owner, in a subtransaction: a run that cannot start
/// (the owner lost a privilege, the input does not suit the flow any more) is logged and its tick
/// passes.
fn start(
    client: &mut SpiClient<'_>,
    id: i64,
    flow: &str,
    input: Option<Jsonb>,
    owner: pg_sys::Oid,
    tick: &str,
) -> Option<pgrx::Uuid> {
    let key = format!("schedule {id} at {tick}");
    let started = crate::transaction::in_subtransaction(
        || {
            crate::executor::as_role(owner, || {
                crate::run::start_run::keyed_run(client, flow, input, None, &key, None)
            })
        },
        |_| true,
    );
    match started {
        Ok(run) => run,
        Err(caught) => {
            let message = crate::error::message_of(&caught);
            warning!(
                "pgflow_core: schedule {id} could not start a run of flow \"{flow}\" at {tick}: {message}"
            );
            None
        }
    }
}

/// How long until the next tick of an active schedule, if one exists.
pub(crate) fn next_due(client: &mut SpiClient<'_>) -> Option<Duration> {
    first(NEXT_DUE.run(client, &[]))
        .and_then(|row| named::<i64>(&row, "ms"))
        .map(|ms| Duration::from_millis(ms.max(0) as u64))
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Fires the due ticks of every schedule (the background worker calls it); returns how many
    /// ticks it looked at.
    #[pg_extern(name = "_fire_schedules", requires = ["pgflow_schedule"])]
    fn fire_schedules() -> i32 {
        Spi::connect_mut(|client| super::fire_due(client, 1000))
    }
}
