//! run_status: a run's status as pgflow_core sees it: started, completed or failed as in
//! `pgflow.runs`, or cancelled (a failed run that was cancelled) or paused (a started run that
//! is paused; one that finished while paused shows how it finished) or waiting (a started run
//! that waits for its flow's concurrency limit).

use pgrx::pg_sys::UUIDOID;
use pgrx::prelude::*;

use crate::statement::{Statement, first, named};

static RUN_STATUS: Statement = Statement::new(
    "SELECT CASE WHEN c.state = 'cancelled' AND r.status = 'failed' THEN 'cancelled'
                 WHEN c.state IN ('paused', 'waiting') AND r.status = 'started' THEN c.state
                 ELSE r.status END AS status
     FROM pgflow.runs r LEFT JOIN pgflow._run_control c ON c.run_id = r.run_id
     WHERE r.run_id = $1",
    &[UUIDOID],
);

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_run;

    /// started, completed, failed, cancelled, paused or waiting; NULL when no such run exists.
    #[pg_extern(requires = ["pgflow_schema"], stable)]
    fn run_status(run_id: Option<pgrx::Uuid>) -> Option<String> {
        let run_id = run_id?;
        Spi::connect_mut(|client| {
            as_definer_of_run(client, run_id, |client| {
                first(RUN_STATUS.run(client, &[run_id.into()]))
                    .and_then(|row| named(&row, "status"))
            })
        })
    }
}
