"""The client's asyncio API (asyncpg based, needs the `pgmq[async]` extra): one full round trip.

Runs the coroutine with asyncio.run, so no pytest asyncio plugin is needed."""

import asyncio
import warnings
from datetime import datetime, timezone

import pytest

import pgmq
from conftest import atable, client_kwargs, qtable


def test_async_client_round_trip(db, queue_name):
    if pgmq.AsyncPGMQueue is None:
        pytest.fail("pgmq.AsyncPGMQueue unavailable: install pgmq[async]==1.1.4 (asyncpg)")

    async def scenario():
        client = pgmq.AsyncPGMQueue(**client_kwargs(pool_size=2))
        await client.init()
        try:
            await client.create_queue(queue_name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                names = {r.queue_name for r in await client.list_queues()}
            assert queue_name in names

            first = await client.send(queue_name, {"async": 1}, headers={"h": "a"})
            batch = await client.send_batch(queue_name, [{"async": 2}, {"async": 3}])
            assert batch == [first + 1, first + 2]
            at = datetime(2033, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
            late = await client.send(queue_name, {"async": "late"}, delay=at)

            msg = await client.read(queue_name, vt=30)
            assert (msg.msg_id, msg.message, msg.headers, msg.read_ct) == (first, {"async": 1}, {"h": "a"}, 1)
            assert msg.last_read_at is not None

            polled = await client.read_with_poll(queue_name, vt=30, qty=5, max_poll_seconds=1)
            assert sorted(m.msg_id for m in polled) == batch
            assert {m.msg_id: m.message for m in polled} == {batch[0]: {"async": 2}, batch[1]: {"async": 3}}

            moved = await client.set_vt(queue_name, first, 0)
            assert moved.msg_id == first and moved.read_ct == 1
            popped = await client.pop(queue_name)
            assert (popped.msg_id, popped.message) == (first, {"async": 1})

            assert await client.archive(queue_name, batch[0]) is True
            assert await client.delete(queue_name, batch[1]) is True

            m = await client.metrics(queue_name)
            assert (m.queue_name, m.queue_length, m.queue_visible_length, m.total_messages) == (
                queue_name, 1, 0, 4)
            return late, batch[0], at
        finally:
            await client.close()

    late, archived_id, at = asyncio.run(scenario())

    # verify the server state through a separate psycopg connection
    remaining = db.execute(f"SELECT msg_id, message, vt FROM {qtable(queue_name)}").fetchall()
    assert remaining == [{"msg_id": late, "message": {"async": "late"}, "vt": at}]
    archived = db.execute(f"SELECT msg_id, message, read_ct FROM {atable(queue_name)}").fetchall()
    assert archived == [{"msg_id": archived_id, "message": {"async": 2}, "read_ct": 1}]

    async def drop():
        client = pgmq.AsyncPGMQueue(**client_kwargs(pool_size=1))
        await client.init()
        try:
            return await client.drop_queue(queue_name)
        finally:
            await client.close()

    assert asyncio.run(drop()) is True
    assert db.execute("SELECT to_regclass(%s) AS r", (qtable(queue_name),)).fetchone()["r"] is None
