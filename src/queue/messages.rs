//! Sending, reading and acknowledging messages: the queue's hot path, in Rust.
//!
//! Each statement is prepared once per backend and queue table and kept (see
//! `statement::TableStatement`). Signatures, argument names, defaults and results are pgmq
//! 1.13's exactly; see `sql/pgmq.sql` for the rest of the queue layer.

use pgrx::pg_sys::{INT4OID, INT8ARRAYOID, JSONBARRAYOID, JSONBOID, TIMESTAMPTZOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::name::QueueName;
use super::{wait, wake};
use crate::datum::{Jsonb, JsonbArray, MessageRecord, RawDatum};
use crate::error::raise;
use crate::memory::{caller_context, copy_to};
use crate::statement::{TableStatement, named, only};

const RECORD: &str = "ROW(m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers)::pgmq.message_record";

/// When a new message becomes visible.
#[derive(Clone, Copy)]
pub enum Visible {
    /// clock_timestamp()
    Now,
    /// clock_timestamp() + seconds
    After(Option<i32>),
    /// at this time
    At(Option<TimestampWithTimeZone>),
}

impl Visible {
    /// Whether messages sent with this become visible at once (their readers may be woken).
    fn is_now(self) -> bool {
        match self {
            Visible::Now => true,
            Visible::After(seconds) => seconds.is_some_and(|s| s <= 0),
            Visible::At(at) => {
                at.is_some_and(|at| i64::from(at) <= unsafe { pgrx::pg_sys::GetCurrentTimestamp() })
            }
        }
    }

    fn parts(self) -> (Option<i32>, Option<TimestampWithTimeZone>, i32) {
        match self {
            Visible::Now => (Some(0), None, 0),
            Visible::After(seconds) => (seconds, None, 0),
            Visible::At(at) => (None, at, 1),
        }
    }
}

// $1 mode (0: clock + $2 seconds, 1: $3), computed once per call.
const VT_EXPR: &str = "(SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) 0
                                   THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $2)
                                   ELSE $3 END)";

static SEND: TableStatement = TableStatement::new(
    "send",
    &[
        INT4OID,
        INT4OID,
        TIMESTAMPTZOID,
        JSONBARRAYOID,
        JSONBARRAYOID,
    ],
);

/// Inserts a batch (no checks) and returns the new ids in input order. Messages and headers are
/// paired by position in storage order, whatever the arrays' subscripts and dimensions (the
/// lengths are compared with cardinality()).
pub fn send_batch_unchecked(
    client: &mut SpiClient<'_>,
    queue: &QueueName,
    msgs: Option<JsonbArray>,
    headers: Option<JsonbArray>,
    visible: Visible,
) -> Vec<i64> {
    let (seconds, at, mode) = visible.parts();
    let table = queue.queue_table();
    let ids = SEND
        .run(
            client,
            queue.stem(),
            || {
                format!(
                    "WITH v AS MATERIALIZED (SELECT {VT_EXPR} AS vt)
                     INSERT INTO {table} (vt, message, headers)
                     SELECT v.vt, m.msg, h.hdr
                     FROM v, pg_catalog.unnest($4) WITH ORDINALITY AS m(msg, ord)
                     LEFT JOIN pg_catalog.unnest($5) WITH ORDINALITY AS h(hdr, ord)
                            ON h.ord OPERATOR(pg_catalog.=) m.ord
                     ORDER BY m.ord
                     RETURNING msg_id"
                )
            },
            &[
                mode.into(),
                seconds.into(),
                at.into(),
                msgs.into(),
                headers.into(),
            ],
        )
        .filter_map(|row| only::<i64>(&row))
        .collect::<Vec<i64>>();
    if visible.is_now() {
        wake::sent(queue.stem(), ids.len());
    }
    ids
}

/// pgmq's batch checks, in its order.
pub fn check_batch(msgs: &Option<JsonbArray>, headers: &Option<JsonbArray>) {
    let count = msgs.as_ref().map_or(0, JsonbArray::len);
    if count == 0 {
        raise("msgs cannot be NULL or empty".into());
    }
    if let Some(headers) = headers
        && headers.len() != count
    {
        raise(format!(
            "headers array length ({}) must match msgs array length ({count})",
            headers.len()
        ));
    }
}

static SEND_ONE: TableStatement = TableStatement::new(
    "send_one",
    &[INT4OID, INT4OID, TIMESTAMPTZOID, JSONBOID, JSONBOID],
);

fn send_one(
    queue: Option<&str>,
    msg: Option<Jsonb>,
    headers: Option<Jsonb>,
    visible: Visible,
) -> SetOfIterator<'static, i64> {
    let queue = QueueName::parse(queue);
    let (seconds, at, mode) = visible.parts();
    let table = queue.queue_table();
    let ids: Vec<i64> = Spi::connect_mut(|client| {
        SEND_ONE
            .run(
                client,
                queue.stem(),
                || format!("INSERT INTO {table} (vt, message, headers) VALUES ({VT_EXPR}, $4, $5) RETURNING msg_id"),
                &[mode.into(), seconds.into(), at.into(), msg.into(), headers.into()],
            )
            .filter_map(|row| only::<i64>(&row))
            .collect()
    });
    if visible.is_now() {
        wake::sent(queue.stem(), ids.len());
    }
    SetOfIterator::new(ids)
}

fn send_many(
    queue: Option<&str>,
    msgs: Option<JsonbArray>,
    headers: Option<JsonbArray>,
    visible: Visible,
) -> SetOfIterator<'static, i64> {
    let queue = QueueName::parse(queue);
    check_batch(&msgs, &headers);
    let ids =
        Spi::connect_mut(|client| send_batch_unchecked(client, &queue, msgs, headers, visible));
    SetOfIterator::new(ids)
}

static READ: TableStatement = TableStatement::new("read", &[INT4OID, INT4OID, JSONBOID]);
static READ_BY_PRIORITY: TableStatement =
    TableStatement::new("read_by_priority", &[INT4OID, INT4OID, JSONBOID, INT4OID]);

/// Rows that a read may claim (`$3`: pgmq's conditional read).
const CONDITION: &str = "($3 IS NULL OR $3 OPERATOR(pg_catalog.=) '{}'::pg_catalog.jsonb
                            OR message OPERATOR(pg_catalog.@>) $3)";

/// pgmq's read: the lowest ids first.
fn read_sql(table: &str) -> String {
    format!(
        "WITH claimed AS (
             SELECT msg_id FROM {table}
             WHERE vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AND {CONDITION}
             ORDER BY msg_id
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         {}",
        claim_sql(table)
    )
}

/// A flow queue's read once runs have priorities: messages visible for `$4` seconds or more
/// first (oldest first: nothing starves), then the highest priority (header
/// x-pgflow-priority, 0 without), lowest ids first within one priority. Served by the
/// queue's priority index (`pgflow._prioritize_queue`); a queue without it is read as pgmq
/// reads.
fn read_by_priority_sql(table: &str, stem: &str) -> String {
    let index = format!("q_{stem}_priority_idx");
    let indexed = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regclass(pg_catalog.format('pgmq.%I', $1::text)) IS NOT NULL",
        &[index.as_str().into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !indexed {
        return read_sql(table);
    }
    format!(
        "WITH starving AS (
             SELECT msg_id FROM {table}
             WHERE vt OPERATOR(pg_catalog.<=)
                   (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $4))
               AND {CONDITION}
             ORDER BY vt
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), ranked AS (
             SELECT msg_id FROM {table}
             WHERE vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AND {CONDITION}
               AND msg_id OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT msg_id FROM starving))
             ORDER BY coalesce((headers OPERATOR(pg_catalog.->>) 'x-pgflow-priority')::pg_catalog.int4, 0) DESC,
                      msg_id
             LIMIT GREATEST($2 OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM starving)::pg_catalog.int4, 0)
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             SELECT msg_id FROM starving UNION ALL SELECT msg_id FROM ranked)
         {}",
        claim_sql(table)
    )
}

/// Makes the `claimed` rows invisible for `$1` seconds and returns them.
fn claim_sql(table: &str) -> String {
    format!(
        "UPDATE {table} m
         SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1),
             read_ct = m.read_ct OPERATOR(pg_catalog.+) 1,
             last_read_at = pg_catalog.clock_timestamp()
         FROM claimed
         WHERE m.msg_id OPERATOR(pg_catalog.=) claimed.msg_id
         RETURNING {RECORD}"
    )
}

/// Claims up to `qty` visible messages (lowest ids first, skipping locked rows; a flow's queue
/// in priority order once runs have priorities).
pub fn read_messages(
    client: &mut SpiClient<'_>,
    queue: &QueueName,
    vt: Option<i32>,
    qty: Option<i32>,
    conditional: Option<Jsonb>,
    outer: pgrx::pg_sys::MemoryContext,
) -> Vec<MessageRecord> {
    let table = queue.queue_table();
    let rows = if crate::executor::features::features(client).priorities {
        let max_wait = crate::guc::PRIORITY_MAX_WAIT.get();
        READ_BY_PRIORITY.run(
            client,
            queue.stem(),
            || read_by_priority_sql(&table, queue.stem()),
            &[vt.into(), qty.into(), conditional.into(), max_wait.into()],
        )
    } else {
        READ.run(
            client,
            queue.stem(),
            || read_sql(&table),
            &[vt.into(), qty.into(), conditional.into()],
        )
    };
    rows.filter_map(|row| only::<RawDatum>(&row).map(|d| MessageRecord(copy_to(outer, d.0))))
        .collect()
}

/// One attempt of a polling read, in a subtransaction that is rolled back when it claimed
/// nothing. A row that another reader claimed while this attempt ran stays locked by the
/// attempt even though it does not qualify; rolling back releases it, so a waiting reader
/// never holds up the claimer's archive or delete. An error inside rolls the subtransaction
/// back and is raised again, as PL/pgSQL's exception blocks do, so the caller's transaction
/// and session stay usable.
fn read_attempt(
    client: &mut SpiClient<'_>,
    queue: &QueueName,
    vt: Option<i32>,
    qty: Option<i32>,
    conditional: Option<Jsonb>,
    outer: pgrx::pg_sys::MemoryContext,
) -> Vec<MessageRecord> {
    crate::transaction::in_subtransaction(
        || read_messages(client, queue, vt, qty, conditional, outer),
        |rows| !rows.is_empty(),
    )
    .unwrap_or_else(|error| error.rethrow())
}

static POP: TableStatement = TableStatement::new("pop", &[INT4OID]);
static ARCHIVE: TableStatement = TableStatement::new("archive", &[INT8ARRAYOID]);
static DELETE: TableStatement = TableStatement::new("delete", &[INT8ARRAYOID]);
static SET_VT: TableStatement =
    TableStatement::new("set_vt", &[INT4OID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID]);

/// Moves messages to the archive; returns the ids moved.
pub fn archive_messages(
    client: &mut SpiClient<'_>,
    queue: &QueueName,
    ids: Option<Vec<Option<i64>>>,
) -> Vec<i64> {
    let (table, archive) = (queue.queue_table(), queue.archive_table());
    ARCHIVE
        .run(
            client,
            queue.stem(),
            || {
                format!(
                    "WITH moved AS (
                         DELETE FROM {table} WHERE msg_id OPERATOR(pg_catalog.=) ANY($1)
                         RETURNING msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers)
                     INSERT INTO {archive} (msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers)
                     SELECT msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers FROM moved
                     RETURNING msg_id"
                )
            },
            &[ids.into()],
        )
        .filter_map(|row| only::<i64>(&row))
        .collect()
}

fn delete_messages(
    client: &mut SpiClient<'_>,
    queue: &QueueName,
    ids: Option<Vec<Option<i64>>>,
) -> Vec<i64> {
    let table = queue.queue_table();
    DELETE
        .run(
            client,
            queue.stem(),
            || format!("DELETE FROM {table} WHERE msg_id OPERATOR(pg_catalog.=) ANY($1) RETURNING msg_id"),
            &[ids.into()],
        )
        .filter_map(|row| only::<i64>(&row))
        .collect()
}

fn set_visibility(
    queue: Option<&str>,
    ids: Option<Vec<Option<i64>>>,
    visible: Visible,
) -> SetOfIterator<'static, MessageRecord> {
    let queue = QueueName::parse(queue);
    let outer = caller_context();
    let (seconds, at, mode) = visible.parts();
    let table = queue.queue_table();
    let rows = Spi::connect_mut(|client| {
        let rows: Vec<(MessageRecord, bool)> = SET_VT
            .run(
                client,
                queue.stem(),
                || {
                    format!(
                        "UPDATE {table} m SET vt = {VT_EXPR}
                         WHERE m.msg_id OPERATOR(pg_catalog.=) ANY($4)
                         RETURNING {RECORD} AS record,
                                   m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() AS visible"
                    )
                },
                &[mode.into(), seconds.into(), at.into(), ids.into()],
            )
            .filter_map(|row| {
                let record = named::<RawDatum>(&row, "record")
                    .map(|d| MessageRecord(copy_to(outer, d.0)))?;
                Some((record, named::<bool>(&row, "visible").unwrap_or(false)))
            })
            .collect();
        rows
    });
    wake::sent(
        queue.stem(),
        rows.iter().filter(|(_, visible_now)| *visible_now).count(),
    );
    SetOfIterator::new(rows.into_iter().map(|(record, _)| record))
}

#[pg_schema]
mod pgmq {
    use super::*;

    type Msgs = Option<JsonbArray>;

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send(queue_name: Option<&str>, msg: Option<Jsonb>) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, None, Visible::Now)
    }

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send_headers(
        queue_name: Option<&str>,
        msg: Option<Jsonb>,
        headers: Option<Jsonb>,
    ) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, headers, Visible::Now)
    }

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send_delay(
        queue_name: Option<&str>,
        msg: Option<Jsonb>,
        delay: Option<i32>,
    ) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, None, Visible::After(delay))
    }

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send_at(
        queue_name: Option<&str>,
        msg: Option<Jsonb>,
        delay: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, None, Visible::At(delay))
    }

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send_headers_delay(
        queue_name: Option<&str>,
        msg: Option<Jsonb>,
        headers: Option<Jsonb>,
        delay: Option<i32>,
    ) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, headers, Visible::After(delay))
    }

    #[pg_extern(name = "send", requires = ["pgmq"])]
    fn send_headers_at(
        queue_name: Option<&str>,
        msg: Option<Jsonb>,
        headers: Option<Jsonb>,
        delay: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, i64> {
        send_one(queue_name, msg, headers, Visible::At(delay))
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch(queue_name: Option<&str>, msgs: Msgs) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, None, Visible::Now)
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch_headers(
        queue_name: Option<&str>,
        msgs: Msgs,
        headers: Msgs,
    ) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, headers, Visible::Now)
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch_delay(
        queue_name: Option<&str>,
        msgs: Msgs,
        delay: Option<i32>,
    ) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, None, Visible::After(delay))
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch_at(
        queue_name: Option<&str>,
        msgs: Msgs,
        delay: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, None, Visible::At(delay))
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch_headers_delay(
        queue_name: Option<&str>,
        msgs: Msgs,
        headers: Msgs,
        delay: Option<i32>,
    ) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, headers, Visible::After(delay))
    }

    #[pg_extern(name = "send_batch", requires = ["pgmq"])]
    fn send_batch_headers_at(
        queue_name: Option<&str>,
        msgs: Msgs,
        headers: Msgs,
        delay: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, i64> {
        send_many(queue_name, msgs, headers, Visible::At(delay))
    }

    /// pgmq's batch checks (send_batch's, and the SQL functions' that send batches).
    #[pg_extern(name = "_validate_batch_params", requires = ["pgmq"])]
    fn validate_batch_params(msgs: Option<JsonbArray>, headers: Option<JsonbArray>) {
        check_batch(&msgs, &headers);
    }

    /// The unchecked batch insert (pgmq's `_send_batch`).
    #[pg_extern(name = "_send_batch", requires = ["pgmq"])]
    fn send_batch_internal(
        queue_name: Option<&str>,
        msgs: Msgs,
        headers: Msgs,
        delay: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, i64> {
        let queue = QueueName::parse(queue_name);
        let ids = Spi::connect_mut(|client| {
            send_batch_unchecked(client, &queue, msgs, headers, Visible::At(delay))
        });
        SetOfIterator::new(ids)
    }

    #[pg_extern(requires = ["pgmq"])]
    fn read(
        queue_name: Option<&str>,
        vt: Option<i32>,
        qty: Option<i32>,
        conditional: default!(Option<Jsonb>, "'{}'"),
    ) -> SetOfIterator<'static, MessageRecord> {
        let queue = QueueName::parse(queue_name);
        let outer = caller_context();
        let rows =
            Spi::connect_mut(|client| read_messages(client, &queue, vt, qty, conditional, outer));
        SetOfIterator::new(rows)
    }

    /// Reads; when nothing is visible, waits on the latch (woken by commits to this queue) and
    /// reads again until something is read or `max_poll_seconds` have passed.
    #[pg_extern(requires = ["pgmq"])]
    fn read_with_poll(
        queue_name: Option<&str>,
        vt: Option<i32>,
        qty: Option<i32>,
        max_poll_seconds: default!(Option<i32>, 5),
        poll_interval_ms: default!(Option<i32>, 100),
        conditional: default!(Option<Jsonb>, "'{}'"),
    ) -> SetOfIterator<'static, MessageRecord> {
        let queue = QueueName::parse(queue_name);
        let (max_poll_seconds, poll_interval_ms) =
            wait::check_poll_args(max_poll_seconds, poll_interval_ms);
        let outer = caller_context();
        let start = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
        let deadline = start + i64::from(max_poll_seconds) * 1_000_000;
        wake::register(queue.stem());
        let rows = Spi::connect_mut(|client| {
            loop {
                if unsafe { pgrx::pg_sys::GetCurrentTimestamp() } >= deadline {
                    break Vec::new();
                }
                let rows = read_attempt(client, &queue, vt, qty, conditional, outer);
                if !rows.is_empty() {
                    break rows;
                }
                let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
                wait::latch_sleep(wait::sleep_millis(poll_interval_ms, now, deadline));
            }
        });
        SetOfIterator::new(rows)
    }

    /// Frees this backend's kept plans on a queue's tables (drop_queue calls it).
    #[pg_extern(name = "_forget_queue_plans", requires = ["pgmq"])]
    fn forget_queue_plans(queue_name: Option<&str>) {
        if let Some(name) = queue_name {
            crate::statement::forget_table_plans(&crate::queue::name::sql_lower(name));
        }
    }

    #[pg_extern(requires = ["pgmq"])]
    fn pop(
        queue_name: Option<&str>,
        qty: default!(Option<i32>, 1),
    ) -> SetOfIterator<'static, MessageRecord> {
        let queue = QueueName::parse(queue_name);
        let outer = caller_context();
        let table = queue.queue_table();
        let rows: Vec<MessageRecord> = Spi::connect_mut(|client| {
            POP.run(
                client,
                queue.stem(),
                || {
                    format!(
                        "WITH claimed AS (
                             SELECT msg_id FROM {table}
                             WHERE vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                             ORDER BY msg_id
                             LIMIT $1
                             FOR UPDATE SKIP LOCKED)
                         DELETE FROM {table} m USING claimed
                         WHERE m.msg_id OPERATOR(pg_catalog.=) claimed.msg_id
                         RETURNING {RECORD}"
                    )
                },
                &[qty.into()],
            )
            .filter_map(|row| only::<RawDatum>(&row).map(|d| MessageRecord(copy_to(outer, d.0))))
            .collect()
        });
        SetOfIterator::new(rows)
    }

    #[pg_extern(name = "archive", requires = ["pgmq"])]
    fn archive_one(queue_name: Option<&str>, msg_id: Option<i64>) -> bool {
        let queue = QueueName::parse(queue_name);
        Spi::connect_mut(|client| !archive_messages(client, &queue, Some(vec![msg_id])).is_empty())
    }

    #[pg_extern(name = "archive", requires = ["pgmq"])]
    fn archive_many(
        queue_name: Option<&str>,
        msg_ids: Option<Vec<Option<i64>>>,
    ) -> SetOfIterator<'static, i64> {
        let queue = QueueName::parse(queue_name);
        SetOfIterator::new(Spi::connect_mut(|client| {
            archive_messages(client, &queue, msg_ids)
        }))
    }

    #[pg_extern(name = "delete", requires = ["pgmq"])]
    fn delete_one(queue_name: Option<&str>, msg_id: Option<i64>) -> bool {
        let queue = QueueName::parse(queue_name);
        Spi::connect_mut(|client| !delete_messages(client, &queue, Some(vec![msg_id])).is_empty())
    }

    #[pg_extern(name = "delete", requires = ["pgmq"])]
    fn delete_many(
        queue_name: Option<&str>,
        msg_ids: Option<Vec<Option<i64>>>,
    ) -> SetOfIterator<'static, i64> {
        let queue = QueueName::parse(queue_name);
        SetOfIterator::new(Spi::connect_mut(|client| {
            delete_messages(client, &queue, msg_ids)
        }))
    }

    #[pg_extern(name = "set_vt", requires = ["pgmq"])]
    fn set_vt_one_seconds(
        queue_name: Option<&str>,
        msg_id: Option<i64>,
        vt: Option<i32>,
    ) -> SetOfIterator<'static, MessageRecord> {
        set_visibility(queue_name, Some(vec![msg_id]), Visible::After(vt))
    }

    #[pg_extern(name = "set_vt", requires = ["pgmq"])]
    fn set_vt_one_at(
        queue_name: Option<&str>,
        msg_id: Option<i64>,
        vt: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, MessageRecord> {
        set_visibility(queue_name, Some(vec![msg_id]), Visible::At(vt))
    }

    #[pg_extern(name = "set_vt", requires = ["pgmq"])]
    fn set_vt_many_seconds(
        queue_name: Option<&str>,
        msg_ids: Option<Vec<Option<i64>>>,
        vt: Option<i32>,
    ) -> SetOfIterator<'static, MessageRecord> {
        set_visibility(queue_name, msg_ids, Visible::After(vt))
    }

    #[pg_extern(name = "set_vt", requires = ["pgmq"])]
    fn set_vt_many_at(
        queue_name: Option<&str>,
        msg_ids: Option<Vec<Option<i64>>>,
        vt: Option<TimestampWithTimeZone>,
    ) -> SetOfIterator<'static, MessageRecord> {
        set_visibility(queue_name, msg_ids, Visible::At(vt))
    }
}
