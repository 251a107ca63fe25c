"""Topic routing (bind_topic / send_topic / send_batch_topic ...) through the official client.

Bindings are global to the database, so every test uses routing keys under its own unique
prefix and binds only patterns below it."""

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import qtable

SEC = timedelta(seconds=1)


@pytest.fixture
def prefix():
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def routed(pgmq_client, make_queue, prefix):
    """Three queues: orders (<p>.orders.*), everything (<p>.#), eu (<p>.orders.eu)."""
    orders, everything, eu = make_queue(suffix="_o"), make_queue(suffix="_e"), make_queue(suffix="_u")
    pgmq_client.bind_topic(f"{prefix}.orders.*", orders)
    pgmq_client.bind_topic(f"{prefix}.#", everything)
    pgmq_client.bind_topic(f"{prefix}.orders.eu", eu)
    return {"orders": orders, "everything": everything, "eu": eu}


def messages(db, queue):
    return db.execute(f"SELECT message, headers, vt FROM {qtable(queue)} ORDER BY msg_id").fetchall()


def test_bind_and_list_topic_bindings(pgmq_client, routed, prefix):
    p = prefix
    mine = [b for b in pgmq_client.list_topic_bindings() if b.pattern.startswith(p)]
    assert sorted((b.pattern, b.queue_name, b.compiled_regex) for b in mine) == sorted([
        (f"{p}.orders.*", routed["orders"], rf"^{p}\.orders\.[^.]+$"),
        (f"{p}.#", routed["everything"], rf"^{p}\..*$"),
        (f"{p}.orders.eu", routed["eu"], rf"^{p}\.orders\.eu$"),
    ])
    assert all(b.bound_at is not None for b in mine)

    only = pgmq_client.list_topic_bindings(queue_name=routed["orders"])
    assert [(b.pattern, b.queue_name) for b in only] == [(f"{p}.orders.*", routed["orders"])]

    # binding twice is silently ignored
    pgmq_client.bind_topic(f"{p}.orders.*", routed["orders"])
    assert len(pgmq_client.list_topic_bindings(queue_name=routed["orders"])) == 1


def test_test_routing(pgmq_client, routed, prefix):
    p = prefix
    result = pgmq_client.test_routing(f"{p}.orders.eu")
    assert [(r.pattern, r.queue_name) for r in result] == sorted(
        [(f"{p}.#", routed["everything"]), (f"{p}.orders.*", routed["orders"]),
         (f"{p}.orders.eu", routed["eu"])])
    result = pgmq_client.test_routing(f"{p}.orders.us")
    assert {r.queue_name for r in result} == {routed["orders"], routed["everything"]}
    result = pgmq_client.test_routing(f"{p}.orders.us.west")  # * is one segment, # any
    assert [r.queue_name for r in result] == [routed["everything"]]
    assert pgmq_client.test_routing(f"{p}x.orders") == []


def test_send_topic_fans_out(pgmq_client, db, routed, prefix):
    assert pgmq_client.send_topic(f"{prefix}.orders.eu", {"order": 1}) == 3
    assert pgmq_client.send_topic(f"{prefix}.orders.us", {"order": 2}) == 2
    assert pgmq_client.send_topic(f"{prefix}.billing", {"bill": 3}) == 1
    assert pgmq_client.send_topic(f"{prefix}z.nothing", {"none": 4}) == 0  # no match: not an error

    assert [m["message"] for m in messages(db, routed["eu"])] == [{"order": 1}]
    assert [m["message"] for m in messages(db, routed["orders"])] == [{"order": 1}, {"order": 2}]
    assert [m["message"] for m in messages(db, routed["everything"])] == [
        {"order": 1}, {"order": 2}, {"bill": 3}]
    assert all(m["headers"] is None for m in messages(db, routed["everything"]))
    # the queue receives ordinary messages: readable through the client
    msg = pgmq_client.read(routed["eu"], vt=30)
    assert (msg.message, msg.read_ct) == ({"order": 1}, 1)


def test_send_topic_with_delay(pgmq_client, db, routed, prefix):
    t0 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    assert pgmq_client.send_topic(f"{prefix}.orders.eu", {"d": 1}, delay=90) == 3
    t1 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    for q in routed.values():
        (m,) = messages(db, q)
        assert m["message"] == {"d": 1} and m["headers"] is None
        assert t0 + 90 * SEC <= m["vt"] <= t1 + 90 * SEC
    assert pgmq_client.read(routed["eu"], vt=30) is None


def test_send_topic_with_headers_and_delay(pgmq_client, db, routed, prefix):
    assert pgmq_client.send_topic(f"{prefix}.orders.us", {"hd": 1}, headers={"k": "v"}, delay=0) == 2
    for q in (routed["orders"], routed["everything"]):
        assert [(m["message"], m["headers"]) for m in messages(db, q)] == [({"hd": 1}, {"k": "v"})]
    assert messages(db, routed["eu"]) == []


@pytest.mark.xfail(
    strict=True,
    raises=psycopg.errors.UndefinedFunction,
    reason="client defect: send_topic(headers=..., delay=None) calls "
           "pgmq.send_topic(routing_key, msg, headers), an overload pgmq 1.13.0 does not have "
           "(spec section 7 / 4.8)",
)
def test_send_topic_with_headers_only(pgmq_client, db, routed, prefix):
    assert pgmq_client.send_topic(f"{prefix}.orders.eu", {"h": 1}, headers={"k": "v"}) == 3


def test_send_topic_rejects_invalid_routing_key(pgmq_client, routed):
    with pytest.raises(psycopg.errors.RaiseException, match="routing_key cannot contain consecutive dots"):
        pgmq_client.send_topic("a..b", {"x": 1})
    with pytest.raises(psycopg.errors.RaiseException, match="routing_key contains invalid characters"):
        pgmq_client.send_topic("a.*", {"x": 1})


def test_send_batch_topic(pgmq_client, db, routed, prefix):
    result = pgmq_client.send_batch_topic(f"{prefix}.orders.eu", [{"b": 1}, {"b": 2}])
    assert sorted({r.queue_name for r in result}) == sorted(routed.values())
    assert len(result) == 6
    for q in routed.values():
        ids = [r.msg_id for r in result if r.queue_name == q]
        stored = db.execute(f"SELECT msg_id, message FROM {qtable(q)} ORDER BY msg_id").fetchall()
        assert [(s["msg_id"], s["message"]) for s in stored] == [(ids[0], {"b": 1}), (ids[1], {"b": 2})]

    assert pgmq_client.send_batch_topic(f"{prefix}z.none", [{"b": 3}]) == []
    assert pgmq_client.send_batch_topic(f"{prefix}.orders.eu", []) == []  # client short cut


def test_send_batch_topic_headers_and_delays(pgmq_client, db, routed, prefix):
    key = f"{prefix}.misc"  # only the '#' queue
    q = routed["everything"]

    res = pgmq_client.send_batch_topic(key, [{"n": 1}, {"n": 2}], headers=[{"h": 1}, {"h": 2}])
    assert [r.queue_name for r in res] == [q, q]
    t0 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    res_d = pgmq_client.send_batch_topic(key, [{"n": 3}], delay=70)
    t1 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    at = datetime(2035, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    res_t = pgmq_client.send_batch_topic(key, [{"n": 4}], delay=at)
    res_hd = pgmq_client.send_batch_topic(key, [{"n": 5}], headers=[{"h": 5}], delay=80)
    res_ht = pgmq_client.send_batch_topic(key, [{"n": 6}], headers=[{"h": 6}], delay=at)
    assert len(res_d) == len(res_t) == len(res_hd) == len(res_ht) == 1

    stored = messages(db, q)
    assert [(m["message"]["n"], m["headers"]) for m in stored] == [
        (1, {"h": 1}), (2, {"h": 2}), (3, None), (4, None), (5, {"h": 5}), (6, {"h": 6})]
    assert t0 + 70 * SEC <= stored[2]["vt"] <= t1 + 70 * SEC
    assert stored[3]["vt"] == at and stored[5]["vt"] == at
    assert stored[4]["vt"] >= t1 + 79 * SEC

    with pytest.raises(ValueError):  # client-side length check
        pgmq_client.send_batch_topic(key, [{"n": 1}], headers=[{"h": 1}, {"h": 2}])


def test_unbind_topic(pgmq_client, routed, prefix):
    assert pgmq_client.unbind_topic(f"{prefix}.orders.*", routed["orders"]) is True
    assert pgmq_client.unbind_topic(f"{prefix}.orders.*", routed["orders"]) is False
    assert pgmq_client.list_topic_bindings(queue_name=routed["orders"]) == []
    assert pgmq_client.send_topic(f"{prefix}.orders.us", {"x": 1}) == 1  # only '#' left


def test_bind_topic_errors(pgmq_client, queue, queue_name):
    with pytest.raises(psycopg.errors.RaiseException,
                       match=f'Queue "{queue_name}" does not exist. Create the queue first using pgmq.create'):
        pgmq_client.bind_topic("some.pattern", queue_name)
    with pytest.raises(psycopg.errors.RaiseException, match=r"pattern cannot contain consecutive stars \(\*\*\)"):
        pgmq_client.bind_topic("a.**", queue)
    with pytest.raises(psycopg.errors.RaiseException, match="queue_name cannot be NULL or empty"):
        pgmq_client.bind_topic("a.b", "")


def test_validate_routing_key_and_pattern(pgmq_client):
    assert pgmq_client.validate_routing_key("orders.eu-west_1.created") is True
    for bad in ("", ".a", "a.", "a..b", "a b", "a.*", "x" * 256):
        assert pgmq_client.validate_routing_key(bad) is False, bad

    for good in ("a.*.c", "a.#", "#", "*.x.#", "a#"):
        assert pgmq_client.validate_topic_pattern(good) is True, good
    for bad in ("", ".a", "a.", "a..b", "a.**", "a.##", "a.*#", "a.#*", "a/b"):
        assert pgmq_client.validate_topic_pattern(bad) is False, bad
