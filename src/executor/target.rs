//! SQL handlers with a target: the statement runs in another database, through dblink, on a
//! connection that the executor keeps open across tasks (one per role and target). Remote
//! effects commit on the remote side at once, not with the task's completion: delivery to a
//! target is at least once.
//!
//! A target is a connection string, or a bare database name (a database of this cluster,
//! reached through its first Unix socket directory and its port). A statement that returns rows
//! must be one query or one INSERT/UPDATE/DELETE with RETURNING; it is prepared on the remote
//! side once per connection, with $1 and $2 as in a local handler. Anything else runs as it
//! is (dblink_exec) and its output is JSON null.
//!
//! dblink connections are visible to everything that runs in the executor's session, so before
//! a handler of one role runs, the connections opened for other roles are closed.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::hash::{Hash, Hasher};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::sql_handler::json_null;
use crate::datum::Jsonb;

struct Connection {
    role: pg_sys::Oid,
    prepared: HashSet<u64>,
    statement_timeout: Option<i32>,
}

thread_local! {
    static OPEN: RefCell<HashMap<String, Connection>> = RefCell::new(HashMap::new());
}

/// `f` on the open connection `name`, if there is one.
fn with_connection<R>(name: &str, f: impl FnOnce(&mut Connection) -> R) -> Option<R> {
    OPEN.with(|open| open.borrow_mut().get_mut(name).map(f))
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Runs a statement through SPI with text and jsonb arguments; returns the first row's columns.
fn query(sql: &str, args: &[(pg_sys::Oid, Option<pg_sys::Datum>)]) -> Vec<Option<pg_sys::Datum>> {
    let text = CString::new(sql).unwrap_or_default();
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| a.1.unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|a| if a.1.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    unsafe {
        let code = pg_sys::SPI_execute_with_args(
            text.as_ptr(),
            args.len() as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            false,
            0,
        );
        if code < 0 {
            crate::error::internal_error(&format!("SPI code {code} for a dblink call"));
        }
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || pg_sys::SPI_processed == 0 {
            return Vec::new();
        }
        let tupdesc = (*table).tupdesc;
        (1..=(*tupdesc).natts)
            .map(|i| {
                let mut is_null = false;
                let datum = pg_sys::SPI_getbinval(*(*table).vals, tupdesc, i, &mut is_null);
                (!is_null).then_some(datum)
            })
            .collect()
    }
}

fn text_arg(value: &str) -> (pg_sys::Oid, Option<pg_sys::Datum>) {
    (pg_sys::TEXTOID, value.into_datum())
}

/// The schema of the dblink extension, quoted; an error when dblink is not installed.
pub(crate) fn dblink_schema() -> String {
    let found = query(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
        &[],
    );
    found
        .first()
        .copied()
        .flatten()
        .and_then(|d| unsafe { String::from_datum(d, false) })
        .unwrap_or_else(|| {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "a SQL handler with a target needs the dblink extension in this database (CREATE EXTENSION dblink)",
            )
        })
}

/// The connection string of a target: itself, or for a bare database name, that database of
/// this cluster.
fn connection_string(target: &str) -> String {
    if target.contains('=') || target.contains("://") {
        return target.to_string();
    }
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let (port, socket) = unsafe {
        let dirs = pg_sys::Unix_socket_directories;
        let dirs = if dirs.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(dirs)
                .to_string_lossy()
                .into_owned()
        };
        (
            pg_sys::PostPortNumber,
            dirs.split(',').next().unwrap_or("").trim().to_string(),
        )
    };
    let host = if socket.is_empty() {
        "localhost".to_string()
    } else {
        socket
    };
    format!("dbname={} host={} port={port}", quote(target), quote(&host))
}

/// Closes the connections opened for roles other than `role`.
pub(crate) fn close_other_roles(role: pg_sys::Oid) {
    let others: Vec<String> = OPEN.with(|open| {
        open.borrow()
            .iter()
            .filter(|(_, c)| c.role != role)
            .map(|(name, _)| name.clone())
            .collect()
    });
    if others.is_empty() {
        return;
    }
    let schema = dblink_schema();
    for name in others {
        forget_connection(&schema, &name);
    }
}

fn forget_connection(schema: &str, name: &str) {
    OPEN.with(|open| open.borrow_mut().remove(name));
    let sql = format!(
        "SELECT {schema}.dblink_disconnect($1) WHERE $1 = ANY ({schema}.dblink_get_connections())"
    );
    query(&sql, &[text_arg(name)]);
}

fn connection_name(role: pg_sys::Oid, target: &str) -> String {
    format!("pgflow_{}_{:x}", u32::from(role), hash_of(target))
}

/// After a failed attempt: the connection is closed, so that the next attempt starts afresh.
pub(crate) fn after_failure(role: pg_sys::Oid, target: &str) {
    let name = connection_name(role, target);
    if OPEN.with(|open| open.borrow().contains_key(&name)) {
        let schema = dblink_schema();
        forget_connection(&schema, &name);
    }
}

/// Whether a statement returns rows that can be wrapped: one query, or one DML statement with
/// RETURNING.
fn returns_rows(statement: &str) -> bool {
    let text = CString::new(statement).unwrap_or_default();
    unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if list.is_null() || (*list).length != 1 {
            return false;
        }
        let raw = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
        let node = (*raw).stmt;
        match (*node).type_ {
            pg_sys::NodeTag::T_SelectStmt => true,
            pg_sys::NodeTag::T_InsertStmt => {
                !(*(node as *mut pg_sys::InsertStmt)).returningList.is_null()
            }
            pg_sys::NodeTag::T_UpdateStmt => {
                !(*(node as *mut pg_sys::UpdateStmt)).returningList.is_null()
            }
            pg_sys::NodeTag::T_DeleteStmt => {
                !(*(node as *mut pg_sys::DeleteStmt)).returningList.is_null()
            }
            _ => false,
        }
    }
}

/// Runs `statement` on `target` (as `role`, whose connection it uses) and returns its output.
pub(crate) fn run(
    target: &str,
    statement: &str,
    role: pg_sys::Oid,
    input: Option<pg_sys::Datum>,
    flow_input: Option<pg_sys::Datum>,
    timeout: i32,
) -> Jsonb {
    close_other_roles(role);
    super::as_role(role, || {
        run_as_role(target, statement, role, input, flow_input, timeout)
    })
}

/// `run`'s work, as `role`.
fn run_as_role(
    target: &str,
    statement: &str,
    role: pg_sys::Oid,
    input: Option<pg_sys::Datum>,
    flow_input: Option<pg_sys::Datum>,
    timeout: i32,
) -> Jsonb {
    let schema = dblink_schema();
    let name = connection_name(role, target);
    if !OPEN.with(|open| open.borrow().contains_key(&name)) {
        let sql = format!("SELECT {schema}.dblink_connect($1, $2)");
        query(
            &sql,
            &[text_arg(&name), text_arg(&connection_string(target))],
        );
        OPEN.with(|open| {
            open.borrow_mut().insert(
                name.clone(),
                Connection {
                    role,
                    prepared: HashSet::new(),
                    statement_timeout: None,
                },
            )
        });
    }
    let exec = format!("SELECT {schema}.dblink_exec($1, $2)");
    let timeout_ms = timeout.saturating_mul(1000);
    if with_connection(&name, |c| c.statement_timeout) != Some(Some(timeout_ms)) {
        query(
            &exec,
            &[
                text_arg(&name),
                text_arg(&format!("SET statement_timeout = {timeout_ms}")),
            ],
        );
        with_connection(&name, |c| c.statement_timeout = Some(timeout_ms));
    }
    if !returns_rows(statement) {
        query(&exec, &[text_arg(&name), text_arg(statement)]);
        return Jsonb(json_null());
    }
    let key = hash_of(statement);
    let prepared = format!("pgflow_s{key:x}");
    if with_connection(&name, |c| c.prepared.contains(&key)) != Some(true) {
        let prepare = format!(
            "PREPARE {prepared}(jsonb, jsonb) AS WITH pgflow_q AS ({statement})
             SELECT count(*)::bigint AS n, coalesce(jsonb_agg(to_jsonb(pgflow_q)), '[]'::jsonb) AS rows
             FROM pgflow_q"
        );
        query(&exec, &[text_arg(&name), text_arg(&prepare)]);
        with_connection(&name, |c| c.prepared.insert(key));
    }
    let sql = format!(
        "SELECT CASE WHEN t.n = 1 AND (SELECT count(*) FROM pg_catalog.jsonb_object_keys(t.rows -> 0)) = 1
                     THEN (SELECT e.value FROM pg_catalog.jsonb_each(t.rows -> 0) e)
                     ELSE t.rows END
         FROM {schema}.dblink($1, pg_catalog.format('EXECUTE %s(%L::jsonb, %L::jsonb)', $2, $3::text, $4::text))
              AS t(n bigint, rows jsonb)"
    );
    let output = query(
        &sql,
        &[
            text_arg(&name),
            text_arg(&prepared),
            (pg_sys::JSONBOID, input),
            (pg_sys::JSONBOID, flow_input),
        ],
    );
    Jsonb(output.first().copied().flatten().unwrap_or_else(json_null))
}
