//! set_flow_priority: the priority that a flow's runs get unless started with their own.

use pgrx::pg_sys::{INT4OID, TEXTOID};
use pgrx::prelude::*;

use crate::executor::{as_extension_owner, pools::check_flow_owner, required};
use crate::statement::Statement;

static SET: Statement = Statement::new(
    "INSERT INTO pgflow._flow_options (flow_slug, priority) VALUES ($1, $2)
     ON CONFLICT (flow_slug) DO UPDATE SET priority = EXCLUDED.priority",
    &[TEXTOID, INT4OID],
);

#[pg_schema]
mod pgflow {
    use super::*;

    /// Sets the default priority of a flow's runs (0 when never set); runs already started keep
    /// theirs. Only the flow's owner or a superuser may change it.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn set_flow_priority(flow_slug: Option<&str>, priority: Option<i32>) {
        let flow = required(flow_slug, "flow_slug");
        let Some(priority) = priority else {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "priority must not be NULL",
            );
        };
        Spi::connect_mut(|client| {
            check_flow_owner(client, flow, None, "change its priority");
            as_extension_owner(|| {
                SET.run(client, &[flow.into(), priority.into()]);
            });
        });
    }
}
