//! unschedule: a schedule is removed. Who may change a schedule: its owner (the role that
//! created it, or a member of it) or a superuser.

use pgrx::pg_sys::INT8OID;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::error;
use crate::statement::{Statement, first, named};

pub(super) static SCHEDULE: Statement = Statement::new(
    "SELECT s.schedule_id, s.schedule, s.time_zone, s.created_at, s.owner::oid AS owner, now() AS now
     FROM pgflow._schedules s WHERE s.schedule_id = $1
     FOR UPDATE",
    &[INT8OID],
);

static DELETE: Statement = Statement::new(
    "DELETE FROM pgflow._schedules WHERE schedule_id = $1",
    &[INT8OID],
);

/// The schedule's id, once it is known to exist (P0002) and the current user may change it
/// (42501); its row is locked.
pub(super) fn check_may_change(client: &mut SpiClient<'_>, schedule_id: Option<i64>) -> i64 {
    let Some(id) = schedule_id else {
        error(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "schedule_id must not be NULL",
        );
    };
    let owner = crate::executor::as_extension_owner(|| {
        first(SCHEDULE.run(client, &[id.into()])).map(|row| named::<pg_sys::Oid>(&row, "owner"))
    });
    let Some(owner) = owner else {
        error(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("schedule {id} does not exist"),
        );
    };
    let allowed = unsafe {
        pg_sys::superuser()
            || owner.is_some_and(|o| pg_sys::has_privs_of_role(pg_sys::GetUserId(), o))
    };
    if !allowed {
        error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be the owner of schedule {id} to change it"),
        );
    }
    id
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Removes a schedule; runs it started are kept.
    #[pg_extern(requires = ["pgflow_schedule"])]
    fn unschedule(schedule_id: Option<i64>) {
        Spi::connect_mut(|client| {
            let id = super::check_may_change(client, schedule_id);
            crate::executor::as_extension_owner(|| {
                DELETE.run(client, &[id.into()]);
            });
        });
    }
}
