"""metrics / metrics_all through the official client."""

from datetime import timedelta

from conftest import qtable


def test_metrics_of_empty_queue(pgmq_client, db, queue):
    t0 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    m = pgmq_client.metrics(queue)
    t1 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    assert m.queue_name == queue
    assert m.queue_length == 0
    assert m.queue_visible_length == 0
    assert m.newest_msg_age_sec is None
    assert m.oldest_msg_age_sec is None
    assert m.total_messages == 0
    assert t0 <= m.scrape_time <= t1


def test_metrics_counts_and_ages(pgmq_client, db, queue):
    ids = pgmq_client.send_batch(queue, [{"m": i} for i in range(4)])
    pgmq_client.send(queue, {"m": "delayed"}, delay=600)
    pgmq_client.read(queue, vt=600)  # in flight: no longer visible
    pgmq_client.delete(queue, ids[3])
    # age two messages on the server
    db.execute(f"UPDATE {qtable(queue)} SET enqueued_at = now() - interval '100 seconds' WHERE msg_id = %s",
               (ids[1],))
    db.execute(f"UPDATE {qtable(queue)} SET enqueued_at = now() - interval '40 seconds' WHERE msg_id = %s",
               (ids[2],))

    m = pgmq_client.metrics(queue)
    assert m.queue_name == queue
    assert m.queue_length == 4          # ids 0, 1, 2 and the delayed one
    assert m.queue_visible_length == 2  # ids 1 and 2 (0 is in flight, one delayed)
    assert m.total_messages == 5        # every id ever issued, deletes included
    assert m.oldest_msg_age_sec in (100, 101)
    assert m.newest_msg_age_sec in (0, 1)

    # metrics_result has 8 fields; default_partition_length is NULL for a plain queue
    raw = db.execute("SELECT * FROM pgmq.metrics(%s)", (queue,)).fetchone()
    assert list(raw.keys()) == ["queue_name", "queue_length", "newest_msg_age_sec", "oldest_msg_age_sec",
                                "total_messages", "scrape_time", "queue_visible_length",
                                "default_partition_length"]
    assert raw["default_partition_length"] is None

    # purge empties the queue but total_messages keeps counting issued ids
    pgmq_client.purge(queue)
    m = pgmq_client.metrics(queue)
    assert (m.queue_length, m.queue_visible_length, m.total_messages) == (0, 0, 5)
    assert m.oldest_msg_age_sec is None and m.newest_msg_age_sec is None


def test_metrics_all(pgmq_client, db, make_queue):
    a = make_queue()
    b = make_queue(unlogged=True)
    pgmq_client.send_batch(a, [{"x": 1}, {"x": 2}, {"x": 3}])
    pgmq_client.send(b, {"y": 1}, delay=300)

    t0 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    all_metrics = {m.queue_name: m for m in pgmq_client.metrics_all()}
    t1 = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]

    # one row per queue in meta
    meta_names = {r["queue_name"] for r in db.execute("SELECT queue_name FROM pgmq.meta")}
    assert set(all_metrics) == meta_names
    ma, mb = all_metrics[a], all_metrics[b]
    assert (ma.queue_length, ma.queue_visible_length, ma.total_messages) == (3, 3, 3)
    assert (mb.queue_length, mb.queue_visible_length, mb.total_messages) == (1, 0, 1)
    assert ma.oldest_msg_age_sec in (0, 1)
    assert t0 - timedelta(seconds=1) <= ma.scrape_time <= t1
    assert ma.scrape_time == mb.scrape_time  # one transaction, one now()
