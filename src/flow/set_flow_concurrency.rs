//! set_flow_concurrency: how many runs of a flow may be active at once (see
//! `run::flow_concurrency`).

use pgrx::pg_sys::{INT4OID, TEXTOID};
use pgrx::prelude::*;

use crate::executor::{as_extension_owner, pools::check_flow_owner, required};
use crate::statement::Statement;

static SET: Statement = Statement::new(
    "INSERT INTO pgflow._flow_options (flow_slug, max_active_runs) VALUES ($1, $2)
     ON CONFLICT (flow_slug) DO UPDATE SET max_active_runs = EXCLUDED.max_active_runs",
    &[TEXTOID, INT4OID],
);

#[pg_schema]
mod pgflow {
    use super::*;

    /// Limits how many runs of a flow are active at once (NULL: no limit). Runs over the limit
    /// wait and start as active ones end; raising or removing the limit starts waiting runs
    /// at once. Only the flow's owner or a superuser may change it.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn set_flow_concurrency(flow_slug: Option<&str>, max_active_runs: Option<i32>) {
        let flow = required(flow_slug, "flow_slug");
        if max_active_runs.is_some_and(|max| max < 1) {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "max_active_runs must be at least 1 (NULL: no limit)",
            );
        }
        Spi::connect_mut(|client| {
            check_flow_owner(client, flow, None, "change its concurrency");
            crate::executor::features::changed();
            as_extension_owner(|| {
                SET.run(client, &[flow.into(), max_active_runs.into()]);
                crate::run::flow_concurrency::release(client, flow);
            });
        });
    }
}
