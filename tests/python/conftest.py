"""Fixtures for running the official Python pgmq client (PyPI `pgmq` 1.1.4, unchanged) against
the pgmq-compatible layer of pgflow_core.

The client is built with init_extension=False: our queues live in schema pgmq but there is no
extension named pgmq, so the client's `CREATE EXTENSION IF NOT EXISTS pgmq` must not run.

Environment (set by scripts/test.sh):
  PGFLOW_TEST_DB    database with `CREATE EXTENSION pgflow_core` (default pgflow_python_test)
  PGFLOW_TEST_PORT  server port (default 5439); host localhost, user postgres, trust auth
"""

import os
import re
import uuid
import warnings

import psycopg
import pytest
from psycopg.rows import dict_row

from pgmq import SyncPGMQueue

DB_NAME = os.environ.get("PGFLOW_TEST_DB", "pgflow_python_test")
DB_HOST = os.environ.get("PGFLOW_TEST_HOST", "localhost")
DB_PORT = os.environ.get("PGFLOW_TEST_PORT", "5439")
DB_USER = "postgres"
# Trust authentication ignores it, but the client insists on a non-empty password.
DB_PASSWORD = "postgres"
DSN = f"host={DB_HOST} port={DB_PORT} dbname={DB_NAME} user={DB_USER} password={DB_PASSWORD}"


def client_kwargs(**extra):
    """Connection arguments shared by the sync and async clients."""
    kwargs = dict(
        host=DB_HOST,
        port=DB_PORT,
        database=DB_NAME,
        username=DB_USER,
        password=DB_PASSWORD,
        init_extension=False,
    )
    kwargs.update(extra)
    return kwargs


@pytest.fixture(scope="session", autouse=True)
def _check_database():
    """Fail early and clearly if the database is not prepared as expected."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        exts = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        assert "pgflow_core" in exts, f"database {DB_NAME} lacks CREATE EXTENSION pgflow_core"
        assert "pgmq" not in exts, "a real pgmq extension is installed; these tests target pgflow_core"
        assert conn.execute("SELECT to_regclass('pgmq.meta')").fetchone()[0] is not None


@pytest.fixture(scope="session")
def pgmq_client():
    """The synchronous (psycopg) client, shared by all tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = SyncPGMQueue(**client_kwargs(pool_size=4))
    yield client
    client.close()


@pytest.fixture
def db():
    """A separate autocommit psycopg connection for inspecting tables directly (dict rows)."""
    with psycopg.connect(DSN, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _unique_name(request, prefix="py"):
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    stem = stem.removeprefix("test_")[:24]
    return f"{prefix}_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def queue_name(request):
    """A fresh, unused queue name (not created); dropped after the test if it was created."""
    name = _unique_name(request)
    yield name
    _drop_quietly(name)


@pytest.fixture
def make_queue(request, pgmq_client):
    """Factory: make_queue(unlogged=False, suffix='') creates a uniquely named queue.

    Every queue made is dropped after the test."""
    made = []

    def factory(unlogged=False, suffix=""):
        name = _unique_name(request) + suffix
        pgmq_client.create_queue(name, unlogged=unlogged)
        made.append(name)
        return name

    yield factory
    for name in made:
        _drop_quietly(name)


@pytest.fixture
def queue(make_queue):
    """A freshly created standard (logged) queue."""
    return make_queue()


def _drop_quietly(name):
    with psycopg.connect(DSN, autocommit=True) as conn:
        try:
            conn.execute("SELECT pgmq.drop_queue(%s::text)", (name,))
        except psycopg.Error:
            pass


def qtable(name):
    """Quoted queue table of a queue, as pgmq names it."""
    return f'pgmq."q_{name.lower()}"'


def atable(name):
    """Quoted archive table of a queue, as pgmq names it."""
    return f'pgmq."a_{name.lower()}"'
