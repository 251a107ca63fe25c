"""Workers behind PgBouncer in transaction mode: 64 client connections of the Python worker onto 8
server connections, and a waiting read_with_poll woken through it. Prints TAP lines.

Environment: BOUNCER_DSN (through PgBouncer), DIRECT_DSN (the server), BOUNCER_ADMIN (psql args
for PgBouncer's console)."""

import os
import subprocess
import sys
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "workers", "python"))
from pgflow_worker import Worker  # noqa: E402

BOUNCER = os.environ["BOUNCER_DSN"]
DIRECT = os.environ["DIRECT_DSN"]
n = 0
failures = 0


def check(description, expected, actual):
    global n, failures
    n += 1
    if expected == actual:
        print(f"ok {n} - {description}", flush=True)
    else:
        failures += 1
        print(f"not ok {n} - {description}\n#   expected: {expected!r}\n#   got:      {actual!r}", flush=True)


def sql(query, params=()):
    with psycopg.connect(DIRECT, autocommit=True, application_name="bouncer-test-direct") as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def admin(command):
    out = subprocess.run(["psql", "-X", "-At", *os.environ["BOUNCER_ADMIN"].split(), "-c", command],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


for flow in ("bf_one", "bf_two"):
    sql("SELECT pgflow.create_flow(%s)", (flow,))
    sql("SELECT pgflow.add_step(%s, 'split')", (flow,))
    sql("SELECT pgflow.add_step(%s, 'square', ARRAY['split'], step_type => 'map')", (flow,))
    sql("SELECT pgflow.add_step(%s, 'total', ARRAY['square'])", (flow,))

# 16 workers, each serving both flows: two pollers, one connection for acknowledgements and one
# for heartbeats, so 64 client connections.
workers = []
for i in range(16):
    w = Worker(BOUNCER, name=f"bouncer-{i}", max_concurrency=4, max_poll_seconds=1, poll_interval_ms=50,
               heartbeat_seconds=0.5)
    for flow in ("bf_one", "bf_two"):
        w.handle(flow, "split", lambda flow_input, ctx: list(range(flow_input["n"])))
        w.handle(flow, "square", lambda x, ctx: x * x)
        w.handle(flow, "total", lambda deps, ctx: sum(deps["square"]) + ctx.flow_input["n"])
    workers.append(w)
threads = [threading.Thread(target=w.run, kwargs={"install_signal_handlers": False}, daemon=True) for w in workers]
for t in threads:
    t.start()

# Server connections of the test database (not ours, not the background processes'), sampled.
peak = {"server": 0}
sampling = threading.Event()


def sample():
    with psycopg.connect(DIRECT, autocommit=True, application_name="bouncer-test-direct") as conn:
        while not sampling.is_set():
            count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND backend_type = 'client backend' "
                                 "AND application_name <> 'bouncer-test-direct'").fetchone()[0]
            peak["server"] = max(peak["server"], count)
            time.sleep(0.02)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()

time.sleep(2)
began_at = sql("SELECT now()")[0][0]
runs = []
began = time.monotonic()
with psycopg.connect(DIRECT, autocommit=True, application_name="bouncer-test-direct") as conn:
    for i in range(200):
        flow = "bf_one" if i % 2 else "bf_two"
        runs.append(conn.execute("SELECT run_id FROM pgflow.start_flow(%s, %s)",
                                 (flow, Jsonb({"n": i % 7 + 1}))).fetchone()[0])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    left = sql("SELECT count(*) FROM pgflow.runs WHERE status = 'started'")[0][0]
    if left == 0:
        break
    time.sleep(0.2)
took = time.monotonic() - began
print(f"# 200 runs (1,400 tasks) through PgBouncer in {took:.1f} s", flush=True)
check("every run completes", [("completed", 200)],
      sql("SELECT status, count(*)::int FROM pgflow.runs GROUP BY status"))
check("with the right outputs (sum of squares below n, plus n)", 0, sql(
    "SELECT count(*)::int FROM pgflow.runs WHERE (output -> 'total')::int <> "
    "(SELECT sum(x * x) FROM generate_series(0, (input ->> 'n')::int - 1) x) + (input ->> 'n')::int")[0][0])
check("each task ran once (no retry, no requeue)", [(1, 0)],
      sql("SELECT DISTINCT attempts_count, requeued_count FROM pgflow.step_tasks"))
check("the invariants hold", [], sql("SELECT * FROM pgflow.check_invariants()"))
clients = [row for row in admin("SHOW CLIENTS") if len(row) > 3 and row[2] == "pgflow_bouncer"]
check("64 client connections of the workers are open through PgBouncer", 64, len(clients))
check("every worker heartbeat through PgBouncer while the runs ran", 32,
      sql("SELECT count(*)::int FROM pgflow.workers WHERE last_heartbeat_at > %s", (began_at,))[0][0])

for w in workers:
    w.stop()
for t in threads:
    t.join(20)
sampling.set()
sampler.join(5)
check("at most 8 server connections served them", True, 0 < peak["server"] <= 8)
print(f"# peak server connections: {peak['server']}", flush=True)
check("every worker stopped and marked itself stopped", 32,
      sql("SELECT count(*)::int FROM pgflow.workers WHERE stopped_at IS NOT NULL")[0][0])

# A read_with_poll waiting in a server connection through PgBouncer wakes when a message is sent
# (a 5 s poll interval: only the wake-up returns it sooner).
sql("SELECT pgmq.create('bf_wake')")
result = {}


def wait_read():
    with psycopg.connect(BOUNCER, autocommit=True, prepare_threshold=None) as conn:
        result["rows"] = conn.execute("SELECT msg_id FROM pgmq.read_with_poll('bf_wake', 30, 1, 10, 5000)").fetchall()
        result["at"] = time.monotonic()


reader = threading.Thread(target=wait_read)
reader.start()
time.sleep(1.0)
sent_at = time.monotonic()
sent = sql("SELECT pgmq.send('bf_wake', '{\"wake\": true}')")[0][0]
reader.join(15)
check("the waiting read returns the message", [(sent,)], result.get("rows"))
latency = result.get("at", sent_at + 99) - sent_at
print(f"# wake-up through PgBouncer: {latency * 1000:.0f} ms", flush=True)
check("within 500 ms of the send, with a 5 s poll interval", True, latency < 0.5)

print(f"1..{n}")
sys.exit(1 if failures else 0)
