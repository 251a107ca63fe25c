"""Insert notifications (enable_notify / update_notify / disable_notify / list_notify_throttles)
and the client's own SyncNotificationListener."""

import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from pgmq.notify_listener import SyncNotificationListener

from conftest import DSN, qtable

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def throttles(client, queue):
    return [t for t in client.list_notify_throttles() if t.queue_name == queue]


def has_trigger(db, queue):
    return db.execute(
        "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
        "AND tgname = 'trigger_notify_queue_insert_listeners'", (qtable(queue),)
    ).fetchone()["n"] == 1


class Listener:
    """A plain LISTEN connection on the channel the client uses: pgmq.q_<queue as given>.INSERT."""

    def __init__(self, queue):
        self.channel = f"pgmq.q_{queue}.INSERT"
        self.conn = psycopg.connect(DSN, autocommit=True)
        self.conn.execute(f'LISTEN "{self.channel}"')

    def collect(self, timeout):
        return [(n.channel, n.payload) for n in self.conn.notifies(timeout=timeout)]

    def close(self):
        self.conn.close()


@pytest.fixture
def listen():
    made = []

    def factory(queue):
        lst = Listener(queue)
        made.append(lst)
        return lst

    yield factory
    for lst in made:
        lst.close()


def test_enable_update_disable_and_list(pgmq_client, db, queue):
    assert throttles(pgmq_client, queue) == []
    assert not has_trigger(db, queue)

    pgmq_client.enable_notify(queue, throttle_interval_ms=500)
    (t,) = throttles(pgmq_client, queue)
    assert (t.throttle_interval_ms, t.last_notified_at) == (500, EPOCH)
    assert has_trigger(db, queue)

    pgmq_client.send(queue, {"a": 1})
    (t,) = throttles(pgmq_client, queue)
    assert t.last_notified_at > EPOCH  # the insert notified and moved the window

    pgmq_client.update_notify(queue, throttle_interval_ms=1500)
    (t,) = throttles(pgmq_client, queue)
    assert (t.throttle_interval_ms, t.last_notified_at) == (1500, EPOCH)  # update resets the window

    pgmq_client.enable_notify(queue)  # re-enable replaces; default interval is 250
    (t,) = throttles(pgmq_client, queue)
    assert t.throttle_interval_ms == 250
    assert has_trigger(db, queue)

    pgmq_client.disable_notify(queue)
    assert throttles(pgmq_client, queue) == []
    assert not has_trigger(db, queue)
    pgmq_client.disable_notify(queue)  # disabling twice only notices


def test_notify_errors(pgmq_client, queue, queue_name):
    with pytest.raises(psycopg.errors.RaiseException, match="throttle_interval_ms must be non-negative"):
        pgmq_client.enable_notify(queue, throttle_interval_ms=-1)
    with pytest.raises(psycopg.errors.RaiseException,
                       match=f'Queue "{queue_name}" does not exist. Create it first using pgmq.create'):
        pgmq_client.enable_notify(queue_name)
    with pytest.raises(psycopg.errors.RaiseException,
                       match=f'Queue "{queue}" does not have notify_insert enabled'):
        pgmq_client.update_notify(queue, 10)
    with pytest.raises(psycopg.errors.RaiseException,
                       match="throttle_interval_ms must be non-negative, got: -5"):
        pgmq_client.update_notify(queue, -5)


def test_notifications_without_throttle(pgmq_client, queue, listen):
    pgmq_client.enable_notify(queue, throttle_interval_ms=0)
    lst = listen(queue)

    pgmq_client.send(queue, {"n": 1})
    pgmq_client.send_batch(queue, [{"n": 2}, {"n": 3}, {"n": 4}])  # one transaction: one notification
    got = lst.collect(timeout=1.0)
    assert got == [(f"pgmq.q_{queue}.INSERT", "")] * 2

    # rolled back inserts notify nobody
    with pgmq_client.pool.connection() as conn:
        with pytest.raises(RuntimeError):
            with conn.transaction():
                pgmq_client.send(queue, {"n": "lost"}, conn=conn)
                raise RuntimeError("rollback")
    assert lst.collect(timeout=0.5) == []

    pgmq_client.disable_notify(queue)
    pgmq_client.send(queue, {"n": 5})
    assert lst.collect(timeout=0.5) == []


def test_notifications_are_throttled(pgmq_client, queue, listen):
    pgmq_client.enable_notify(queue, throttle_interval_ms=60_000)
    lst = listen(queue)
    for i in range(3):
        pgmq_client.send(queue, {"n": i})
    # only the first insert of the window notifies; no trailing notification either
    assert len(lst.collect(timeout=1.0)) == 1

    pgmq_client.update_notify(queue, 60_000)  # resets the window: the next insert notifies
    pgmq_client.send(queue, {"n": "after update"})
    pgmq_client.send(queue, {"n": "throttled"})
    assert len(lst.collect(timeout=1.0)) == 1


def _run_client_listener(pgmq_client, db, queue_name, send):
    """Runs the client's SyncNotificationListener in a thread, waits until it LISTENs, calls
    send(), and returns the payloads the listener's callback received."""
    listener = SyncNotificationListener(pgmq_client)
    received = []
    got_one = threading.Event()

    def callback(payload):
        received.append(payload)
        got_one.set()

    thread = threading.Thread(target=listener.listen, args=(queue_name, callback), kwargs={"timeout": 2.0},
                              daemon=True)
    thread.start()
    channel = f"pgmq.q_{queue_name}.INSERT"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        n = db.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'idle' AND query = %s",
                       (f'LISTEN "{channel}";',)).fetchone()["n"]
        if n:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the client listener never issued LISTEN")
    send()
    got_one.wait(timeout=5)
    thread.join(timeout=10)
    return received


def test_client_sync_listener_receives_insert_notification(pgmq_client, db, queue):
    pgmq_client.enable_notify(queue, throttle_interval_ms=0)
    received = _run_client_listener(pgmq_client, db, queue, lambda: pgmq_client.send(queue, {"x": 1}))
    # our notifications carry an empty payload; the client reports that as below
    assert received == [{"event": "insert", "payload_empty": True}]


def test_client_listener_with_mixed_case_queue_name(pgmq_client, db):
    # pgmq 1.13.0 never notifies for mixed-case names; the spec follows 1.13.1, which notifies
    # on pgmq.q_<name as stored>.INSERT -- the channel the client listens on.
    name = "PyNotify_" + uuid.uuid4().hex[:8]
    pgmq_client.create_queue(name)
    try:
        pgmq_client.enable_notify(name, throttle_interval_ms=0)
        received = _run_client_listener(pgmq_client, db, name, lambda: pgmq_client.send(name, {"x": 1}))
        assert received == [{"event": "insert", "payload_empty": True}]
    finally:
        pgmq_client.drop_queue(name)
