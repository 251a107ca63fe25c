//! pgflow_core: DAG workflows inside PostgreSQL.
//!
//! - `queue`: the pgmq-compatible queue layer (schema `pgmq`, SQL in `sql/pgmq.sql`)
//! - `flow`: flow definitions (create_flow, add_step)
//! - `run`: the runtime (start_flow, start_tasks, complete_task, fail_task, cascades, cancel_run)
//! - `events`: run and step events
//! - `statement`, `datum`: prepared statements and raw datums shared by the above
//! - `error`, `memory`, `transaction`: raising errors, copying results out of SPI memory,
//!   subtransactions and function-local settings
//! - `executor`: steps run by the database itself (SQL handlers, ad-hoc SQL tasks, executors)
//! - `worker`: background workers (stalled tasks, timeouts, pruning)
//! - `guc`: settings

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod datum;
pub mod error;
pub mod events;
pub mod executor;
pub mod flow;
pub mod guc;
pub mod memory;
pub mod privileges;
pub mod queue;
pub mod run;
pub mod schedule;
pub mod statement;
pub mod transaction;
pub mod worker;

pgrx::extension_sql_file!("../sql/pgmq.sql", name = "pgmq", bootstrap);
pgrx::extension_sql_file!(
    "../sql/pgflow_schema.sql",
    name = "pgflow_schema",
    requires = ["pgmq"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_maintenance.sql",
    name = "pgflow_maintenance",
    requires = ["pgflow_schema"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_executor.sql",
    name = "pgflow_executor",
    requires = ["pgflow_schema"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_control.sql",
    name = "pgflow_control",
    requires = ["pgflow_schema"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_schedule.sql",
    name = "pgflow_schedule",
    requires = ["pgflow_schema"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_invariants.sql",
    name = "pgflow_invariants",
    requires = ["pgflow_executor"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_roles.sql",
    name = "pgflow_roles",
    requires = ["pgflow_invariants"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_observe.sql",
    name = "pgflow_observe",
    requires = ["pgflow_control"]
);
pgrx::extension_sql_file!(
    "../sql/pgflow_graph.sql",
    name = "pgflow_graph",
    requires = ["pgflow_executor", "pgflow_control"]
);
pgrx::extension_sql_file!("../sql/pgflow_api.sql", name = "pgflow_api", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    events::init();
    queue::wake::init();
    worker::init();
}
