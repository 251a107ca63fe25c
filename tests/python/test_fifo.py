"""FIFO / grouped reads (read_grouped*, read_grouped_rr*, create_fifo_index*) through the client.

Group key = headers->>'x-pgmq-group'; messages without it form the group _default_fifo_group."""

import time

import pytest

from conftest import qtable


def g(group):
    return {"x-pgmq-group": group}


@pytest.fixture
def grouped(pgmq_client, queue):
    """The spec's example layout: A:1,2,4  B:3,5  C:6  default:7 (positions 1..7 -> msg ids)."""
    layout = ["A", "A", "B", "A", "B", "C", None]
    ids = []
    for pos, group in enumerate(layout, start=1):
        headers = g(group) if group else None
        ids.append(pgmq_client.send(queue, {"pos": pos, "group": group}, headers=headers))
    assert ids == sorted(ids)
    return queue, {pos: msg_id for pos, msg_id in enumerate(ids, start=1)}


def positions(msgs, ids):
    back = {v: k for k, v in ids.items()}
    return [back[m.msg_id] for m in msgs]


def test_read_grouped_fills_batch_from_oldest_group(pgmq_client, db, grouped):
    queue, ids = grouped
    msgs = pgmq_client.read_grouped(queue, vt=30, qty=4)
    assert sorted(positions(msgs, ids)) == [1, 2, 3, 4]  # all of A (1,2,4), then B's head 3
    assert all(m.read_ct == 1 and m.last_read_at is not None for m in msgs)
    assert {m.message["pos"]: m.headers for m in msgs}[3] == g("B")

    # A and B are in flight; B's 5 is blocked by its in-flight 3 -> only C and the default group
    msgs = pgmq_client.read_grouped(queue, vt=30, qty=10)
    assert sorted(positions(msgs, ids)) == [6, 7]
    assert pgmq_client.read_grouped(queue, vt=30, qty=10) == []

    # releasing B's head (archiving it) unblocks 5
    assert pgmq_client.archive(queue, ids[3]) is True
    msgs = pgmq_client.read_grouped(queue, vt=30, qty=10)
    assert positions(msgs, ids) == [5]

    read_cts = {r["msg_id"]: r["read_ct"] for r in db.execute(f"SELECT msg_id, read_ct FROM {qtable(queue)}")}
    assert read_cts == {ids[p]: 1 for p in (1, 2, 4, 5, 6, 7)}


def test_read_grouped_rr_interleaves_groups_in_order(pgmq_client, grouped):
    queue, ids = grouped
    msgs = pgmq_client.read_grouped_rr(queue, vt=30, qty=5)
    # first of each group (by head order), then the second of each ... returned in that order
    assert positions(msgs, ids) == [1, 3, 6, 7, 2]
    assert all(m.read_ct == 1 for m in msgs)

    # every group head is now in flight: nothing more is handed out
    assert pgmq_client.read_grouped_rr(queue, vt=30, qty=10) == []

    # finish A's and B's heads, make 2 visible again: A (head 2): 2,4 ; B (head 5): 5
    pgmq_client.archive_batch(queue, [ids[1], ids[3]])
    pgmq_client.set_vt(queue, ids[2], 0)
    msgs = pgmq_client.read_grouped_rr(queue, vt=30, qty=10)
    assert positions(msgs, ids) == [2, 5, 4]
    assert [m.read_ct for m in msgs] == [2, 1, 1]


def test_grouped_reads_with_poll(pgmq_client, queue):
    # empty queue: both poll variants wait max_poll_seconds and return nothing
    for fn in (pgmq_client.read_grouped_with_poll, pgmq_client.read_grouped_rr_with_poll):
        start = time.monotonic()
        assert fn(queue, vt=30, qty=5, max_poll_seconds=1, poll_interval_ms=100) == []
        assert 0.8 <= time.monotonic() - start < 3

    a = pgmq_client.send(queue, {"n": 1}, headers=g("A"), delay=1)
    start = time.monotonic()
    msgs = pgmq_client.read_grouped_with_poll(queue, vt=30, qty=5, max_poll_seconds=5, poll_interval_ms=50)
    assert [m.msg_id for m in msgs] == [a]
    assert time.monotonic() - start < 4

    b = pgmq_client.send(queue, {"n": 2}, headers=g("B"), delay=1)
    msgs = pgmq_client.read_grouped_rr_with_poll(queue, vt=30, qty=5, max_poll_seconds=5, poll_interval_ms=50)
    assert [m.msg_id for m in msgs] == [b]


def test_create_fifo_index(pgmq_client, db, make_queue):
    a, b = make_queue(), make_queue()

    def fifo_index(q):
        return db.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgmq' AND indexname = %s",
            (f"q_{q}_fifo_idx",)).fetchone()

    assert fifo_index(a) is None
    pgmq_client.create_fifo_index(a)
    assert "USING gin (headers)" in fifo_index(a)["indexdef"]
    pgmq_client.create_fifo_index(a)  # idempotent
    assert fifo_index(b) is None
    pgmq_client.create_fifo_indexes_all()
    assert "USING gin (headers)" in fifo_index(b)["indexdef"]
    # grouped reads work the same with the index
    msg_id = pgmq_client.send(b, {"x": 1}, headers=g("G"))
    assert [m.msg_id for m in pgmq_client.read_grouped(b, vt=30, qty=3)] == [msg_id]
