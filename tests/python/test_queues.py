"""Queue management through the official client: create, create_unlogged, list_queues, purge,
drop_queue, name validation, missing queues."""

import uuid
import warnings

import psycopg
import pytest

from conftest import atable, qtable


def list_queue_records(client):
    # list_queues() warns that it returns QueueRecord objects instead of names.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return client.list_queues()


def relpersistence(db, name):
    row = db.execute(
        "SELECT relpersistence FROM pg_class WHERE oid = to_regclass(%s)", (name,)
    ).fetchone()
    return row["relpersistence"] if row else None


def columns(db, table):
    return [
        (r["attname"], r["type"])
        for r in db.execute(
            """SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
               WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
            (table,),
        )
    ]


def test_create_queue_makes_tables_and_meta_row(pgmq_client, db, queue_name):
    before = db.execute("SELECT now() AS t").fetchone()["t"]
    pgmq_client.create_queue(queue_name)

    assert relpersistence(db, qtable(queue_name)) == "p"
    assert relpersistence(db, atable(queue_name)) == "p"
    assert columns(db, qtable(queue_name)) == [
        ("msg_id", "bigint"), ("read_ct", "integer"), ("enqueued_at", "timestamp with time zone"),
        ("last_read_at", "timestamp with time zone"), ("vt", "timestamp with time zone"),
        ("message", "jsonb"), ("headers", "jsonb"),
    ]
    assert columns(db, atable(queue_name)) == [
        ("msg_id", "bigint"), ("read_ct", "integer"), ("enqueued_at", "timestamp with time zone"),
        ("last_read_at", "timestamp with time zone"), ("archived_at", "timestamp with time zone"),
        ("vt", "timestamp with time zone"), ("message", "jsonb"), ("headers", "jsonb"),
    ]
    meta = db.execute("SELECT * FROM pgmq.meta WHERE queue_name = %s", (queue_name,)).fetchall()
    assert len(meta) == 1
    assert meta[0]["is_partitioned"] is False and meta[0]["is_unlogged"] is False
    assert meta[0]["created_at"] >= before

    records = {r.queue_name: r for r in list_queue_records(pgmq_client)}
    rec = records[queue_name]
    assert rec.is_partitioned is False
    assert rec.is_unlogged is False
    assert rec.created_at == meta[0]["created_at"]


def test_create_queue_is_idempotent(pgmq_client, db, queue_name):
    pgmq_client.create_queue(queue_name)
    msg_id = pgmq_client.send(queue_name, {"keep": True})
    pgmq_client.create_queue(queue_name)  # a repeat changes nothing
    assert db.execute("SELECT count(*) AS n FROM pgmq.meta WHERE queue_name = %s",
                      (queue_name,)).fetchone()["n"] == 1
    rows = db.execute(f"SELECT msg_id, message FROM {qtable(queue_name)}").fetchall()
    assert rows == [{"msg_id": msg_id, "message": {"keep": True}}]


def test_create_unlogged_queue(pgmq_client, db, queue_name):
    pgmq_client.create_queue(queue_name, unlogged=True)

    # Only the queue table is unlogged; the archive stays logged.
    assert relpersistence(db, qtable(queue_name)) == "u"
    assert relpersistence(db, atable(queue_name)) == "p"
    records = {r.queue_name: r for r in list_queue_records(pgmq_client)}
    assert records[queue_name].is_unlogged is True
    assert records[queue_name].is_partitioned is False

    # It is a fully working queue.
    msg_id = pgmq_client.send(queue_name, {"u": 1})
    msg = pgmq_client.read(queue_name, vt=30)
    assert (msg.msg_id, msg.message, msg.read_ct) == (msg_id, {"u": 1}, 1)
    assert pgmq_client.archive(queue_name, msg_id) is True
    assert db.execute(f"SELECT message FROM {atable(queue_name)}").fetchall() == [{"message": {"u": 1}}]


def test_mixed_case_queue_name_shares_lower_case_tables(pgmq_client, db):
    name = "PyMixed_" + uuid.uuid4().hex[:8]
    try:
        pgmq_client.create_queue(name)
        assert relpersistence(db, f'pgmq."q_{name.lower()}"') == "p"
        # meta keeps the spelling as given
        assert name in {r.queue_name for r in list_queue_records(pgmq_client)}
        msg_id = pgmq_client.send(name, {"case": "mixed"})
        # any spelling of the name reaches the same tables
        msg = pgmq_client.read(name.lower(), vt=30)
        assert (msg.msg_id, msg.message) == (msg_id, {"case": "mixed"})
    finally:
        pgmq_client.drop_queue(name)
    assert relpersistence(db, f'pgmq."q_{name.lower()}"') is None


def test_list_queues_lists_every_created_queue(pgmq_client, make_queue):
    logged = make_queue()
    unlogged = make_queue(unlogged=True)
    records = {r.queue_name: r for r in list_queue_records(pgmq_client)}
    assert records[logged].is_unlogged is False
    assert records[unlogged].is_unlogged is True


def test_drop_queue(pgmq_client, db, queue_name):
    pgmq_client.create_queue(queue_name)
    pgmq_client.send(queue_name, {"a": 1})
    pgmq_client.bind_topic(f"{queue_name}.x", queue_name)
    pgmq_client.enable_notify(queue_name, throttle_interval_ms=0)

    assert pgmq_client.drop_queue(queue_name) is True

    assert relpersistence(db, qtable(queue_name)) is None
    assert relpersistence(db, atable(queue_name)) is None
    assert queue_name not in {r.queue_name for r in list_queue_records(pgmq_client)}
    # meta row deletion cascades to topic bindings and the notify throttle row
    assert db.execute("SELECT count(*) AS n FROM pgmq.topic_bindings WHERE queue_name = %s",
                      (queue_name,)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM pgmq.notify_insert_throttle WHERE queue_name = %s",
                      (queue_name,)).fetchone()["n"] == 0
    # dropping a queue that does not exist returns false (1.13 behaviour), no error
    assert pgmq_client.drop_queue(queue_name) is False


def test_purge_empties_queue_keeps_archive_and_sequence(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"n": i} for i in range(5)])
    assert pgmq_client.archive(queue, ids[0]) is True

    assert pgmq_client.purge(queue) == 4

    assert db.execute(f"SELECT count(*) AS n FROM {qtable(queue)}").fetchone()["n"] == 0
    assert [r["msg_id"] for r in db.execute(f"SELECT msg_id FROM {atable(queue)}")] == [ids[0]]
    # purge does not reset the identity sequence
    assert pgmq_client.send(queue, {"after": "purge"}) == ids[-1] + 1
    assert pgmq_client.purge(queue) == 1
    assert pgmq_client.purge(queue) == 0


def test_validate_queue_name(pgmq_client):
    assert pgmq_client.validate_queue_name("a" * 47) is True
    with pytest.raises(psycopg.errors.RaiseException,
                       match="queue name is too long, maximum length is 47 characters"):
        pgmq_client.validate_queue_name("a" * 48)


def test_create_rejects_bad_names(pgmq_client, db):
    with pytest.raises(psycopg.errors.RaiseException,
                       match="queue name is too long, maximum length is 47 characters"):
        pgmq_client.create_queue("q" * 48)
    for bad in ("bad;name", "bad$name", "bad--name", "bad'name"):
        with pytest.raises(psycopg.errors.RaiseException,
                           match=r"queue name contains invalid characters: \$, ;, --, or \\'"):
            pgmq_client.create_queue(bad)
    # nothing was created by the failed calls
    assert db.execute("SELECT count(*) AS n FROM pgmq.meta WHERE queue_name IN "
                      "('bad;name', 'bad$name', 'bad--name', 'bad''name')").fetchone()["n"] == 0


def test_invalid_name_rejected_by_per_queue_functions(pgmq_client):
    with pytest.raises(psycopg.errors.RaiseException, match="queue name contains invalid characters"):
        pgmq_client.send("x;drop", {"a": 1})
    with pytest.raises(psycopg.errors.RaiseException, match="queue name contains invalid characters"):
        pgmq_client.read("x--y")


def test_missing_queue_raises_undefined_table(pgmq_client, queue_name):
    with pytest.raises(psycopg.errors.UndefinedTable,
                       match=rf'relation "pgmq.q_{queue_name}" does not exist'):
        pgmq_client.send(queue_name, {"a": 1})
    with pytest.raises(psycopg.errors.UndefinedTable,
                       match=rf'relation "pgmq.q_{queue_name}" does not exist'):
        pgmq_client.read(queue_name)
    with pytest.raises(psycopg.errors.UndefinedTable):
        pgmq_client.metrics(queue_name)


def test_create_partitioned_queue_requires_pg_partman(pgmq_client, db, queue_name):
    if db.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_partman'").fetchone():
        pytest.skip("pg_partman is installed in this database")
    with pytest.raises(psycopg.errors.RaiseException, match="pg_partman is required for partitioned queues"):
        pgmq_client.create_partitioned_queue(queue_name, partition_interval=10000,
                                             retention_interval=100000)
    # the failed call left nothing behind
    assert relpersistence(db, qtable(queue_name)) is None
    assert db.execute("SELECT count(*) AS n FROM pgmq.meta WHERE queue_name = %s",
                      (queue_name,)).fetchone()["n"] == 0


def test_detach_archive_is_a_harmless_no_op(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"a": 1})
    pgmq_client.archive(queue, msg_id)
    pgmq_client.detach_archive(queue)
    assert [r["msg_id"] for r in db.execute(f"SELECT msg_id FROM {atable(queue)}")] == [msg_id]
