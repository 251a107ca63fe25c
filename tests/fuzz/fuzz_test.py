"""Hostile input over the whole SQL API: every function of schemas pgflow and pgmq (read from the
catalog, so a new function is fuzzed without a change here) called with generated arguments.

Arguments come from pools of plausible values (the flows, steps, runs, messages and schedules that
exist) and of hostile ones: NULL, Unicode and look-alike slugs, names that collide after
lower-casing or truncation, very long strings, deep and huge JSON, negative and huge numbers,
arrays with NULLs and odd subscripts, unknown ids. Between calls, a worker moves runs on (read,
start, complete, fail), so calls land in every state of a run.

After every case: the call succeeded or failed with a proper SQLSTATE (never class XX, internal
error), the server is up, and pgflow.check_invariants() finds nothing. At the end, the server log
has no PANIC and no backend that died of a signal.

Environment: FUZZ_DSN, FUZZ_LOG (the server's log file), FUZZ_CASES (10000), FUZZ_SEED (printed
first; set it to replay a run). Prints TAP lines."""

import os
import random
import re
import sys
import time
import uuid

import psycopg

DSN = os.environ["FUZZ_DSN"]
CASES = int(os.environ.get("FUZZ_CASES", "10000"))
SEED = int(os.environ.get("FUZZ_SEED", str(random.randrange(1 << 30))))
rng = random.Random(SEED)

# Functions not called: what waits on purpose or reaches outside the database.
SKIP = {
    ("pgflow", "ensure_workers"),  # HTTP requests through pg_net
    ("pgflow", "set_program_handler"),  # would make run_local_tasks start programs
}
# Arguments that make a call wait: kept short.
SHORT = {"max_poll_seconds": [None, -1, 0, 1], "poll_interval_ms": [None, -5, 0, 10, 250]}

# Queue names are at most 47 characters and lower-cased: 'Fz' and 'FZ' collide with 'fz'.
FLOWS = ["fz", "fz_map", "Fz", "FZ", "fz_" + "x" * 44, "fz_" + "x" * 45, "fz_" + "x" * 60]
STEPS = ["a", "b", "m", "z", "A", "run", "x" * 128, "x" * 129]

HOSTILE_TEXT = [
    None, "", " ", "a b", "Ω", "fz\u00e9", "FZ", "fZ", "ﬀ", "İstanbul", "q_fz", "a_fz", "pgmq", "pgflow",
    "'; DROP TABLE pgflow.runs; --", '"', "\\", "%s", "%", "_", "*", "#", "a.b", "a-b", "1abc",
    "x" * 47, "x" * 48, "x" * 63, "x" * 64, "x" * 10_000, "é" * 40, "😀" * 20, "\u202e", "\t\n",
    "SELECT 1", "SELECT pg_sleep(0)", "not sql", "* * * * *", "1 second", "0 seconds", "-1 hours",
    "61 * * * *", "*/0 * * * *", "UTC", "Europe/Berlin", "Mars/Olympus", "skip", "fail", "skip-cascade",
    "single", "map", "bogus",
]
BIG_INTS = [None, 0, 1, -1, 2, 3, 16, 17, 100, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]


def random_text():
    """Up to 80 characters from ASCII, Latin, Greek, CJK, combining marks, emoji and controls."""
    ranges = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x4E00, 0x4E80), (0x300, 0x36F),
              (0x1F600, 0x1F64F), (0x1, 0x1F), (0x200B, 0x202E)]
    out = []
    for _ in range(rng.randint(0, 80)):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def deep_json(depth):
    return "[" * depth + "]" * depth


def json_values():
    return [
        None, "null", "{}", "[]", "1", "-1", '"s"', "true", '{"a": 1}', "[1, 2, 3]", "[null]",
        '{"a": {"b": [1, {"c": null}]}}', deep_json(rng.choice([10, 200, 2000, 20000])),
        "[" + ",".join(str(i) for i in range(rng.choice([17, 500, 2000]))) + "]",
        '{"x": "' + "y" * rng.choice([10, 100_000, 1_000_000]) + '"}',
        '{"\\u0000": 1}', '"\\ud83d\\ude00"', "1e308", "-0", '{"a": 1, "a": 2}',
    ]


class State:
    def __init__(self, conn):
        self.conn = conn

    def sample(self, sql, default):
        try:
            rows = [r[0] for r in self.conn.execute(sql).fetchall()]
        except psycopg.Error:
            rows = []
        return rows or default

    def refresh(self):
        # Ordered here, sampled by the seeded generator: a seed replays the same calls.
        runs = self.sample("SELECT run_id::text FROM pgflow.runs ORDER BY started_at, run_id", [])
        msgs = self.sample(
            "SELECT message_id FROM pgflow.step_tasks WHERE message_id IS NOT NULL ORDER BY run_id, step_slug, task_index", [])
        self.runs = rng.sample(runs, min(len(runs), 20))
        self.msgs = rng.sample(msgs, min(len(msgs), 20))
        self.schedules = self.sample("SELECT schedule_id FROM pgflow._schedules", [])
        self.flows = self.sample("SELECT flow_slug FROM pgflow.flows", []) + FLOWS


# Queues that belong to no flow. Writes through pgmq into a flow's queue (send, delete, archive,
# drop), or into a queue that a flow of the same name adopts later, are outside the engine's
# promises: pgmq's functions get these names, or hostile ones that can never be a flow's slug.
PLAIN = ["plain", "Plain", "plain_u", "plain_" + "x" * 41, "missing"]
SLUG = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def value(state, schema, name, typ):
    """One argument: plausible for its name most of the time, hostile otherwise."""
    hostile = rng.random() < 0.3
    if name in SHORT:
        return rng.choice(SHORT[name])
    if schema == "pgmq" and typ == "text" and name in ("queue_name", "table_name", "routing_key", "pattern"):
        if hostile:
            name = random_text() if rng.random() < 0.3 else rng.choice(HOSTILE_TEXT)
            return name if name is None or not SLUG.match(name) else rng.choice(PLAIN)
        return rng.choice(PLAIN) if name != "pattern" else rng.choice(["plain.*", "#", "*.x"])
    if typ in ("text", "character varying"):
        if hostile:
            return random_text() if rng.random() < 0.3 else rng.choice(HOSTILE_TEXT)
        if name in ("flow_slug", "queue_name", "p_flow_slug", "table_name"):
            return rng.choice(state.flows)
        if name in ("step_slug", "from_step"):
            return rng.choice(STEPS)
        if name in ("schedule",):
            return rng.choice(["1 second", "5 minutes", "*/5 * * * *", "0 0 * * *", "* * * * * *", "0 30 2 * * *"])
        if name == "time_zone":
            return rng.choice(["UTC", "Europe/Berlin", "America/New_York"])
        if name in ("when_unmet", "when_exhausted"):
            return rng.choice(["skip", "fail", "skip-cascade"])
        if name == "step_type":
            return rng.choice(["single", "map"])
        if name in ("statement",):
            return rng.choice(["SELECT 1", "SELECT $1", "SELECT $2", "SELECT jsonb_build_object('a', $1)", "SELECT 1/0"])
        if name == "pool_name":
            return rng.choice(["p1", "p2", "P1"])
        return rng.choice(HOSTILE_TEXT[1:])
    if typ in ("integer", "bigint", "smallint", "numeric"):
        if name in ("msg_id", "schedule_id") and not hostile:
            pool = state.msgs if name == "msg_id" else state.schedules
            return rng.choice(pool) if pool else 1
        if not hostile:
            return rng.choice([0, 1, 2, 3, 5, 10, 30])
        return rng.choice(BIG_INTS)
    if typ == "boolean":
        return rng.choice([None, True, False])
    if typ == "uuid":
        if not hostile and state.runs:
            return rng.choice(state.runs)
        return rng.choice([None, str(uuid.UUID(int=rng.getrandbits(128), version=4)), "00000000-0000-0000-0000-000000000000"])
    if typ == "jsonb":
        if not hostile:
            return rng.choice(['{}', '{"n": 1}', "[1, 2, 3]", '["a", "b"]', '{"x": [1, 2]}'])
        return rng.choice(json_values())
    if typ in ("bigint[]", "integer[]"):
        if not hostile and state.msgs:
            return "{" + ",".join(str(m) for m in rng.sample(state.msgs, min(len(state.msgs), rng.randint(1, 5)))) + "}"
        return rng.choice([None, "{}", "{NULL}", "{1,NULL,2}", "[5:7]={1,2,3}", "[-3:-1]={1,2,3}",
                           "{{1,2},{3,4}}", "{-1,0," + str(2**63 - 1) + "}"])
    if typ in ("text[]", "jsonb[]"):
        if typ == "jsonb[]" and not hostile:
            return '{"{\\"a\\": 1}","[]"}'
        if not hostile:
            return "{a}" if name == "deps_slugs" else "{x,y}"
        return rng.choice([None, "{}", "{NULL}", "{a,NULL}", "[2:3]={a,b}", "{{a,b},{c,d}}", "{a,a}",
                           "{" + ",".join(["s"] * 1000) + "}"])
    if typ == "interval":
        return rng.choice([None, "1 second", "0", "-1 day", "100 years", "1 month"])
    if typ == "timestamp with time zone":
        return rng.choice([None, "now", "infinity", "-infinity", "2000-01-01", "294276-12-31"])
    return None


def work(conn):
    """A worker's round on a random flow: read, start, then complete or fail each task."""
    flow = rng.choice(FLOWS[:2])
    ids = [r[0] for r in conn.execute("SELECT msg_id FROM pgmq.read(%s, 0, 5)", (flow,)).fetchall()]
    tasks = conn.execute(
        "SELECT run_id, step_slug, task_index FROM pgflow.start_tasks(%s, %s::bigint[], %s::uuid)",
        (flow, ids, WORKER)).fetchall()
    for run_id, step, index in tasks:
        if rng.random() < 0.8:
            out = rng.choice(["[1, 2, 3]", '"x"', "{}", "[]", "null"])
            conn.execute("SELECT pgflow.complete_task(%s, %s, %s, %s::jsonb)", (run_id, step, index, out))
        else:
            conn.execute("SELECT pgflow.fail_task(%s, %s, %s, 'fuzz')", (run_id, step, index))


WORKER = "00000000-0000-0000-0000-0000000000f2"


def setup(conn):
    conn.execute("INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (%s, 'fz', 'fuzz') "
                 "ON CONFLICT DO NOTHING", (WORKER,))
    conn.execute("SELECT pgmq.create('plain')")
    conn.execute("SELECT pgmq.create_unlogged('plain_u')")
    conn.execute("SELECT pgflow.create_flow('fz', max_attempts => 2, base_delay => 0)")
    conn.execute("SELECT pgflow.add_step('fz', 'a')")
    conn.execute("SELECT pgflow.add_step('fz', 'b', ARRAY['a'], required_input_pattern => '{\"n\": 1}')")
    conn.execute("SELECT pgflow.add_step('fz', 'z', ARRAY['a', 'b'])")
    conn.execute("SELECT pgflow.create_flow('fz_map', max_attempts => 1)")
    conn.execute("SELECT pgflow.add_step('fz_map', 'm', step_type => 'map')")
    conn.execute("SELECT pgflow.add_step('fz_map', 'z', ARRAY['m'], when_exhausted => 'skip')")


def main():
    print(f"# seed {SEED} (FUZZ_SEED={SEED} replays it), {CASES} cases", flush=True)
    conn = psycopg.connect(DSN, autocommit=True)
    # Results as text: Python's datetime has no infinity and no year beyond 9999, and its json
    # module no nesting 20,000 deep.
    for t in ("timestamptz", "timestamp", "date", "interval", "json", "jsonb"):
        conn.adapters.register_loader(t, psycopg.types.string.TextLoader)
    conn.execute("SET statement_timeout = '5s'")
    conn.execute("SET client_min_messages = error")
    setup(conn)
    funcs = conn.execute(
        """SELECT n.nspname, p.proname, p.oid::regprocedure::text,
                  coalesce(p.proargnames[1:p.pronargs], '{}'),
                  ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname IN ('pgflow', 'pgmq') AND p.proname NOT LIKE '\\_%' AND p.prokind = 'f'
            ORDER BY 1, 2, 3""").fetchall()
    funcs = [f for f in funcs if (f[0], f[1]) not in SKIP]
    state = State(conn)
    state.refresh()
    stats = {"ok": 0, "errors": {}}
    bad = []
    n_tests = 0
    t0 = time.monotonic()
    for case in range(CASES):
        if case % 50 == 0:
            state.refresh()
        if rng.random() < 0.15:
            label, call = "work", lambda: work(conn)
        else:
            schema, name, sig, argnames, argtypes = rng.choice(funcs)
            args = [value(state, schema, argnames[i] if i < len(argnames) else "", t) for i, t in enumerate(argtypes)]
            casts = ", ".join(f"%s::{t}" for t in argtypes)
            sql = f"SELECT * FROM {schema}.{name}({casts})"
            label = f"{schema}.{name}({', '.join(repr(a)[:60] for a in args)})"
            call = lambda sql=sql, args=args: conn.execute(sql, args).fetchall()
        try:
            call()
            stats["ok"] += 1
        except psycopg.Error as e:
            if conn.broken or conn.closed:
                bad.append(f"case {case}: the connection broke: {e} in {label}")
                break
            code = e.sqlstate or "?????"
            stats["errors"][code] = stats["errors"].get(code, 0) + 1
            if os.environ.get("FUZZ_VERBOSE"):
                print(f"# {code} {label[:150]}: {str(e).splitlines()[0][:150]}")
            if code.startswith("XX") or code == "?????" or not str(e).strip():
                bad.append(f"case {case}: {code} {str(e).splitlines()[0][:200]} in {label}")
        try:
            rows = conn.execute("SELECT invariant, run_id, step_slug, detail FROM pgflow.check_invariants()").fetchall()
        except psycopg.Error as e:
            rows = [("check_invariants failed", None, None, str(e))]
        if rows:
            bad.append(f"case {case}: after {label}: {rows[:3]}")
            break
    elapsed = time.monotonic() - t0
    done = case + 1
    top = sorted(stats["errors"].items(), key=lambda kv: -kv[1])[:12]
    print(f"# {done} cases in {elapsed:.0f} s: {stats['ok']} succeeded; SQLSTATEs {top}", flush=True)

    def check(description, ok, detail):
        nonlocal n_tests
        n_tests += 1
        print(f"{'ok' if ok else 'not ok'} {n_tests} - {description}", flush=True)
        if not ok:
            for line in detail[:20]:
                print(f"#   {line}", flush=True)
        return ok

    failed = not check(f"{CASES} generated calls ran", done == CASES, bad)
    failed |= not check("no call failed with an internal error (class XX) or without a message",
                        not [b for b in bad if " XX" in b or "?????" in b], bad)
    failed |= not check("the invariants held after every call", not [b for b in bad if "after" in b], bad)
    with open(os.environ["FUZZ_LOG"], errors="replace") as f:
        f.seek(int(os.environ.get("FUZZ_LOG_OFFSET", "0")))
        signals = [l.rstrip() for l in f if "PANIC" in l or "terminated by signal" in l or "panicked" in l]
    failed |= not check("the server log has no PANIC, no Rust panic and no backend killed by a signal",
                        not signals, signals)
    print(f"1..{n_tests}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
