"""A worker for pgflow_core flows, in Python on psycopg 3.

Register a handler per flow and step, then run the worker::

    from pgflow_worker import Worker

    worker = Worker("host=localhost dbname=app", max_concurrency=8)

    @worker.step("analyze_website", "website")
    def website(flow_input, ctx):
        return {"content": fetch(flow_input["url"])}

    @worker.step("analyze_website", "summary")
    def summary(deps, ctx):
        return summarize(deps["website"]["content"])

    worker.run()  # until SIGTERM or SIGINT

A handler gets the pgflow 0.12+ shapes: a root step the run's input, a dependent step an object
of its dependencies' outputs, a map step its element; `ctx.flow_input` is the run's input in
every case. What it returns is the task's output; what it raises fails the attempt (the engine
retries it while attempts remain).
"""

from __future__ import annotations

import inspect
import asyncio
import logging
import signal
import threading
import time
import uuid
import json
import queue
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import psycopg

__all__ = ["Worker", "Context"]
log = logging.getLogger("pgflow_worker")


@dataclass
class Context:
    """What a handler knows about its task besides its input."""

    flow_slug: str
    run_id: uuid.UUID
    step_slug: str
    task_index: int
    msg_id: int
    worker_id: uuid.UUID
    # Set when the worker is shutting down: long handlers may stop early (and raise).
    shutdown: threading.Event
    _flow_input: Any = None
    _load_flow_input: Optional[Callable[[], Any]] = field(default=None, repr=False)

    @property
    def flow_input(self) -> Any:
        """The run's input (read once with pgflow.run_input for steps that start_tasks gives none)."""
        if self._load_flow_input is not None:
            self._flow_input = self._load_flow_input()
            self._load_flow_input = None
        return self._flow_input


class _Connection:
    """One connection, used by one thread at a time. Every statement is its own transaction
    and nothing is prepared on the server, so a pooler in transaction mode may sit between."""

    def __init__(self, dsn: str, name: str):
        self.dsn = dsn
        self.name = name
        self.lock = threading.Lock()
        self.conn: Optional[psycopg.Connection] = None
        self.closed = False

    def execute(self, sql: str, params: tuple = ()) -> list:
        """Runs one statement. A lost connection fails the statement (it may have committed, so
        it is not run again); the next statement connects anew."""
        with self.lock:
            if self.closed:
                raise psycopg.OperationalError(f"{self.name}: the worker has stopped")
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None,
                                            application_name=self.name)
            cur = self.conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def cancel(self) -> None:
        conn = self.conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel()
            except psycopg.Error:
                pass

    def close(self) -> None:
        self.closed = True
        with self.lock:
            if self.conn is not None:
                self.conn.close()


class Worker:
    """Polls the queues of the flows it has handlers for, runs at most `max_concurrency` tasks
    at once, completes or fails each, and heartbeats into pgflow.workers."""

    def __init__(self, dsn: str, *, name: str = "python-worker", max_concurrency: int = 10,
                 visibility_timeout: int = 30, max_poll_seconds: int = 5, poll_interval_ms: int = 100,
                 heartbeat_seconds: float = 5.0, shutdown_timeout: float = 30.0):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.dsn = dsn
        self.name = name
        self.max_concurrency = max_concurrency
        self.visibility_timeout = visibility_timeout
        self.max_poll_seconds = max_poll_seconds
        self.poll_interval_ms = poll_interval_ms
        self.heartbeat_seconds = heartbeat_seconds
        self.shutdown_timeout = shutdown_timeout
        self.handlers: dict[str, dict[str, Callable]] = {}
        self.shutdown = threading.Event()
        self.worker_ids: dict[str, uuid.UUID] = {}
        self.completed = 0
        self.failed = 0
        self.released = 0
        self._slots = threading.BoundedSemaphore(max_concurrency)
        # Started tasks: (run_id, step_slug, task_index, flow) -> "running", "acking" or "released".
        self._in_flight: dict[tuple, str] = {}
        self._in_flight_lock = threading.Lock()
        self._tasks: queue.Queue = queue.Queue()
        self._acks = _Connection(dsn, f"{name} acks")
        self._pollers: dict[str, _Connection] = {}

    # -- registration -------------------------------------------------------------------------

    def handle(self, flow_slug: str, step_slug: str, handler: Callable) -> None:
        """Registers `handler(input, ctx)` for one step of one flow."""
        self.handlers.setdefault(flow_slug, {})[step_slug] = handler

    def step(self, flow_slug: str, step_slug: str) -> Callable[[Callable], Callable]:
        """Decorator form of handle()."""
        def register(fn: Callable) -> Callable:
            self.handle(flow_slug, step_slug, fn)
            return fn
        return register

    # -- running --------------------------------------------------------------------------------

    def run(self, install_signal_handlers: bool = True) -> None:
        """Works until stop() (or SIGTERM / SIGINT), then finishes the started tasks."""
        if not self.handlers:
            raise ValueError("no handlers registered")
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        for flow in self.handlers:
            self.worker_ids[flow] = uuid.uuid4()
            self._acks.execute(
                "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES (%s, %s, %s)",
                (self.worker_ids[flow], flow, self.name))
        # Daemon threads: a handler still running after shutdown_timeout does not keep the
        # process alive (its task was released).
        for i in range(self.max_concurrency):
            threading.Thread(target=self._work, name=f"pgflow-task-{i}", daemon=True).start()
        for flow in self.handlers:
            self._pollers[flow] = _Connection(self.dsn, f"{self.name} poll {flow}")
        threads = [threading.Thread(target=self._poll, args=(flow,), name=f"pgflow-poll-{flow}", daemon=True)
                   for flow in self.handlers]
        threads.append(threading.Thread(target=self._heartbeat, name="pgflow-heartbeat", daemon=True))
        for t in threads:
            t.start()
        log.info("worker %s: flows %s, at most %d tasks at once", self.name, sorted(self.handlers), self.max_concurrency)
        self.shutdown.wait()
        # Graceful stop: no new reads (a waiting read is cancelled; its messages stay unread),
        # the started tasks finish within shutdown_timeout.
        for conn in self._pollers.values():
            conn.cancel()
        for t in threads:
            t.join(timeout=self.max_poll_seconds + 5)
        deadline = time.monotonic() + self.shutdown_timeout
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._release_unfinished()
        for worker_id in self.worker_ids.values():
            self._acks.execute("SELECT pgflow.mark_worker_stopped(%s)", (worker_id,))
        for conn in self._pollers.values():
            conn.close()
        self._acks.close()
        log.info("worker %s stopped: %d completed, %d failed", self.name, self.completed, self.failed)

    def stop(self) -> None:
        self.shutdown.set()

    def in_flight(self) -> int:
        with self._in_flight_lock:
            return len(self._in_flight)

    def _release_unfinished(self) -> None:
        """Gives the tasks still running back to the queue (pgflow.release_task): another worker
        takes them at once, and their attempts do not count."""
        with self._in_flight_lock:
            unfinished = [key for key, state in self._in_flight.items() if state == "running"]
            for key in unfinished:
                self._in_flight[key] = "released"
        for key in unfinished:
            run_id, step, index, flow = key
            try:
                self._acks.execute("SELECT FROM pgflow.release_task(%s, %s, %s, %s)",
                                   (run_id, step, index, self.worker_ids[flow]))
            except psycopg.Error as e:
                # Not released: the task's result may still be acknowledged.
                with self._in_flight_lock:
                    if key in self._in_flight:
                        self._in_flight[key] = "running"
                log.warning("worker %s: releasing %s/%s/%s failed: %s", self.name, run_id, step, index, e)
        if unfinished:
            log.warning("worker %s: released %d tasks still running after %.0f s",
                        self.name, len(unfinished), self.shutdown_timeout)
        self.released = len(unfinished)

    # -- inside ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._tasks.get()
            try:
                self._run_task(*job)
            except BaseException as e:  # noqa: BLE001 - the thread must live on
                log.error("worker %s: task %s: %r", self.name, job[2][:3], e)

    def _poll(self, flow: str) -> None:
        conn = self._pollers[flow]
        worker_id = self.worker_ids[flow]
        # Each flow reads at most its share of the slots, so an idle queue cannot hold them all.
        share = max(1, -(-self.max_concurrency // len(self.handlers)))
        while not self.shutdown.is_set():
            # Read only as many messages as there are free slots; wait for one when none is.
            if not self._slots.acquire(timeout=0.5):
                continue
            free = 1
            while free < share and self._slots.acquire(blocking=False):
                free += 1
            tasks = []
            try:
                ids = [r[0] for r in conn.execute(
                    "SELECT msg_id FROM pgmq.read_with_poll(%s, %s, %s, %s, %s)",
                    (flow, self.visibility_timeout, free, self.max_poll_seconds, self.poll_interval_ms))]
                if ids and self.shutdown.is_set():
                    # Read while stopping: visible again at once for other workers.
                    conn.execute("SELECT pgmq.set_vt(%s, id, 0) FROM unnest(%s::bigint[]) id", (flow, ids))
                elif ids:
                    tasks = conn.execute(
                        "SELECT run_id, step_slug, task_index, input, msg_id, flow_input "
                        "FROM pgflow.start_tasks(%s, %s::bigint[], %s)", (flow, ids, worker_id))
            except psycopg.errors.QueryCanceled:
                pass
            except psycopg.Error as e:
                if not self.shutdown.is_set():
                    log.warning("worker %s: polling %s failed: %s", self.name, flow, e)
                    self.shutdown.wait(1.0)
            for row in tasks:
                with self._in_flight_lock:
                    self._in_flight[(row[0], row[1], row[2], flow)] = "running"
                self._tasks.put((flow, worker_id, row))
            for _ in range(free - len(tasks)):
                self._slots.release()

    def _run_task(self, flow: str, worker_id: uuid.UUID, row: tuple) -> None:
        run_id, step, index, task_input, msg_id, flow_input = row
        try:
            handler = self.handlers[flow].get(step)
            ctx = Context(flow, run_id, step, index, msg_id, worker_id, self.shutdown, flow_input,
                          None if flow_input is not None else lambda: self._flow_input(run_id))
            try:
                if handler is None:
                    raise LookupError(f'no handler for step "{step}" of flow "{flow}"')
                # pgflow 0.12+: a root single step gets the run's input (start_tasks gives {}).
                output = handler(flow_input if flow_input is not None else task_input, ctx)
                if inspect.isawaitable(output):
                    output = asyncio.run(_awaited(output))
                # An output JSON cannot encode fails the attempt like a handler's error.
                output_json = json.dumps(output)
            except Exception as e:  # noqa: BLE001 - any failure of the handler fails the attempt
                if self._acking((run_id, step, index, flow)):
                    message = f"{type(e).__name__}: {e}"
                    self._acks.execute("SELECT FROM pgflow.fail_task(%s, %s, %s, %s)", (run_id, step, index, message))
                    self.failed += 1
                return
            if self._acking((run_id, step, index, flow)):
                self._acks.execute("SELECT FROM pgflow.complete_task(%s, %s, %s, %s::jsonb)",
                                   (run_id, step, index, output_json))
                self.completed += 1
        except psycopg.Error as e:
            # The task stays started; the engine requeues it after its timeout.
            log.warning("worker %s: acknowledging %s/%s/%s failed: %s", self.name, run_id, step, index, e)
        finally:
            with self._in_flight_lock:
                self._in_flight.pop((run_id, step, index, flow), None)
            self._slots.release()

    def _acking(self, key: tuple) -> bool:
        """Claims the task's acknowledgement; False when shutdown gave the task back (its late
        result is dropped)."""
        with self._in_flight_lock:
            if self._in_flight.get(key) != "running":
                return False
            self._in_flight[key] = "acking"
            return True

    def _flow_input(self, run_id: uuid.UUID) -> Any:
        rows = self._acks.execute("SELECT pgflow.run_input(%s)", (run_id,))
        return rows[0][0] if rows else None

    def _heartbeat(self) -> None:
        conn = _Connection(self.dsn, f"{self.name} heartbeat")
        try:
            while not self.shutdown.wait(self.heartbeat_seconds):
                try:
                    conn.execute("UPDATE pgflow.workers SET last_heartbeat_at = now() WHERE worker_id = ANY(%s)",
                                 (list(self.worker_ids.values()),))
                except psycopg.Error as e:
                    log.warning("worker %s: heartbeat failed: %s", self.name, e)
        finally:
            conn.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable

