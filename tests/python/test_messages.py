"""Message life cycle through the official client: send (all variants), send_batch, read,
read_with_poll, pop, archive, delete, set_vt, and transactional behaviour."""

import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import DSN, atable, qtable


def server_clock(db):
    return db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]


def rows(db, table, order="msg_id"):
    return db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def row(db, table, msg_id):
    return db.execute(f"SELECT * FROM {table} WHERE msg_id = %s", (msg_id,)).fetchone()


SEC = timedelta(seconds=1)


# --------------------------------------------------------------------------------------------
# send
# --------------------------------------------------------------------------------------------

def test_send_returns_increasing_ids_and_stores_message(pgmq_client, db, queue):
    t0 = server_clock(db)
    first = pgmq_client.send(queue, {"hello": "world", "n": 1, "nested": {"a": [1, 2, None]}})
    second = pgmq_client.send(queue, {"hello": "again"})
    t1 = server_clock(db)

    assert isinstance(first, int)
    assert second > first
    r = row(db, qtable(queue), first)
    assert r["message"] == {"hello": "world", "n": 1, "nested": {"a": [1, 2, None]}}
    assert r["headers"] is None
    assert r["read_ct"] == 0
    assert r["last_read_at"] is None
    assert t0 <= r["enqueued_at"] <= t1
    assert t0 <= r["vt"] <= t1  # visible right away
    assert row(db, qtable(queue), second)["message"] == {"hello": "again"}


def test_send_with_headers(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"body": 1}, headers={"trace": "abc", "x-n": 5})
    r = row(db, qtable(queue), msg_id)
    assert r["message"] == {"body": 1}
    assert r["headers"] == {"trace": "abc", "x-n": 5}
    msg = pgmq_client.read(queue, vt=30)
    assert msg.headers == {"trace": "abc", "x-n": 5}


def test_send_with_integer_delay(pgmq_client, db, queue):
    t0 = server_clock(db)
    msg_id = pgmq_client.send(queue, {"delayed": True}, delay=30)
    t1 = server_clock(db)

    r = row(db, qtable(queue), msg_id)
    assert t0 + 30 * SEC <= r["vt"] <= t1 + 30 * SEC
    assert pgmq_client.read(queue, vt=30) is None  # not visible yet
    assert pgmq_client.pop(queue) is None


def test_send_with_timestamp_delay(pgmq_client, db, queue):
    at = (server_clock(db) + timedelta(hours=1)).replace(microsecond=123456)
    msg_id = pgmq_client.send(queue, {"at": "later"}, delay=at)
    assert row(db, qtable(queue), msg_id)["vt"] == at
    assert pgmq_client.read(queue, vt=30) is None

    # a timestamp in the past is visible at once
    past = datetime(2000, 1, 1, tzinfo=timezone.utc)
    past_id = pgmq_client.send(queue, {"at": "past"}, delay=past)
    assert row(db, qtable(queue), past_id)["vt"] == past
    msg = pgmq_client.read(queue, vt=30)
    assert (msg.msg_id, msg.message) == (past_id, {"at": "past"})


def test_send_with_headers_and_delay(pgmq_client, db, queue):
    t0 = server_clock(db)
    id_int = pgmq_client.send(queue, {"k": "int"}, headers={"h": 1}, delay=20)
    t1 = server_clock(db)
    at = (t1 + timedelta(minutes=5)).replace(microsecond=0)
    id_ts = pgmq_client.send(queue, {"k": "ts"}, headers={"h": 2}, delay=at)

    r = row(db, qtable(queue), id_int)
    assert (r["message"], r["headers"]) == ({"k": "int"}, {"h": 1})
    assert t0 + 20 * SEC <= r["vt"] <= t1 + 20 * SEC
    r = row(db, qtable(queue), id_ts)
    assert (r["message"], r["headers"], r["vt"]) == ({"k": "ts"}, {"h": 2}, at)


def test_send_delay_then_read_with_poll_picks_it_up(pgmq_client, queue):
    msg_id = pgmq_client.send(queue, {"soon": 1}, delay=1)
    assert pgmq_client.read(queue, vt=30) is None
    start = time.monotonic()
    msgs = pgmq_client.read_with_poll(queue, vt=30, qty=5, max_poll_seconds=5, poll_interval_ms=50)
    elapsed = time.monotonic() - start
    assert [(m.msg_id, m.message, m.read_ct) for m in msgs] == [(msg_id, {"soon": 1}, 1)]
    assert 0.2 < elapsed < 4.0


# --------------------------------------------------------------------------------------------
# send_batch
# --------------------------------------------------------------------------------------------

def test_send_batch(pgmq_client, db, queue):
    messages = [{"i": i, "payload": "x" * i} for i in range(6)]
    ids = pgmq_client.send_batch(queue, messages)
    assert len(ids) == 6
    assert ids == sorted(ids) and len(set(ids)) == 6  # ascending, in input order
    stored = rows(db, qtable(queue))
    assert [r["msg_id"] for r in stored] == ids
    assert [r["message"] for r in stored] == messages
    assert all(r["headers"] is None and r["read_ct"] == 0 for r in stored)
    assert len({r["vt"] for r in stored}) == 1  # one vt for the whole batch
    assert pgmq_client.send_batch(queue, []) == []  # client-side short cut


def test_send_batch_with_headers_and_delays(pgmq_client, db, queue):
    ids_h = pgmq_client.send_batch(queue, [{"a": 1}, {"a": 2}], headers=[{"h": "one"}, {"h": "two"}])
    assert [(r["message"], r["headers"]) for r in (row(db, qtable(queue), i) for i in ids_h)] == [
        ({"a": 1}, {"h": "one"}), ({"a": 2}, {"h": "two"})]

    t0 = server_clock(db)
    ids_d = pgmq_client.send_batch(queue, [{"d": 1}, {"d": 2}], delay=40)
    t1 = server_clock(db)
    for i in ids_d:
        assert t0 + 40 * SEC <= row(db, qtable(queue), i)["vt"] <= t1 + 40 * SEC

    at = (t1 + timedelta(days=1)).replace(microsecond=5)
    ids_t = pgmq_client.send_batch(queue, [{"t": 1}, {"t": 2}, {"t": 3}], delay=at)
    assert [row(db, qtable(queue), i)["vt"] for i in ids_t] == [at, at, at]

    t0 = server_clock(db)
    ids_hd = pgmq_client.send_batch(queue, [{"hd": 1}], headers=[{"x": True}], delay=50)
    t1 = server_clock(db)
    r = row(db, qtable(queue), ids_hd[0])
    assert (r["message"], r["headers"]) == ({"hd": 1}, {"x": True})
    assert t0 + 50 * SEC <= r["vt"] <= t1 + 50 * SEC

    ids_ht = pgmq_client.send_batch(queue, [{"ht": 1}], headers=[{"y": 1}], delay=at)
    r = row(db, qtable(queue), ids_ht[0])
    assert (r["headers"], r["vt"]) == ({"y": 1}, at)

    all_ids = ids_h + ids_d + ids_t + ids_hd + ids_ht
    assert all_ids == sorted(all_ids)
    # only the two undelayed messages are visible
    got = pgmq_client.read(queue, vt=30, qty=100)
    assert sorted(m.msg_id for m in got) == ids_h

    with pytest.raises(ValueError):  # checked by the client before calling the server
        pgmq_client.send_batch(queue, [{"a": 1}, {"a": 2}], headers=[{"h": 1}])


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------

def test_read_claims_message_and_moves_vt(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"job": "a"}, headers={"h": "v"})
    enqueued = row(db, qtable(queue), msg_id)["enqueued_at"]

    t0 = server_clock(db)
    msg = pgmq_client.read(queue, vt=45)
    t1 = server_clock(db)

    assert msg.msg_id == msg_id
    assert msg.message == {"job": "a"}
    assert msg.headers == {"h": "v"}
    assert msg.read_ct == 1
    assert msg.enqueued_at == enqueued
    assert t0 <= msg.last_read_at <= t1
    assert t0 + 45 * SEC <= msg.vt <= t1 + 45 * SEC
    stored = row(db, qtable(queue), msg_id)
    assert (stored["read_ct"], stored["vt"], stored["last_read_at"]) == (1, msg.vt, msg.last_read_at)

    # invisible while the vt runs; reading never removes the message
    assert pgmq_client.read(queue, vt=45) is None
    assert db.execute(f"SELECT count(*) AS n FROM {qtable(queue)}").fetchone()["n"] == 1


def test_read_qty_takes_lowest_ids_and_read_ct_grows(pgmq_client, queue):
    ids = pgmq_client.send_batch(queue, [{"i": i} for i in range(5)])

    batch = pgmq_client.read(queue, vt=30, qty=3)
    assert isinstance(batch, list)
    assert sorted(m.msg_id for m in batch) == ids[:3]
    assert {m.msg_id: m.message for m in batch} == {ids[i]: {"i": i} for i in range(3)}

    rest = pgmq_client.read(queue, vt=30, qty=10)
    assert sorted(m.msg_id for m in rest) == ids[3:]
    assert pgmq_client.read(queue, vt=30, qty=10) == []

    # make one visible again: the next read returns it with read_ct 2
    pgmq_client.set_vt(queue, ids[1], 0)
    again = pgmq_client.read(queue, vt=30)
    assert (again.msg_id, again.read_ct) == (ids[1], 2)
    assert pgmq_client.read_batch(queue, vt=30, batch_size=5) == []


def test_read_conditional(pgmq_client, queue):
    ids = pgmq_client.send_batch(queue, [{"kind": "a", "n": 1}, {"kind": "b", "n": 2},
                                         {"kind": "a", "n": 3}])
    got = pgmq_client.read(queue, vt=30, qty=10, conditional={"kind": "a"})
    assert sorted((m.msg_id, m.message["n"]) for m in got) == [(ids[0], 1), (ids[2], 3)]
    got = pgmq_client.read(queue, vt=30, qty=10, conditional={"kind": "a"})
    assert got == []
    got = pgmq_client.read(queue, vt=30, qty=10)
    assert [m.msg_id for m in got] == [ids[1]]


def test_read_skips_rows_locked_by_another_transaction(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"i": 0}, {"i": 1}])
    with psycopg.connect(DSN) as other:  # keeps its claim open (no commit)
        claimed = other.execute("SELECT msg_id FROM pgmq.read(%s::text, 30, 1)", (queue,)).fetchall()
        assert claimed == [(ids[0],)]
        start = time.monotonic()
        msg = pgmq_client.read(queue, vt=30)
        assert time.monotonic() - start < 2  # skipped, not waited for
        assert msg.msg_id == ids[1]
        other.rollback()
    # the rolled-back read left the first message untouched: visible, read_ct 0, never read
    r = row(db, qtable(queue), ids[0])
    assert (r["read_ct"], r["last_read_at"]) == (0, None)
    assert r["vt"] <= server_clock(db)
    msg = pgmq_client.read(queue, vt=30)
    assert (msg.msg_id, msg.read_ct) == (ids[0], 1)


def test_read_with_poll_empty_queue_waits_then_returns_nothing(pgmq_client, queue):
    start = time.monotonic()
    msgs = pgmq_client.read_with_poll(queue, vt=30, qty=1, max_poll_seconds=1, poll_interval_ms=100)
    elapsed = time.monotonic() - start
    assert msgs == []
    assert 0.8 <= elapsed < 3.0


def test_read_with_poll_returns_message_sent_while_polling(pgmq_client, queue):
    sent = {}

    def send_later():
        time.sleep(0.7)
        sent["id"] = pgmq_client.send(queue, {"late": True})

    t = threading.Thread(target=send_later)
    start = time.monotonic()
    t.start()
    msgs = pgmq_client.read_with_poll(queue, vt=30, qty=3, max_poll_seconds=5, poll_interval_ms=200)
    elapsed = time.monotonic() - start
    t.join()
    assert [(m.msg_id, m.message, m.read_ct) for m in msgs] == [(sent["id"], {"late": True}, 1)]
    assert 0.5 < elapsed < 4.0


def test_read_with_poll_conditional(pgmq_client, queue):
    ids = pgmq_client.send_batch(queue, [{"t": "x"}, {"t": "y"}])
    msgs = pgmq_client.read_with_poll(queue, vt=30, qty=5, max_poll_seconds=2,
                                      conditional={"t": "y"})
    assert [m.msg_id for m in msgs] == [ids[1]]


# --------------------------------------------------------------------------------------------
# pop
# --------------------------------------------------------------------------------------------

def test_pop(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"p": i} for i in range(4)])
    delayed = pgmq_client.send(queue, {"p": "delayed"}, delay=60)
    stored_vt = row(db, qtable(queue), ids[0])["vt"]

    msg = pgmq_client.pop(queue)
    # returned as stored: read_ct, vt and last_read_at unchanged
    assert (msg.msg_id, msg.message, msg.read_ct, msg.last_read_at, msg.vt) == (
        ids[0], {"p": 0}, 0, None, stored_vt)
    assert row(db, qtable(queue), ids[0]) is None

    two = pgmq_client.pop(queue, qty=2)
    assert sorted(m.msg_id for m in two) == ids[1:3]

    rest = pgmq_client.pop(queue, qty=10)
    assert [m.msg_id for m in rest] == [ids[3]]  # the delayed message is not visible
    assert pgmq_client.pop(queue) is None
    assert [r["msg_id"] for r in rows(db, qtable(queue))] == [delayed]
    assert rows(db, atable(queue)) == []  # nothing archived


# --------------------------------------------------------------------------------------------
# archive / delete
# --------------------------------------------------------------------------------------------

def test_archive_single_moves_row_with_all_fields(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"to": "archive"}, headers={"h": 1})
    read = pgmq_client.read(queue, vt=60)
    before = row(db, qtable(queue), msg_id)

    t0 = db.execute("SELECT now() AS t").fetchone()["t"]
    assert pgmq_client.archive(queue, msg_id) is True
    t1 = server_clock(db)

    assert row(db, qtable(queue), msg_id) is None
    archived = row(db, atable(queue), msg_id)
    for col in ("msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers"):
        assert archived[col] == before[col], col
    assert archived["read_ct"] == 1 and archived["last_read_at"] == read.last_read_at
    assert t0 <= archived["archived_at"] <= t1

    # second time: no longer in the queue
    assert pgmq_client.archive(queue, msg_id) is False
    assert pgmq_client.archive(queue, msg_id + 1000) is False
    assert len(rows(db, atable(queue))) == 1


def test_archive_batch(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"b": i} for i in range(5)])
    moved = pgmq_client.archive_batch(queue, [ids[0], ids[2], ids[4], ids[4], 999999])
    assert sorted(moved) == [ids[0], ids[2], ids[4]]  # missing ignored, duplicates once
    assert [r["msg_id"] for r in rows(db, qtable(queue))] == [ids[1], ids[3]]
    assert [(r["msg_id"], r["message"]) for r in rows(db, atable(queue))] == [
        (ids[0], {"b": 0}), (ids[2], {"b": 2}), (ids[4], {"b": 4})]
    assert pgmq_client.archive_batch(queue, [ids[0]]) == []


def test_delete_single_and_batch(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"d": i} for i in range(5)])
    assert pgmq_client.delete(queue, ids[0]) is True
    assert pgmq_client.delete(queue, ids[0]) is False

    deleted = pgmq_client.delete_batch(queue, [ids[1], ids[3], 424242])
    assert sorted(deleted) == [ids[1], ids[3]]
    assert pgmq_client.delete_batch(queue, [ids[1]]) == []

    assert [r["msg_id"] for r in rows(db, qtable(queue))] == [ids[2], ids[4]]
    assert rows(db, atable(queue)) == []  # delete does not archive


# --------------------------------------------------------------------------------------------
# set_vt
# --------------------------------------------------------------------------------------------

def test_set_vt_seconds(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"v": 1})
    first = pgmq_client.read(queue, vt=30)

    t0 = server_clock(db)
    msg = pgmq_client.set_vt(queue, msg_id, 120)
    t1 = server_clock(db)
    assert msg.msg_id == msg_id
    assert t0 + 120 * SEC <= msg.vt <= t1 + 120 * SEC
    assert msg.vt > first.vt
    # read_ct and last_read_at untouched
    assert (msg.read_ct, msg.last_read_at, msg.message) == (1, first.last_read_at, {"v": 1})
    assert row(db, qtable(queue), msg_id)["vt"] == msg.vt

    # negative seconds: vt in the past, visible at once
    msg = pgmq_client.set_vt(queue, msg_id, -10)
    assert msg.vt < server_clock(db)
    assert pgmq_client.read(queue, vt=30).msg_id == msg_id

    assert pgmq_client.set_vt(queue, msg_id + 100, 10) is None  # unknown id


def test_set_vt_timestamp(pgmq_client, db, queue):
    msg_id = pgmq_client.send(queue, {"v": 2})
    at = datetime(2031, 5, 6, 7, 8, 9, 101112, tzinfo=timezone.utc)
    msg = pgmq_client.set_vt(queue, msg_id, at)
    assert (msg.msg_id, msg.vt, msg.read_ct) == (msg_id, at, 0)
    assert row(db, qtable(queue), msg_id)["vt"] == at
    assert pgmq_client.read(queue, vt=30) is None


def test_set_vt_batch(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"s": i} for i in range(4)])

    t0 = server_clock(db)
    msgs = pgmq_client.set_vt(queue, [ids[0], ids[1], 31337], 300)
    t1 = server_clock(db)
    assert sorted(m.msg_id for m in msgs) == ids[:2]
    assert len({m.vt for m in msgs}) == 1  # one value for all
    assert t0 + 300 * SEC <= msgs[0].vt <= t1 + 300 * SEC

    at = datetime(2040, 1, 1, tzinfo=timezone.utc)
    msgs = pgmq_client.set_vt(queue, [ids[2], ids[3]], at)
    assert sorted((m.msg_id, m.vt) for m in msgs) == [(ids[2], at), (ids[3], at)]
    assert [r["vt"] for r in rows(db, qtable(queue))][2:] == [at, at]
    assert pgmq_client.read(queue, vt=30, qty=10) == []
    assert pgmq_client.set_vt(queue, [999999], 5) == []


@pytest.mark.xfail(
    strict=True,
    raises=psycopg.errors.InvalidTextRepresentation,
    reason="client defect: set_vt() accepts a tuple of ids (Tuple[int, ...]) but passes it to "
           "psycopg as is, which adapts a tuple as a record, not as bigint[] "
           "(malformed array literal); a list works",
)
def test_set_vt_batch_with_tuple_of_ids(pgmq_client, queue):
    ids = pgmq_client.send_batch(queue, [{"s": 1}, {"s": 2}])
    msgs = pgmq_client.set_vt(queue, tuple(ids), 60)
    assert sorted(m.msg_id for m in msgs) == ids


# --------------------------------------------------------------------------------------------
# transactions (the client's `conn=` parameter)
# --------------------------------------------------------------------------------------------

def test_rolled_back_send_is_invisible_and_consumes_an_id(pgmq_client, db, queue):
    with pgmq_client.pool.connection() as conn:
        with pytest.raises(RuntimeError):
            with conn.transaction():
                lost = pgmq_client.send(queue, {"lost": True}, conn=conn)
                # uncommitted: invisible to other sessions, visible to its own
                assert db.execute(f"SELECT count(*) AS n FROM {qtable(queue)}").fetchone()["n"] == 0
                assert pgmq_client.read(queue, vt=30) is None
                own = pgmq_client.read(queue, vt=30, conn=conn)
                assert own.msg_id == lost
                raise RuntimeError("roll back")
    assert rows(db, qtable(queue)) == []
    kept = pgmq_client.send(queue, {"kept": True})
    assert kept > lost  # ids are never reused


def test_operations_in_one_committed_transaction(pgmq_client, db, queue):
    with pgmq_client.pool.connection() as conn:
        with conn.transaction():
            a = pgmq_client.send(queue, {"a": 1}, conn=conn)
            b = pgmq_client.send(queue, {"b": 2}, conn=conn)
            assert pgmq_client.archive(queue, a, conn=conn) is True
    assert [r["msg_id"] for r in rows(db, qtable(queue))] == [b]
    assert [r["msg_id"] for r in rows(db, atable(queue))] == [a]
