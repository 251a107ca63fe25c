"""The README's examples run: its SQL makes a flow and a run, its worker works the run."""

import os
import re
import signal
import subprocess
import sys
import time

import psycopg

from test_worker import DSN, sql

HERE = os.path.dirname(__file__)
README = open(os.path.join(HERE, "..", "README.md")).read()


def block(language):
    blocks = re.findall(r"```" + language + r"\n(.*?)```", README, re.S)
    assert len(blocks) >= 1, f"the README has a {language} block"
    return blocks[0]


def test_the_readme_example_works_its_run():
    sql("SELECT pgflow.delete_flow_and_data('greet_user') WHERE EXISTS "
        "(SELECT 1 FROM pgflow.flows WHERE flow_slug = 'greet_user')")
    with psycopg.connect(DSN, autocommit=True) as conn:
        for statement in filter(str.strip, block("sql").split(";\n")):
            rows = conn.execute(statement).fetchall()
    run = rows[0][0]
    env = dict(os.environ, DATABASE_URL=DSN, PYTHONPATH=os.path.join(HERE, ".."))
    proc = subprocess.Popen([sys.executable, "-c", block("python")], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, output = sql("SELECT status, output FROM pgflow.runs WHERE run_id = %s", (run,))[0]
            if status != "started":
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, "the worker stops on SIGTERM"
    finally:
        proc.kill()
    assert (status, output) == ("completed", {"greeting": "Hello, Ada (ADA)!"})
    assert "Hello, Ada (ADA)!" in README, "the README shows that output"
