//! set_sql_handler and remove_handler: which steps the database runs itself, and as whom.
//!
//! A handler runs as the role that set it. Only the flow's owner (the role that created it, or
//! a member of that role) or a superuser may set or remove a flow's handlers; the tables behind
//! them are written as the extension's owner, after that check.

use pgrx::pg_sys::{self, OIDOID, TEXTARRAYOID, TEXTOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{as_extension_owner, as_owner, extension_owner};
use crate::statement::{Statement, first, named};

static RECORD_OWNER: Statement = Statement::new(
    "INSERT INTO pgflow._flow_owners (flow_slug, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    &[TEXTOID, OIDOID],
);

static STEP_OWNER: Statement = Statement::new(
    "SELECT s.step_slug, o.owner::oid AS owner
     FROM pgflow.steps s LEFT JOIN pgflow._flow_owners o ON o.flow_slug = s.flow_slug
     WHERE s.flow_slug = $1 AND s.step_slug = $2",
    &[TEXTOID, TEXTOID],
);

static UPSERT_HANDLER: Statement = Statement::new(
    "INSERT INTO pgflow._step_handlers (flow_slug, step_slug, kind, statement, target, argv, run_as)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (flow_slug, step_slug) DO UPDATE
     SET kind = EXCLUDED.kind, statement = EXCLUDED.statement, target = EXCLUDED.target,
         argv = EXCLUDED.argv, run_as = EXCLUDED.run_as, created_at = now()",
    &[TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, OIDOID],
);

/// The handler a step gets: what runs, and where.
pub(crate) enum Handler<'a> {
    Sql {
        statement: &'a str,
        target: Option<&'a str>,
    },
    Program {
        argv: Vec<String>,
    },
    Adhoc,
}

static DELETE_HANDLER: Statement = Statement::new(
    "DELETE FROM pgflow._step_handlers WHERE flow_slug = $1 AND step_slug = $2 RETURNING kind",
    &[TEXTOID, TEXTOID],
);

/// Records the caller as a new flow's owner (the first creator keeps it).
pub(crate) fn record_owner(client: &mut SpiClient<'_>, flow_slug: &str) {
    let me = crate::privileges::caller();
    let owner = extension_owner();
    as_owner(owner, || {
        RECORD_OWNER.run(client, &[flow_slug.into(), me.into()]);
    });
}

pub(crate) fn required<'a>(value: Option<&'a str>, name: &str) -> &'a str {
    value.unwrap_or_else(|| {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{name} must not be NULL"),
        )
    })
}

/// Refuses unless the step exists and the current user may change its flow's handlers.
fn check_may_change(client: &mut SpiClient<'_>, flow_slug: &str, step_slug: &str) {
    let found = as_extension_owner(|| {
        first(STEP_OWNER.run(client, &[flow_slug.into(), step_slug.into()]))
            .map(|row| named::<pg_sys::Oid>(&row, "owner"))
    });
    let Some(owner) = found else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("step \"{step_slug}\" of flow \"{flow_slug}\" does not exist"),
            "Define the step with pgflow.add_step first."
        );
    };
    let me = unsafe { pg_sys::GetUserId() };
    let allowed = unsafe { pg_sys::superuser() }
        || owner.is_some_and(|owner| unsafe { pg_sys::has_privs_of_role(me, owner) });
    if !allowed {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "must be the owner of flow \"{flow_slug}\" to change the handlers of its steps"
            ),
            "A flow belongs to the role that created it; superusers may change any flow."
        );
    }
}

/// Refuses a statement that does not parse (before it is stored, not when a task runs).
pub(crate) fn check_syntax(statement: &str) {
    if statement.trim().is_empty() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a SQL handler's statement must not be empty"
        );
    }
    let text = std::ffi::CString::new(statement).unwrap_or_else(|_| {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "a SQL handler's statement must not contain NUL characters",
        )
    });
    unsafe { pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) };
}

pub(crate) fn set_handler(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    step_slug: &str,
    handler: Handler<'_>,
) {
    check_may_change(client, flow_slug, step_slug);
    let me = unsafe { pg_sys::GetUserId() };
    let (kind, statement, target, argv) = match handler {
        Handler::Sql { statement, target } => ("sql", Some(statement), target, None),
        Handler::Program { argv } => ("program", None, None, Some(argv)),
        Handler::Adhoc => ("adhoc", None, None, None),
    };
    super::features::changed();
    as_extension_owner(|| {
        UPSERT_HANDLER.run(
            client,
            &[
                flow_slug.into(),
                step_slug.into(),
                kind.into(),
                statement.into(),
                target.into(),
                argv.into(),
                me.into(),
            ],
        );
    });
}

/// Refuses unless `role` may run programs on the server, as COPY ... PROGRAM does: a superuser
/// or a member of pg_execute_server_program. Checked when a program handler is set, and again
/// before each run (the role may have lost the right since).
pub(crate) fn check_may_run_programs(role: pg_sys::Oid) {
    let allowed = unsafe {
        pg_sys::has_privs_of_role(
            role,
            pg_sys::Oid::from(pg_sys::ROLE_PG_EXECUTE_SERVER_PROGRAM),
        )
    };
    if !allowed {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "must be superuser or have privileges of the pg_execute_server_program role to run programs in steps",
        );
    }
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Gives a step a SQL handler: the database runs `statement` for each of the step's tasks
    /// ($1 the task's input, $2 the run's input), as the calling role, in the transaction that
    /// completes the task; or, with a `target` (a connection string or a database name), in
    /// that database through dblink.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn set_sql_handler(
        flow_slug: Option<&str>,
        step_slug: Option<&str>,
        statement: Option<&str>,
        target: default!(Option<&str>, "NULL"),
    ) {
        let flow_slug = required(flow_slug, "flow_slug");
        let step_slug = required(step_slug, "step_slug");
        let statement = required(statement, "statement");
        check_syntax(statement);
        if target.is_some_and(|t| t.trim().is_empty()) {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "a target must not be empty (NULL runs the statement in this database)",
            );
        }
        Spi::connect_mut(|client| {
            if target.is_some() {
                super::super::target::dblink_schema();
            }
            set_handler(
                client,
                flow_slug,
                step_slug,
                Handler::Sql { statement, target },
            )
        });
    }

    /// Gives a step a program handler: the server runs `argv` (no shell) for each of the step's
    /// tasks, with the task's input JSON on standard input and its standard output as output.
    /// Needs the privileges of pg_execute_server_program, as COPY ... PROGRAM does.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn set_program_handler(
        flow_slug: Option<&str>,
        step_slug: Option<&str>,
        argv: Option<Vec<Option<String>>>,
    ) {
        let flow_slug = required(flow_slug, "flow_slug");
        let step_slug = required(step_slug, "step_slug");
        let argv = argv.unwrap_or_else(|| {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "argv must not be NULL",
            )
        });
        let argv: Vec<String> = argv
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    crate::error::error(
                        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                        "argv must not contain NULL",
                    )
                })
            })
            .collect();
        if argv.first().is_none_or(|p| p.is_empty()) || argv.iter().any(|a| a.contains('\0')) {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "argv must name a program first and contain no NUL characters",
            );
        }
        check_may_run_programs(unsafe { pg_sys::GetUserId() });
        Spi::connect_mut(|client| {
            set_handler(client, flow_slug, step_slug, Handler::Program { argv })
        });
    }

    /// Removes a step's handler: its tasks queued from now on go to external workers again.
    /// Returns whether the step had one.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn remove_handler(flow_slug: Option<&str>, step_slug: Option<&str>) -> bool {
        let flow_slug = required(flow_slug, "flow_slug");
        let step_slug = required(step_slug, "step_slug");
        Spi::connect_mut(|client| {
            check_may_change(client, flow_slug, step_slug);
            super::super::features::changed();
            as_extension_owner(|| {
                DELETE_HANDLER
                    .run(client, &[flow_slug.into(), step_slug.into()])
                    .next()
                    .is_some()
            })
        })
    }
}
