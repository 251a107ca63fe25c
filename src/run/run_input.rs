//! run_input: the input a run was started with, for the workers of its flow (start_tasks gives
//! it to root steps only).

use pgrx::pg_sys::UUIDOID;
use pgrx::prelude::*;

use crate::statement::{Statement, first, named};

static RUN_INPUT: Statement = Statement::new(
    "SELECT input FROM pgflow.runs WHERE run_id = $1",
    &[UUIDOID],
);

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_worker_of_run;

    /// The run's input; NULL for an unknown run. A worker may read it for the flows it works.
    #[pg_extern(stable, requires = ["pgflow_schema"])]
    fn run_input(run_id: Option<pgrx::Uuid>) -> Option<pgrx::JsonB> {
        let run_id = run_id?;
        Spi::connect_mut(|client| {
            as_worker_of_run(client, run_id, |client| {
                first(RUN_INPUT.run(client, &[run_id.into()]))
                    .and_then(|row| named::<pgrx::JsonB>(&row, "input"))
            })
        })
    }
}
