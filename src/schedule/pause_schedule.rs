//! pause_schedule and resume_schedule: a paused schedule fires nothing; resumed, it fires from
//! its next tick after now (the ticks it missed while paused are not caught up).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{INT8OID, TIMESTAMPTZOID};
use pgrx::prelude::*;

use super::schedule_flow::parse_rule;
use super::{WAKE_KEY, next_tick};
use crate::statement::{Statement, first, named};

static PAUSE: Statement = Statement::new(
    "UPDATE pgflow._schedules SET paused = true, next_fire_at = NULL WHERE schedule_id = $1",
    &[INT8OID],
);

static RESUME: Statement = Statement::new(
    "UPDATE pgflow._schedules SET paused = false, next_fire_at = $2 WHERE schedule_id = $1",
    &[INT8OID, TIMESTAMPTZOID],
);

#[pg_schema]
mod pgflow {
    use super::*;

    /// Pauses a schedule: it fires nothing until resume_schedule.
    #[pg_extern(requires = ["pgflow_schedule"])]
    fn pause_schedule(schedule_id: Option<i64>) {
        Spi::connect_mut(|client| {
            let id = super::super::unschedule::check_may_change(client, schedule_id);
            crate::executor::as_extension_owner(|| {
                PAUSE.run(client, &[id.into()]);
            });
        });
    }

    /// Resumes a paused schedule from its next tick after now.
    #[pg_extern(requires = ["pgflow_schedule"])]
    fn resume_schedule(schedule_id: Option<i64>) {
        Spi::connect_mut(|client| {
            let id = super::super::unschedule::check_may_change(client, schedule_id);
            let row = first(super::super::unschedule::SCHEDULE.run(client, &[id.into()]))
                .unwrap_or_else(|| crate::error::internal_error("the schedule vanished"));
            let schedule: String = named(&row, "schedule").unwrap_or_default();
            let zone: String = named(&row, "time_zone").unwrap_or_default();
            let anchor: TimestampWithTimeZone = named(&row, "created_at")
                .unwrap_or_else(|| crate::error::internal_error("schedule without created_at"));
            let now: TimestampWithTimeZone = named(&row, "now")
                .unwrap_or_else(|| crate::error::internal_error("now() returned nothing"));
            let (rule, every) = parse_rule(&schedule);
            let next = next_tick(client, &rule, every, &zone, anchor, now);
            crate::executor::as_extension_owner(|| {
                RESUME.run(client, &[id.into(), next.into()]);
            });
            crate::queue::wake::sent(WAKE_KEY, 1);
        });
    }
}
