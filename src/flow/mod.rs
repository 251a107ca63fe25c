//! Flow definitions: create_flow and add_step. Flow shapes and
//! compilation live in `sql/pgflow_api.sql`.

use pgrx::pg_sys::{INT4OID, JSONBOID, TEXTARRAYOID, TEXTOID};
use pgrx::prelude::*;

use crate::datum::{FlowRow, Jsonb, RawDatum, StepRow};
use crate::error::raise;
use crate::memory::{caller_context, copy_to};
use crate::statement::{Statement, first, only};

mod set_flow_concurrency;
mod set_flow_priority;

static INSERT_FLOW: Statement = Statement::new(
    "INSERT INTO pgflow.flows (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout)
     VALUES ($1, coalesce($2, 3), coalesce($3, 5), coalesce($4, 60))
     ON CONFLICT (flow_slug) DO NOTHING",
    &[TEXTOID, INT4OID, INT4OID, INT4OID],
);

static ENSURE_QUEUE: Statement = Statement::new(
    "SELECT pgmq.create($1)
     WHERE NOT EXISTS (SELECT 1 FROM pgmq.list_queues() q WHERE q.queue_name = $1)",
    &[TEXTOID],
);

static PRIORITIZE_QUEUE: Statement =
    Statement::new("SELECT pgflow._prioritize_queue($1)", &[TEXTOID]);

// Serialises creations of flows whose slugs differ only in case (the lock pgmq.create takes,
// keyed on the queue table's stem).
static LOCK_QUEUE_NAME: Statement =
    Statement::new("SELECT pgmq.acquire_queue_lock(lower($1))", &[TEXTOID]);

// Another flow whose queue would be this one's: queue tables are named by the lower-cased slug.
static QUEUE_TAKEN: Statement = Statement::new(
    "SELECT f.flow_slug FROM pgflow.flows f
     WHERE lower(f.flow_slug) = lower($1) AND f.flow_slug <> $1
     LIMIT 1",
    &[TEXTOID],
);

static FLOW_ROW: Statement = Statement::new(
    "SELECT f FROM pgflow.flows f WHERE f.flow_slug = $1",
    &[TEXTOID],
);

static INSERT_STEP: Statement = Statement::new(
    "INSERT INTO pgflow.steps (flow_slug, step_slug, step_type, step_index, deps_count,
         opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay,
         required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted)
     SELECT $1, $2, coalesce($3, 'single'),
            coalesce((SELECT max(s.step_index) + 1 FROM pgflow.steps s WHERE s.flow_slug = $1), 0),
            coalesce(cardinality($4), 0),
            $5, $6, $7, $8, $9, $10, $11, $12
     ON CONFLICT (flow_slug, step_slug) DO NOTHING",
    &[
        TEXTOID,
        TEXTOID,
        TEXTOID,
        TEXTARRAYOID,
        INT4OID,
        INT4OID,
        INT4OID,
        INT4OID,
        JSONBOID,
        JSONBOID,
        TEXTOID,
        TEXTOID,
    ],
);

static INSERT_DEPS: Statement = Statement::new(
    "INSERT INTO pgflow.deps (flow_slug, dep_slug, step_slug)
     SELECT DISTINCT $1, d.dep, $2 FROM unnest($3::text[]) AS d(dep)
     ON CONFLICT DO NOTHING",
    &[TEXTOID, TEXTOID, TEXTARRAYOID],
);

static STEP_ROW: Statement = Statement::new(
    "SELECT s FROM pgflow.steps s WHERE s.flow_slug = $1 AND s.step_slug = $2",
    &[TEXTOID, TEXTOID],
);

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_flow;

    /// Creates a flow (or returns the existing one unchanged) and ensures its queue.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn create_flow(
        flow_slug: Option<&str>,
        max_attempts: default!(Option<i32>, "NULL"),
        base_delay: default!(Option<i32>, "NULL"),
        timeout: default!(Option<i32>, "NULL"),
    ) -> Option<FlowRow> {
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_flow(client, flow_slug, |client| {
                LOCK_QUEUE_NAME.run(client, &[flow_slug.into()]);
                if let Some(other) = first(QUEUE_TAKEN.run(client, &[flow_slug.into()]))
                    .and_then(|row| only::<String>(&row))
                {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                        format!(
                            "flow slug \"{}\" would share its queue with flow \"{other}\"",
                            flow_slug.unwrap_or_default()
                        ),
                        "Queue table names are lower-cased: flow slugs must differ in more than case."
                    );
                }
                INSERT_FLOW.run(
                    client,
                    &[
                        flow_slug.into(),
                        max_attempts.into(),
                        base_delay.into(),
                        timeout.into(),
                    ],
                );
                ENSURE_QUEUE.run(client, &[flow_slug.into()]);
                PRIORITIZE_QUEUE.run(client, &[flow_slug.into()]);
                if let Some(slug) = flow_slug {
                    crate::executor::record_owner(client, slug);
                }
                let row = first(FLOW_ROW.run(client, &[flow_slug.into()]))?;
                only::<RawDatum>(&row).map(|d| FlowRow(copy_to(outer, d.0)))
            })
        })
    }

    /// Adds a step to a flow (or returns the existing step unchanged, still adding new edges).
    #[pg_extern(requires = ["pgflow_schema"])]
    #[allow(clippy::too_many_arguments)]
    fn add_step(
        flow_slug: Option<&str>,
        step_slug: Option<&str>,
        deps_slugs: default!(Option<Vec<Option<String>>>, "'{}'"),
        max_attempts: default!(Option<i32>, "NULL"),
        base_delay: default!(Option<i32>, "NULL"),
        timeout: default!(Option<i32>, "NULL"),
        start_delay: default!(Option<i32>, "NULL"),
        step_type: default!(Option<&str>, "'single'"),
        required_input_pattern: default!(Option<Jsonb>, "NULL"),
        forbidden_input_pattern: default!(Option<Jsonb>, "NULL"),
        when_unmet: default!(Option<&str>, "'skip'"),
        when_exhausted: default!(Option<&str>, "'fail'"),
    ) -> Option<StepRow> {
        let deps: Vec<Option<String>> = deps_slugs.clone().unwrap_or_default();
        if step_type.unwrap_or("single") == "map" && deps.len() > 1 {
            let listed: Vec<String> = deps.iter().map(|d| d.clone().unwrap_or_default()).collect();
            raise(format!(
                "Map step \"{}\" can have at most one dependency, but {} were provided: {}",
                step_slug.unwrap_or(""),
                deps.len(),
                listed.join(", ")
            ));
        }
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_flow(client, flow_slug, |client| {
                INSERT_STEP.run(
                    client,
                    &[
                        flow_slug.into(),
                        step_slug.into(),
                        step_type.into(),
                        deps_slugs.clone().into(),
                        max_attempts.into(),
                        base_delay.into(),
                        timeout.into(),
                        start_delay.into(),
                        required_input_pattern.into(),
                        forbidden_input_pattern.into(),
                        when_unmet.into(),
                        when_exhausted.into(),
                    ],
                );
                if !deps.is_empty() {
                    INSERT_DEPS.run(
                        client,
                        &[
                            flow_slug.into(),
                            step_slug.into(),
                            deps_slugs.clone().into(),
                        ],
                    );
                }
                let row = first(STEP_ROW.run(client, &[flow_slug.into(), step_slug.into()]))?;
                only::<RawDatum>(&row).map(|d| StepRow(copy_to(outer, d.0)))
            })
        })
    }
}
