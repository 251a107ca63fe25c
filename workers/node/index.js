// A worker for pgflow_core flows, for Node on node-postgres (`pg`). Types: index.d.ts.
//
//   import { Worker } from "pgflow-core-worker";
//   const worker = new Worker({ connectionString: process.env.DATABASE_URL }, { maxConcurrency: 8 });
//   worker.step("analyze_website", "website", async (flowInput, ctx) => ({ content: await fetchPage(flowInput.url) }));
//   worker.step("analyze_website", "summary", async (deps, ctx) => summarize(deps.website.content));
//   await worker.run();   // until SIGTERM or SIGINT
//
// Handlers get pgflow 0.12+'s shapes: a root step the run's input, a dependent step its
// dependencies' outputs, a map step its element; ctx.flowInput() the run's input in every case.
import pg from "pg";
import { randomUUID } from "node:crypto";

const DEFAULTS = {
  name: "node-worker",
  maxConcurrency: 10,
  visibilityTimeout: 30,
  maxPollSeconds: 5,
  pollIntervalMs: 100,
  heartbeatSeconds: 5,
  shutdownTimeout: 30,
};

export class Worker {
  /**
   * @param {pg.ClientConfig | string} connection node-postgres client settings or a URL
   * @param {Partial<typeof DEFAULTS>} options
   */
  constructor(connection, options = {}) {
    this.connection = typeof connection === "string" ? { connectionString: connection } : connection;
    this.options = { ...DEFAULTS, ...options };
    if (!(this.options.maxConcurrency >= 1)) throw new RangeError("maxConcurrency must be at least 1");
    this.handlers = new Map();      // flow -> Map(step -> handler)
    this.workerIds = new Map();     // flow -> uuid
    this.completed = 0;
    this.failed = 0;
    this.released = 0;
    this.stopping = false;
    this.inFlight = new Map();      // "run/step/index" -> { flow, state: "running" | "acking" | "released" }
    this.reserved = 0;              // slots asked for by reads in progress
    this.slotWaiters = [];
    this.clients = new Map();       // purpose -> pg.Client
  }

  /** Registers handler(input, ctx) for one step of one flow. */
  step(flowSlug, stepSlug, handler) {
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (!this.handlers.has(flowSlug)) this.handlers.set(flowSlug, new Map());
    this.handlers.get(flowSlug).set(stepSlug, handler);
    return this;
  }

  // Runs one statement on the connection for `purpose`, connecting (again) when there is none or
  // it was lost. A statement that fails is not run again: it may have committed.
  async #query(purpose, text, params) {
    let client = this.clients.get(purpose);
    if (!client) {
      if (this.closed) throw new Error("the worker has stopped");
      client = new pg.Client({ ...this.connection, application_name: `${this.options.name} ${purpose}` });
      client.on("error", (e) => {
        this.clients.delete(purpose);
        this.#log(`connection ${purpose} lost: ${e.message}`);
      });
      this.clients.set(purpose, client);
      try {
        await client.connect();
      } catch (e) {
        this.clients.delete(purpose);
        throw e;
      }
    }
    try {
      return await client.query(text, params);
    } catch (e) {
      // A broken connection is dropped; the next statement connects anew.
      if (!(e instanceof pg.DatabaseError)) {
        this.clients.delete(purpose);
        client.end().catch(() => {});
      }
      throw e;
    }
  }

  #log(message) {
    if (this.options.log !== false) console.warn(`pgflow worker ${this.options.name}: ${message}`);
  }

  /** Registers the worker and starts polling; resolves once it is running. */
  async start() {
    if (this.handlers.size === 0) throw new Error("no handlers registered");
    for (const flow of this.handlers.keys()) {
      const id = randomUUID();
      this.workerIds.set(flow, id);
      await this.#query("acks",
        "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ($1, $2, $3)",
        [id, flow, this.options.name]);
    }
    // The poll loops run until stop(); stop() waits for them.
    this.pollers = [...this.handlers.keys()].map((flow) => this.#poll(flow));
    this.heartbeat = setInterval(() => {
      this.#query("acks", "UPDATE pgflow.workers SET last_heartbeat_at = now() WHERE worker_id = ANY($1::uuid[])",
        [[...this.workerIds.values()]]).catch((e) => this.#log(`heartbeat failed: ${e.message}`));
    }, this.options.heartbeatSeconds * 1000);
  }

  /** start(), then stop() on SIGTERM or SIGINT; resolves when stopped. */
  async run() {
    await this.start();
    const onSignal = () => this.stop();
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    await new Promise((resolve) => { this.stopped = resolve; });
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await this.stopDone;
  }

  /**
   * Graceful stop: no new reads (messages of a read that returns now are made visible again),
   * started tasks get shutdownTimeout seconds to finish, the rest are released
   * (pgflow.release_task), the workers marked stopped.
   */
  async stop() {
    if (this.stopping) return this.stopDone;
    this.stopping = true;
    this.stopDone = (async () => {
      clearInterval(this.heartbeat);
      this.#wakeSlotWaiters();
      await Promise.all(this.pollers ?? []);
      const deadline = Date.now() + this.options.shutdownTimeout * 1000;
      while (this.inFlight.size > 0 && Date.now() < deadline) await sleep(20);
      for (const [key, task] of this.inFlight) {
        if (task.state !== "running") continue;
        task.state = "released";
        const [runId, step, index] = key.split("/");
        try {
          await this.#query("acks", "SELECT FROM pgflow.release_task($1, $2, $3, $4)",
            [runId, step, Number(index), this.workerIds.get(task.flow)]);
          this.released += 1;
        } catch (e) {
          task.state = "running"; // not released: its result may still be acknowledged
          this.#log(`releasing ${key} failed: ${e.message}`);
        }
      }
      for (const id of this.workerIds.values()) {
        await this.#query("acks", "SELECT pgflow.mark_worker_stopped($1)", [id])
          .catch((e) => this.#log(`marking stopped failed: ${e.message}`));
      }
      this.closed = true;
      await Promise.all([...this.clients.values()].map((c) => c.end().catch(() => {})));
      this.clients.clear();
    })();
    this.stopped?.();
    return this.stopDone;
  }

  #free() {
    return this.options.maxConcurrency - this.inFlight.size - this.reserved;
  }

  #wakeSlotWaiters() {
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  async #poll(flow) {
    const workerId = this.workerIds.get(flow);
    const purpose = `poll ${flow}`;
    const { visibilityTimeout, maxPollSeconds, pollIntervalMs, maxConcurrency } = this.options;
    // Each flow reads at most its share of the slots, so an idle queue cannot hold them all.
    const share = Math.max(1, Math.ceil(maxConcurrency / this.handlers.size));
    while (!this.stopping) {
      const qty = Math.min(this.#free(), share);
      if (qty <= 0) {
        await new Promise((resolve) => this.slotWaiters.push(resolve));
        continue;
      }
      this.reserved += qty; // counted as taken until the read's tasks are in flight
      let tasks = [];
      try {
        const read = await this.#query(purpose, "SELECT msg_id FROM pgmq.read_with_poll($1, $2, $3, $4, $5)",
          [flow, visibilityTimeout, qty, maxPollSeconds, pollIntervalMs]);
        const ids = read.rows.map((r) => r.msg_id);
        if (ids.length > 0 && this.stopping) {
          // Read while stopping: visible again at once for other workers.
          await this.#query(purpose, "SELECT pgmq.set_vt($1, id, 0) FROM unnest($2::bigint[]) id", [flow, ids]);
        } else if (ids.length > 0) {
          tasks = (await this.#query(purpose,
            "SELECT run_id, step_slug, task_index, input, msg_id, flow_input FROM pgflow.start_tasks($1, $2::bigint[], $3)",
            [flow, ids, workerId])).rows;
        }
      } catch (e) {
        if (!this.stopping) {
          this.#log(`polling ${flow} failed: ${e.message}`);
          await sleep(1000);
        }
      } finally {
        this.reserved -= qty;
      }
      for (const task of tasks) {
        this.inFlight.set(`${task.run_id}/${task.step_slug}/${task.task_index}`, { flow, state: "running" });
        this.#runTask(flow, workerId, task);
      }
      this.#wakeSlotWaiters();
    }
  }

  async #runTask(flow, workerId, task) {
    const key = `${task.run_id}/${task.step_slug}/${task.task_index}`;
    const args = [task.run_id, task.step_slug, task.task_index];
    let flowInput = task.flow_input;
    const ctx = {
      flowSlug: flow, runId: task.run_id, stepSlug: task.step_slug, taskIndex: task.task_index,
      msgId: Number(task.msg_id), workerId,
      stopping: () => this.stopping,
      // The run's input; start_tasks gives it to root single steps only, others read it once.
      flowInput: async () => {
        if (flowInput === null || flowInput === undefined) {
          flowInput = (await this.#query("acks", "SELECT pgflow.run_input($1) AS input", [task.run_id])).rows[0]?.input ?? null;
        }
        return flowInput;
      },
    };
    const acking = () => {
      const state = this.inFlight.get(key);
      if (state?.state !== "running") return false;
      state.state = "acking";
      return true;
    };
    try {
      const handler = this.handlers.get(flow).get(task.step_slug);
      let output;
      try {
        if (!handler) throw new Error(`no handler for step "${task.step_slug}" of flow "${flow}"`);
        // pgflow 0.12+: a root single step gets the run's input (start_tasks gives {}).
        const input = task.flow_input !== null && task.flow_input !== undefined ? task.flow_input : task.input;
        output = await handler(input, ctx);
      } catch (e) {
        if (acking()) {
          const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
          await this.#query("acks", "SELECT FROM pgflow.fail_task($1, $2, $3, $4)", [...args, message]);
          this.failed += 1;
        }
        return;
      }
      let json;
      try {
        json = JSON.stringify(output === undefined ? null : output);
      } catch (e) {
        // An output JSON cannot encode (a cycle, a BigInt) fails the attempt.
        if (acking()) {
          await this.#query("acks", "SELECT FROM pgflow.fail_task($1, $2, $3, $4)", [...args, `${e.name}: ${e.message}`]);
          this.failed += 1;
        }
        return;
      }
      if (acking()) {
        await this.#query("acks", "SELECT FROM pgflow.complete_task($1, $2, $3, $4::jsonb)", [...args, json]);
        this.completed += 1;
      }
    } catch (e) {
      // The acknowledgement failed: the task stays started; the engine requeues it after its timeout.
      this.#log(`acknowledging ${key} failed: ${e.message}`);
    } finally {
      this.inFlight.delete(key);
      this.#wakeSlotWaiters();
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
