"""The Python worker against a real pgflow_core database ($PGFLOW_WORKER_DSN)."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pgflow_worker import Worker  # noqa: E402

DSN = os.environ.get("PGFLOW_WORKER_DSN", "host=localhost port=5439 user=postgres dbname=pgflow_worker_py")


def sql(query, params=()):
    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def flow(slug, steps, **opts):
    """steps: (slug, deps, step_type)"""
    args = ", ".join(f"{k} => {v}" for k, v in opts.items())
    sql(f"SELECT pgflow.create_flow(%s{', ' + args if args else ''})", (slug,))
    for step, deps, kind in steps:
        sql("SELECT pgflow.add_step(%s, %s, %s::text[], step_type => %s)", (slug, step, deps, kind))


def start(slug, payload):
    return sql("SELECT run_id FROM pgflow.start_flow(%s, %s::jsonb)", (slug, psycopg.types.json.Jsonb(payload)))[0][0]


def wait_runs(run_ids, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql("SELECT run_id, status, output FROM pgflow.runs WHERE run_id = ANY(%s)", (list(run_ids),))
        if all(r[1] != "started" for r in rows):
            return {r[0]: (r[1], r[2]) for r in rows}
        time.sleep(0.05)
    raise AssertionError(f"runs still started after {timeout} s")


def serve(worker):
    t = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True)
    t.start()
    return t


def name():
    return "py_" + uuid.uuid4().hex[:10]


def test_shapes_of_inputs_and_context():
    slug = name()
    flow(slug, [("fetch", [], "single"), ("double", ["fetch"], "map"), ("total", ["double", "fetch"], "single")])
    seen = {}
    w = Worker(DSN, max_concurrency=4, max_poll_seconds=1)

    @w.step(slug, "fetch")
    def fetch(flow_input, ctx):
        seen["fetch"] = (flow_input, ctx.flow_input)
        return flow_input["numbers"]

    @w.step(slug, "double")
    def double(element, ctx):
        seen.setdefault("double", []).append((ctx.task_index, element))
        return element * 2

    @w.step(slug, "total")
    def total(deps, ctx):
        seen["total"] = (deps, ctx.flow_input)
        return {"sum": sum(deps["double"]), "count": len(deps["fetch"])}

    t = serve(w)
    run = start(slug, {"numbers": [1, 2, 3]})
    assert wait_runs([run])[run] == ("completed", {"total": {"sum": 12, "count": 3}})
    w.stop()
    t.join(10)
    assert seen["fetch"] == ({"numbers": [1, 2, 3]}, {"numbers": [1, 2, 3]}), "a root step gets the run's input"
    assert sorted(seen["double"]) == [(0, 1), (1, 2), (2, 3)], "a map step gets its element"
    assert seen["total"] == ({"double": [2, 4, 6], "fetch": [1, 2, 3]}, {"numbers": [1, 2, 3]}), \
        "a dependent step gets its dependencies' outputs; ctx.flow_input the run's input"
    assert not t.is_alive()


def test_failures_are_retried_then_fail_the_run():
    slug = name()
    flow(slug, [("flaky", [], "single"), ("broken", [], "single")], max_attempts=3, base_delay=0)
    calls = {"flaky": 0, "broken": 0}
    w = Worker(DSN, max_poll_seconds=1)

    @w.step(slug, "flaky")
    def flaky(_, ctx):
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError(f"attempt {calls['flaky']}")
        return "ok"

    @w.step(slug, "broken")
    async def broken(_, ctx):  # async handlers work too
        calls["broken"] += 1
        raise ValueError("always")

    t = serve(w)
    run = start(slug, {})
    status = wait_runs([run])[run]
    w.stop()
    t.join(10)
    assert status[0] == "failed"
    tasks = dict((r[0], r[1:]) for r in sql(
        "SELECT step_slug, status, attempts_count, error_message FROM pgflow.step_tasks WHERE run_id = %s", (run,)))
    assert tasks["broken"] == ("failed", 3, "ValueError: always")
    assert calls["broken"] == 3


def test_unknown_step_fails_with_a_clear_error():
    slug = name()
    flow(slug, [("known", [], "single"), ("unknown", [], "single")], max_attempts=1)
    w = Worker(DSN, max_poll_seconds=1)
    w.handle(slug, "known", lambda i, c: 1)
    t = serve(w)
    run = start(slug, {})
    wait_runs([run])
    w.stop()
    t.join(10)
    assert sql("SELECT error_message FROM pgflow.step_tasks WHERE run_id = %s AND step_slug = 'unknown'", (run,)) == \
        [(f'LookupError: no handler for step "unknown" of flow "{slug}"',)]


def counting_handler(seconds):
    """A handler that sleeps and counts how many run at once: (handler, {"now", "max"})."""
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def item(element, ctx):
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(seconds)
        with lock:
            running["now"] -= 1
        return element

    return item, running


def test_concurrency_limit():
    slug = name()
    flow(slug, [("items", [], "map")])
    item, running = counting_handler(0.2)
    w = Worker(DSN, max_concurrency=3, max_poll_seconds=1)
    w.handle(slug, "items", item)
    t = serve(w)
    run = start(slug, list(range(12)))
    assert wait_runs([run])[run] == ("completed", {"items": list(range(12))})
    w.stop()
    t.join(10)
    assert running["max"] == 3, f"at most 3 tasks at once, and 3 were reached: {running['max']}"


def test_heartbeat_and_stop_mark_the_worker():
    slug = name()
    flow(slug, [("a", [], "single")])
    w = Worker(DSN, name="hb-worker", heartbeat_seconds=0.2, max_poll_seconds=1)
    w.handle(slug, "a", lambda i, c: 1)
    t = serve(w)
    time.sleep(0.3)
    worker_id = w.worker_ids[slug]
    first = sql("SELECT last_heartbeat_at, started_at, queue_name, function_name FROM pgflow.workers WHERE worker_id = %s",
                (worker_id,))[0]
    assert first[2:] == (slug, "hb-worker")
    time.sleep(0.6)
    later = sql("SELECT last_heartbeat_at FROM pgflow.workers WHERE worker_id = %s", (worker_id,))[0][0]
    assert later > first[0], "the heartbeat moves last_heartbeat_at"
    w.stop()
    t.join(10)
    assert sql("SELECT stopped_at IS NOT NULL FROM pgflow.workers WHERE worker_id = %s", (worker_id,)) == [(True,)]


def test_a_waiting_read_wakes_up_on_a_new_run():
    slug = name()
    flow(slug, [("a", [], "single")])
    w = Worker(DSN, max_poll_seconds=10, poll_interval_ms=100)
    w.handle(slug, "a", lambda i, c: "done")
    t = serve(w)
    time.sleep(1.0)  # the worker is inside read_with_poll now
    began = time.monotonic()
    run = start(slug, {})
    assert wait_runs([run], timeout=5)[run][0] == "completed"
    took = time.monotonic() - began
    w.stop()
    t.join(15)
    assert took < 2.0, f"a run started while the worker waits is worked within 2 s of a 10 s poll: {took:.2f} s"


WORKER_SCRIPT = """
import sys, time
sys.path.insert(0, {path!r})
from pgflow_worker import Worker
w = Worker({dsn!r}, max_poll_seconds=2, shutdown_timeout={grace})
@w.step({slug!r}, "slow")
def slow(_, ctx):
    print("started", flush=True)
    time.sleep({sleep})
    return "finished"
w.run()
print("stopped", w.completed, w.released, flush=True)
"""


def worker_process(slug, grace, sleep):
    script = WORKER_SCRIPT.format(path=os.path.join(os.path.dirname(__file__), ".."), dsn=DSN, slug=slug,
                                  grace=grace, sleep=sleep)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_sigterm_finishes_started_tasks_and_reads_no_more():
    slug = name()
    flow(slug, [("slow", [], "single")])
    proc = worker_process(slug, grace=10, sleep=1.5)
    try:
        first = start(slug, {})
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        second = start(slug, {})
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out.strip() == "stopped 1 0", "the started task finished before the worker exited"
    assert sql("SELECT status FROM pgflow.runs WHERE run_id = %s", (first,)) == [("completed",)]
    assert sql("SELECT status, attempts_count FROM pgflow.step_tasks WHERE run_id = %s", (second,)) == [("queued", 0)], \
        "after SIGTERM the worker read nothing more"


def test_bad_arguments():
    with pytest.raises(ValueError):
        Worker(DSN, max_concurrency=0)
    with pytest.raises(ValueError):
        Worker(DSN).run(install_signal_handlers=False)


def test_sigterm_releases_a_task_still_running_after_the_grace_period():
    slug = name()
    flow(slug, [("slow", [], "single")])
    proc = worker_process(slug, grace=0.5, sleep=30)
    try:
        run = start(slug, {})
        assert proc.stdout.readline().strip() == "started"
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out.strip() == "stopped 0 1"
    assert time.monotonic() - began < 5, "the worker did not wait for the handler"
    assert sql("""SELECT t.status, t.attempts_count, t.last_worker_id IS NULL,
                         (SELECT count(*) FROM pgmq.read(%s, 30, 10))
                  FROM pgflow.step_tasks t WHERE t.run_id = %s""", (slug, run)) == [("queued", 0, True, 1)], \
        "the task is queued again, its attempt not counted, its message visible at once"


def test_least_privilege_role():
    slug = name()
    flow(slug, [("a", [], "single"), ("b", ["a"], "single")])
    sql("SELECT pgflow.create_roles()")
    sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'py_worker_role') THEN "
        "CREATE ROLE py_worker_role LOGIN IN ROLE pgflow_worker; END IF; END $$")
    sql("SELECT pgflow.grant_flow(%s, 'py_worker_role')", (slug,))
    dsn = DSN + " user=py_worker_role"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "py_worker_role"
    w = Worker(dsn, max_poll_seconds=1)
    w.handle(slug, "a", lambda flow_input, ctx: flow_input["x"] + 1)
    w.handle(slug, "b", lambda deps, ctx: deps["a"] * ctx.flow_input["x"])
    t = serve(w)
    run = start(slug, {"x": 5})
    result = wait_runs([run])[run]
    w.stop()
    t.join(10)
    assert result == ("completed", {"b": 30}), "a pgflow_worker role works its flow, ctx.flow_input included"


def test_an_output_json_cannot_encode_fails_the_attempt_and_the_worker_goes_on():
    slug = name()
    flow(slug, [("a", [], "single")], max_attempts=1)
    w = Worker(DSN, max_concurrency=1, max_poll_seconds=1)
    w.handle(slug, "a", lambda i, c: {1, 2} if i.get("bad") else "fine")
    t = serve(w)
    bad = start(slug, {"bad": True})
    assert wait_runs([bad])[bad][0] == "failed"
    good = start(slug, {})
    assert wait_runs([good])[good] == ("completed", {"a": "fine"}), "the single task slot was not lost"
    w.stop()
    t.join(10)
    assert sql("SELECT error_message FROM pgflow.step_tasks WHERE run_id = %s", (bad,)) == \
        [("TypeError: Object of type set is not JSON serializable",)]


def test_two_flows_share_the_concurrency_limit():
    slugs = [name(), name()]
    for slug in slugs:
        flow(slug, [("items", [], "map")])
    item, running = counting_handler(0.15)
    w = Worker(DSN, max_concurrency=4, max_poll_seconds=1)
    for slug in slugs:
        w.handle(slug, "items", item)
    t = serve(w)
    runs = [start(slug, list(range(8))) for slug in slugs]
    assert {r: s for r, (s, _) in wait_runs(runs).items()} == {r: "completed" for r in runs}
    w.stop()
    t.join(10)
    assert 2 <= running["max"] <= 4, f"at most 4 tasks at once across both flows: {running['max']}"
