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
    this.inFlight = new Map();      // "run/step/index" -> "running" | "acking" | "released"
    this.slotWaiters = [];
    this.clients = [];
  }

  /** Registers handler(input, ctx) for one step of one flow. */
  step(flowSlug, stepSlug, handler) {
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (!this.handlers.has(flowSlug)) this.handlers.set(flowSlug, new Map());
    this.handlers.get(flowSlug).set(stepSlug, handler);
    return this;
  }

  async #connect(purpose) {
    const client = new pg.Client({ ...this.connection, application_name: `${this.options.name} ${purpose}` });
    client.on("error", () => {}); // a lost connection fails its query; the loop goes on
    await client.connect();
    this.clients.push(client);
    return client;
  }

  /** Registers the worker and starts polling; resolves once it is running. */
  async start() {
    if (this.handlers.size === 0) throw new Error("no handlers registered");
    this.acks = await this.#connect("acks");
    for (const flow of this.handlers.keys()) {
      const id = randomUUID();
      this.workerIds.set(flow, id);
      await this.acks.query(
        "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) VALUES ($1, $2, $3)",
        [id, flow, this.options.name]);
    }
    const flows = [...this.handlers.keys()];
    const pollClients = await Promise.all(flows.map((flow) => this.#connect(`poll ${flow}`)));
    // The poll loops run until stop(); stop() waits for them.
    this.pollers = flows.map((flow, i) => this.#poll(flow, pollClients[i]));
    this.heartbeat = setInterval(() => {
      this.acks.query("UPDATE pgflow.workers SET last_heartbeat_at = now() WHERE worker_id = ANY($1::uuid[])",
        [[...this.workerIds.values()]]).catch(() => {});
    }, this.options.heartbeatSeconds * 1000);
  }

  /** start(), then stop() on SIGTERM or SIGINT; resolves when stopped. */
  async run() {
    await this.start();
    await new Promise((resolve) => {
      const onSignal = () => { process.off("SIGTERM", onSignal); process.off("SIGINT", onSignal); resolve(); };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
      this.stopped = resolve;
    });
    await this.stop();
  }

  /**
   * Graceful stop: no new reads (messages of a read that returns now are made visible again),
   * started tasks get shutdownTimeout seconds to finish, the rest are released
   * (pgflow.release_task), the workers marked stopped.
   */
  async stop() {
    if (this.stopping) return this.stopDone;
    this.stopping = true;
    this.stopped?.();
    this.stopDone = (async () => {
      clearInterval(this.heartbeat);
      this.#wakeSlotWaiters();
      await Promise.all(this.pollers ?? []);
      const deadline = Date.now() + this.options.shutdownTimeout * 1000;
      while (this.inFlight.size > 0 && Date.now() < deadline) await sleep(20);
      const unfinished = [...this.inFlight].filter(([, state]) => state === "running").map(([key]) => key);
      for (const key of unfinished) {
        this.inFlight.set(key, "released");
        const [runId, step, index] = key.split("/");
        await this.acks.query("SELECT FROM pgflow.release_task($1, $2, $3)", [runId, step, Number(index)]).catch(() => {});
        this.released += 1;
      }
      for (const id of this.workerIds.values()) {
        await this.acks.query("SELECT pgflow.mark_worker_stopped($1)", [id]).catch(() => {});
      }
      await Promise.all(this.clients.map((c) => c.end().catch(() => {})));
    })();
    return this.stopDone;
  }

  #free() {
    return this.options.maxConcurrency - this.inFlight.size;
  }

  #wakeSlotWaiters() {
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  async #poll(flow, client) {
    const workerId = this.workerIds.get(flow);
    const { visibilityTimeout, maxPollSeconds, pollIntervalMs } = this.options;
    while (!this.stopping) {
      if (this.#free() <= 0) {
        await new Promise((resolve) => this.slotWaiters.push(resolve));
        continue;
      }
      let tasks = [];
      try {
        const read = await client.query(
          "SELECT msg_id FROM pgmq.read_with_poll($1, $2, $3, $4, $5)",
          [flow, visibilityTimeout, this.#free(), maxPollSeconds, pollIntervalMs]);
        const ids = read.rows.map((r) => r.msg_id);
        if (ids.length > 0 && this.stopping) {
          // Read while stopping: visible again at once for other workers.
          await client.query("SELECT pgmq.set_vt($1, id, 0) FROM unnest($2::bigint[]) id", [flow, ids]);
        } else if (ids.length > 0) {
          tasks = (await client.query(
            "SELECT run_id, step_slug, task_index, input, msg_id, flow_input FROM pgflow.start_tasks($1, $2::bigint[], $3)",
            [flow, ids, workerId])).rows;
        }
      } catch (e) {
        if (!this.stopping) await sleep(1000);
        continue;
      }
      for (const task of tasks) {
        this.inFlight.set(`${task.run_id}/${task.step_slug}/${task.task_index}`, "running");
        this.#runTask(flow, workerId, task);
      }
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
          flowInput = (await this.acks.query("SELECT pgflow.run_input($1) AS input", [task.run_id])).rows[0]?.input ?? null;
        }
        return flowInput;
      },
    };
    const acking = () => {
      if (this.inFlight.get(key) !== "running") return false;
      this.inFlight.set(key, "acking");
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
          await this.acks.query("SELECT FROM pgflow.fail_task($1, $2, $3, $4)", [...args, message]);
          this.failed += 1;
        }
        return;
      }
      if (acking()) {
        await this.acks.query("SELECT FROM pgflow.complete_task($1, $2, $3, $4::jsonb)",
          [...args, JSON.stringify(output === undefined ? null : output)]);
        this.completed += 1;
      }
    } catch {
      // The acknowledgement failed: the task stays started; the engine requeues it after its timeout.
    } finally {
      this.inFlight.delete(key);
      this.#wakeSlotWaiters();
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
