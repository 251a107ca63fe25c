"""Crashes under load: 8 external workers and the database's executors process 1,000 runs of a
flow that mixes external and SQL steps; the postmaster is SIGKILLed midway and started again.
The workers reconnect and every run completes. Then: no acknowledged completion is lost, no task
runs again after its completion was acknowledged, and each SQL step's effect happened once.
Then the backend of a worker holding a started task is SIGKILLed: the task runs again within its
step's timeout.

Run by tests/crash.sh, which makes the cluster. Prints TAP lines."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg

DSN = os.environ["CRASH_DSN"]
PGDATA = os.environ["CRASH_PGDATA"]
CLUSTER = os.environ["CRASH_CLUSTER"]
RUNS = int(os.environ.get("CRASH_RUNS", "1000"))
WORKERS = 8
TIMEOUT = 3  # the flow's step timeout, seconds
SEED = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 30))))

n = 0
failures = 0


def check(description, ok, detail=""):
    global n, failures
    n += 1
    if ok:
        print(f"ok {n} - {description}", flush=True)
    else:
        failures += 1
        print(f"not ok {n} - {description}", flush=True)
        for line in str(detail).splitlines()[:40]:
            print(f"#   {line}", flush=True)


def connect():
    """A connection, retried while the server is down or recovering."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return psycopg.connect(DSN, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def query(sql, *args):
    with connect() as conn:
        return conn.execute(sql, args).fetchall()


class Log:
    """What the workers did, in order: each execution of a handler and each acknowledged
    completion (complete_task returned, so its commit is durable)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.executions = []  # (seq, task, exec_id)
        self.acks = []  # (seq, task, exec_id)
        self.reconnects = 0
        self.errors = []  # errors other than a lost connection

    def _add(self, kind, task, exec_id):
        with self.lock:
            self.seq += 1
            kind.append((self.seq, task, exec_id))

    def executed(self, task, exec_id):
        self._add(self.executions, task, exec_id)

    def acked(self, task, exec_id):
        self._add(self.acks, task, exec_id)


def worker(log, stop, index):
    wid = str(uuid.uuid4())
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect()
                conn.execute(
                    "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) "
                    "VALUES (%s, 'mix', 'crash-worker') ON CONFLICT DO NOTHING",
                    (wid,),
                )
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT msg_id FROM pgmq.read_with_poll('mix', %s::int, 4, 1, 50)", (TIMEOUT + 2,)
                ).fetchall()
            ]
            if not ids:
                continue
            tasks = conn.execute(
                "SELECT run_id, step_slug, task_index FROM pgflow.start_tasks('mix', %s::bigint[], %s::uuid)",
                (ids, wid),
            ).fetchall()
            for run_id, step, index_ in tasks:
                task = (str(run_id), step, index_)
                exec_id = str(uuid.uuid4())
                log.executed(task, exec_id)
                conn.execute(
                    "SELECT pgflow.complete_task(%s, %s, %s, %s::jsonb)",
                    (run_id, step, index_, '{"exec": "%s"}' % exec_id),
                )
                log.acked(task, exec_id)
        except psycopg.Error as e:
            # The server went away (or the statement was cut short): what was not acknowledged
            # may run again. Any other error is a failure.
            with log.lock:
                log.reconnects += 1
                if not isinstance(e, psycopg.OperationalError):
                    log.errors.append(f"{type(e).__name__}: {e}")
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.1)
    if conn is not None:
        conn.close()


def starter(log, stop, started):
    """Starts the runs in batches of 50 with idempotency keys; a batch cut short by the crash is
    started again and makes no second run."""
    batch = 0
    while batch * 50 < RUNS and not stop.is_set():
        try:
            with connect() as conn:
                conn.execute(
                    "SELECT pgflow.start_run('mix', jsonb_build_object('k', i), idempotency_key => 'k' || i) "
                    "FROM generate_series(%s::int, %s::int) i",
                    (batch * 50 + 1, min(RUNS, batch * 50 + 50)),
                )
            batch += 1
            started[0] = batch * 50
            time.sleep(0.05)
        except psycopg.Error as e:
            if not isinstance(e, psycopg.OperationalError):
                with log.lock:
                    log.errors.append(f"starter: {type(e).__name__}: {e}")
                return
            time.sleep(0.2)


def server_pid():
    with open(os.path.join(PGDATA, "postmaster.pid")) as f:
        return int(f.readline())


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def crash_and_restart():
    pm = server_pid()
    kids = children(pm)
    os.kill(pm, signal.SIGKILL)
    # The backends notice the postmaster's death and exit; what is left after 5 s is killed
    # too, as a crash of the machine would.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.1)
    for k in kids:
        if alive(k):
            os.kill(k, signal.SIGKILL)
    time.sleep(0.5)
    subprocess.run(["pg_ctlcluster", "15", CLUSTER, "start"], check=True)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def setup():
    with connect() as conn:
        conn.execute("DROP TABLE IF EXISTS effects")
        conn.execute("CREATE TABLE effects (k text NOT NULL, at timestamptz DEFAULT clock_timestamp())")
        conn.execute(f"SELECT pgflow.create_flow('mix', max_attempts => 20, base_delay => 0, timeout => {TIMEOUT})")
        conn.execute("SELECT pgflow.add_step('mix', 'fetch')")
        conn.execute("SELECT pgflow.add_step('mix', 'store', ARRAY['fetch'])")
        conn.execute("SELECT pgflow.add_step('mix', 'notify', ARRAY['store'])")
        conn.execute(
            "SELECT pgflow.set_sql_handler('mix', 'store', "
            "$$INSERT INTO effects (k) VALUES ($2->>'k') RETURNING k$$)"
        )


def crash_test():
    log = Log()
    stop = threading.Event()
    started = [0]
    threads = [threading.Thread(target=worker, args=(log, stop, i)) for i in range(WORKERS)]
    threads.append(threading.Thread(target=starter, args=(log, stop, started)))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # Crash once a quarter of the external tasks is acknowledged.
    while len(log.acks) < RUNS // 2 and time.monotonic() - t0 < 60 and not log.errors:
        time.sleep(0.01)
    acks_before = len(log.acks)
    done_before = query("SELECT count(*) FROM pgflow.runs WHERE status = 'completed'")[0][0]
    crash_and_restart()
    reconnects_before = log.reconnects
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            done = query("SELECT count(*) FROM pgflow.runs WHERE status = 'completed'")[0][0]
        except psycopg.Error:
            done = 0
        if done == RUNS and started[0] >= RUNS or log.errors:
            break
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    print(f"# {RUNS} runs in {elapsed:.1f} s; crash after {acks_before} acknowledged completions "
          f"({done_before} runs completed); {len(log.executions)} executions, "
          f"{len(log.acks)} acknowledged; {log.reconnects} reconnects", flush=True)

    check("no error but lost connections", not log.errors, "\n".join(log.errors[:10]))
    check("the crash came in the middle of the work",
          0 < done_before < RUNS and 0 < acks_before < 2 * RUNS, f"{done_before} runs, {acks_before} acks")
    check("the workers lost their connections and reconnected", reconnects_before >= WORKERS,
          f"{reconnects_before} reconnects")
    rows = query("SELECT status, count(*) FROM pgflow.runs GROUP BY 1 ORDER BY 1")
    check(f"all {RUNS} runs completed after the restart", rows == [("completed", RUNS)], rows)
    rows = query("SELECT count(*), count(DISTINCT input->>'k') FROM pgflow.runs")
    check("one run per key: the batches retried after the crash made no second run", rows == [(RUNS, RUNS)], rows)

    # Every acknowledged completion is there, with the output of the acknowledged execution.
    outputs = {
        (str(r), s, i): o["exec"]
        for r, s, i, o in query(
            "SELECT run_id, step_slug, task_index, output FROM pgflow.step_tasks "
            "WHERE step_slug IN ('fetch', 'notify') AND status = 'completed'"
        )
    }
    lost = [(t, e) for _, t, e in log.acks if outputs.get(t) != e]
    check("no acknowledged completion is lost (each task keeps the acknowledged execution's output)",
          not lost and len(outputs) == 2 * RUNS, f"{len(lost)} lost, {len(outputs)} completed: {lost[:5]}")

    # No task runs again once its completion was acknowledged.
    acked_at = {t: seq for seq, t, _ in log.acks}
    again = [(t, e) for seq, t, e in log.executions if t in acked_at and seq > acked_at[t]]
    check("no task runs again after its completion was acknowledged", not again, again[:5])
    counts = {}
    for _, t, _ in log.executions:
        counts[t] = counts.get(t, 0) + 1
    twice = sum(1 for c in counts.values() if c > 1)
    print(f"# external tasks executed more than once (at least once: their completion was not "
          f"acknowledged before the crash): {twice}", flush=True)
    check("every external task was executed at least once", len(counts) == 2 * RUNS, len(counts))

    rows = query("SELECT count(*), count(DISTINCT k) FROM effects")
    check("each SQL step's effect happened exactly once", rows == [(RUNS, RUNS)], rows)
    rows = query("SELECT invariant, detail FROM pgflow.check_invariants()")
    check("the invariants hold (pgflow.check_invariants)", not rows, rows)


def killed_backend_test():
    """A worker's backend is SIGKILLed while the worker holds a started task."""
    run = query("SELECT run_id FROM pgflow.start_run('mix', '{\"k\": \"killed\"}')")[0][0]
    conn = connect()
    wid = str(uuid.uuid4())
    conn.execute("INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (%s, 'mix', 'w')", (wid,))
    ids = []
    deadline = time.monotonic() + 10
    while not ids and time.monotonic() < deadline:
        ids = [r[0] for r in conn.execute("SELECT msg_id FROM pgmq.read('mix', %s::int, 1)", (TIMEOUT + 2,)).fetchall()]
    conn.execute("SELECT pgflow.start_tasks('mix', %s, %s)", (ids, wid))
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    conn.close()
    # The server restarts all backends; the task stays started until its timeout, then it is
    # queued again and another worker starts it.
    restarted = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and restarted is None:
        try:
            with connect() as c:
                got = c.execute(
                    "SELECT msg_id FROM pgmq.read_with_poll('mix', %s::int, 1, 1, 50)", (TIMEOUT + 2,)
                ).fetchall()
                if got:
                    tasks = c.execute(
                        "SELECT run_id, step_slug FROM pgflow.start_tasks('mix', %s, %s)",
                        ([g[0] for g in got], wid),
                    ).fetchall()
                    if tasks and str(tasks[0][0]) == str(run):
                        restarted = time.monotonic() - killed
                        c.execute("SELECT pgflow.complete_task(%s, 'fetch', 0, '{}')", (run,))
        except psycopg.Error:
            time.sleep(0.2)
    # The worker requeues it once its timeout has passed (pgflow.timeout_grace is 0 here), within
    # a round of the worker (200 ms) and the server's restart.
    check(f"a task whose worker's backend was SIGKILLed runs again once its step's timeout ({TIMEOUT} s) has passed: "
          f"after {restarted if restarted is None else round(restarted, 2)} s",
          restarted is not None and restarted <= TIMEOUT + 1, restarted)


def disk_full_test():
    """A flow whose queue lives in a 1 MB tablespace: starts and completions that run out of
    space fail with 53100 and change nothing; once the queue moves elsewhere, every run goes on."""
    space = os.environ["CRASH_TINY_SPACE"]
    with connect() as conn:
        conn.execute(f"CREATE TABLESPACE tiny LOCATION '{space}'")
        conn.execute("SET default_tablespace = tiny")
        conn.execute("SELECT pgflow.create_flow('full', max_attempts => 1)")
        conn.execute("SELECT pgflow.add_step('full', 'a')")
        conn.execute("SELECT pgflow.add_step('full', 'b', ARRAY['a'])")
        conn.execute("SELECT pgflow.add_step('full', 'm', step_type => 'map')")
    started, codes = 0, {}
    with connect() as conn:
        for i in range(400):
            try:
                # 20 map tasks and their messages per run, each with a 2 kB payload.
                conn.execute(
                    "SELECT pgflow.start_flow('full', (SELECT jsonb_agg(repeat(md5(g::text), 64)) "
                    "FROM generate_series(1, 20) g))")
                started += 1
            except psycopg.Error as e:
                codes[e.sqlstate] = codes.get(e.sqlstate, 0) + 1
            if sum(codes.values()) >= 20:
                break
    check(f"starts fail with 53100 (disk full) once the tablespace is full: {started} started, errors {codes}",
          started > 0 and set(codes) == {"53100"}, codes)
    rows = query("SELECT count(*) FROM pgflow.runs WHERE flow_slug = 'full'")[0][0]
    check("each start either made its run or nothing", rows == started, rows)
    rows = query("SELECT invariant, detail FROM pgflow.check_invariants('full')")
    check("the invariants hold after the failed starts", not rows, rows)

    # Completing a's tasks archives their messages (into the full tablespace) and queues b's.
    wid = str(uuid.uuid4())
    done, codes = 0, {}
    with connect() as conn:
        conn.execute("INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (%s, 'full', 'w')", (wid,))
        ids = [r[0] for r in conn.execute(
            "SELECT message_id FROM pgflow.step_tasks WHERE flow_slug = 'full' AND step_slug = 'a'").fetchall()]
        conn.execute("SELECT count(*) FROM pgflow.start_tasks('full', %s::bigint[], %s::uuid)", (ids, wid))
        for (run_id,) in conn.execute("SELECT run_id FROM pgflow.runs WHERE flow_slug = 'full'").fetchall():
            try:
                conn.execute("SELECT pgflow.complete_task(%s, 'a', 0, to_jsonb(repeat('x', 3000)))", (run_id,))
                done += 1
            except psycopg.Error as e:
                codes[e.sqlstate] = codes.get(e.sqlstate, 0) + 1
    rows = query("SELECT invariant, detail FROM pgflow.check_invariants('full')")
    check(f"completions on a full disk commit whole or not at all ({done} completed, errors {codes}): "
          f"the invariants hold", not rows and set(codes) <= {"53100"}, rows)

    # Room again: the queue and its archive move to the default tablespace; everything goes on.
    with connect() as conn:
        conn.execute("ALTER TABLE pgmq.q_full SET TABLESPACE pg_default")
        conn.execute("ALTER TABLE pgmq.a_full SET TABLESPACE pg_default")
        conn.execute("ALTER INDEX ALL IN TABLESPACE tiny SET TABLESPACE pg_default")
        # The a tasks whose completion failed are still started: their worker completes them now.
        conn.execute("SELECT count(*) FROM pgflow.step_tasks t, "
                     "LATERAL pgflow.complete_task(t.run_id, t.step_slug, t.task_index, '1') "
                     "WHERE t.flow_slug = 'full' AND t.status = 'started'")
        for _ in range(200):
            ids = [r[0] for r in conn.execute("SELECT msg_id FROM pgmq.read('full', 30, 100)").fetchall()]
            if not ids:
                break
            for run_id, step, index_ in conn.execute(
                    "SELECT run_id, step_slug, task_index FROM pgflow.start_tasks('full', %s::bigint[], %s::uuid)",
                    (ids, wid)).fetchall():
                conn.execute("SELECT pgflow.complete_task(%s, %s, %s, '1')", (run_id, step, index_))
    rows = query("SELECT status, count(*) FROM pgflow.runs WHERE flow_slug = 'full' GROUP BY 1")
    check("with room again, every run of the full flow completes", rows == [("completed", started)], rows)
    rows = query("SELECT invariant, detail FROM pgflow.check_invariants('full')")
    check("and the invariants hold", not rows, rows)


def interrupted_calls_test():
    """statement_timeout cuts calls short at random points (a big map's start, its completions,
    cancel): each call is all or nothing, so the invariants hold after every one."""
    rng = random.Random(SEED)
    with connect() as conn:
        conn.execute("SELECT pgflow.create_flow('cut', max_attempts => 1)")
        conn.execute("SELECT pgflow.add_step('cut', 'm', step_type => 'map')")
        conn.execute("SELECT pgflow.add_step('cut', 'z', ARRAY['m'])")
        conn.execute("SET work_mem = '64kB'")
        wid = str(uuid.uuid4())
        conn.execute("INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (%s, 'cut', 'w')", (wid,))
        cut, ok, broken = 0, 0, []
        for i in range(60):
            ms = rng.randint(1, 40)
            conn.execute(f"SET statement_timeout = {ms}")
            try:
                op = rng.choice(["start", "start", "complete", "complete", "cancel"])
                if op == "start":
                    conn.execute("SELECT pgflow.start_flow('cut', (SELECT jsonb_agg(g) FROM generate_series(1, 3000) g))")
                elif op == "complete":
                    conn.execute(
                        "SELECT count(*) FROM pgflow.start_tasks('cut', ARRAY(SELECT msg_id FROM pgmq.read('cut', 30, 500)), "
                        "%s::uuid) t, LATERAL pgflow.complete_task(t.run_id, t.step_slug, t.task_index, '1')",
                        (wid,))
                else:
                    conn.execute("SELECT pgflow.cancel_run(run_id) FROM pgflow.runs "
                                 "WHERE flow_slug = 'cut' AND status = 'started' LIMIT 1")
                ok += 1
            except psycopg.errors.QueryCanceled:
                cut += 1
            conn.execute("SET statement_timeout = 0")
            rows = conn.execute("SELECT invariant, detail FROM pgflow.check_invariants('cut')").fetchall()
            if rows:
                broken.append((i, op, ms, rows[:3]))
    print(f"# interrupted calls: {cut} cut short by statement_timeout, {ok} finished", flush=True)
    check("calls cut short at random points leave no half-done state (invariants after each of 60)",
          cut > 0 and not broken, broken[:3])


def hostile_search_path_test():
    """The database's owner sets a search_path with look-alike operators ahead of pg_catalog; the
    worker and the executors (restarted to pick it up) run SQL steps and a schedule, and call
    none of them."""
    with connect() as conn:
        conn.execute("CREATE SCHEMA evil")
        conn.execute("CREATE TABLE evil.calls (backend text, query text)")
        conn.execute("GRANT USAGE ON SCHEMA evil TO PUBLIC")
        conn.execute("GRANT INSERT ON evil.calls TO PUBLIC")
        conn.execute("""
            DO $do$
            DECLARE
                t text;
                op text;
                n int := 0;
            BEGIN
                FOREACH t IN ARRAY ARRAY['uuid', 'text', 'integer', 'bigint', 'timestamptz', 'boolean'] LOOP
                    FOREACH op IN ARRAY ARRAY['=', '<>', '<', '<=', '>', '>='] LOOP
                        n := n + 1;
                        EXECUTE format($f$
                            CREATE FUNCTION evil.f%s(a %s, b %s) RETURNS boolean LANGUAGE plpgsql AS $b$
                            BEGIN
                                INSERT INTO evil.calls SELECT backend_type, pg_catalog.current_query()
                                FROM pg_catalog.pg_stat_activity WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
                                RETURN a OPERATOR(pg_catalog.%s) b;
                            END $b$ $f$, n, t, t, op);
                        EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.f%s)',
                                       op, t, t, n);
                    END LOOP;
                END LOOP;
            END $do$""")
        conn.execute("ALTER DATABASE pgflow_crash_test SET search_path = evil, pg_catalog, public")
    subprocess.run(["pg_ctlcluster", "15", CLUSTER, "restart"], check=True)
    time.sleep(1)
    with connect() as conn:
        sane = conn.execute("SELECT 1::integer = 1::integer").fetchone()[0]
        hit = conn.execute("SELECT count(*) FROM evil.calls").fetchone()[0]
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute("SELECT pgflow.create_flow('hp')")
        conn.execute("SELECT pgflow.add_step('hp', 'a')")
        conn.execute("SELECT pgflow.add_step('hp', 'b', ARRAY['a'])")
        conn.execute("SELECT pgflow.set_sql_handler('hp', 'a', 'SELECT jsonb_build_object(''n'', 1)')")
        conn.execute("SELECT pgflow.set_sql_handler('hp', 'b', 'SELECT 2')")
        conn.execute("SELECT pgflow.start_flow('hp', '{}') FROM generate_series(1, 20)")
        conn.execute("SELECT pgflow.schedule_flow('hp', '1 second')")
        deadline = time.monotonic() + 30
        done = 0
        while time.monotonic() < deadline:
            done = conn.execute("SELECT count(*) FROM pgflow.runs WHERE flow_slug = 'hp' AND status = 'completed'").fetchone()[0]
            if done >= 22:
                break
            time.sleep(0.3)
        calls = conn.execute("SELECT backend, left(query, 120), count(*) FROM evil.calls "
                             "WHERE backend LIKE 'pgflow_core%' GROUP BY 1, 2").fetchall()
        conn.execute("ALTER DATABASE pgflow_crash_test RESET search_path")
    check("a session of the database gets the hostile search_path (its own = is a look-alike)",
          sane is True and hit >= 1, hit)
    check(f"under it, the executors and the worker complete SQL steps and fire a schedule ({done} runs)",
          done >= 22, done)
    check("and none of pgflow_core's background processes called a look-alike", not calls, calls)


def server_log_test():
    """Our background processes logged no failure, and nothing panicked (the crash itself and the
    backends it took down log as expected)."""
    with open(os.environ["CRASH_LOG"], errors="replace") as f:
        bad = [line.rstrip() for line in f if "PANIC" in line or ("pgflow_core" in line and "WARNING" in line)]
    check("the server log has no PANIC and no WARNING of pgflow_core's workers or executors", not bad, "\n".join(bad[:10]))


def main():
    print(f"# seed {SEED}", flush=True)
    random.seed(SEED)
    setup()
    crash_test()
    killed_backend_test()
    disk_full_test()
    interrupted_calls_test()
    hostile_search_path_test()
    server_log_test()
    print(f"1..{n}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
