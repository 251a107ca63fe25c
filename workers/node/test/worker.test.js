// The Node worker against a real pgflow_core database ($PGFLOW_WORKER_URL).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Worker } from "../index.js";

const URL = process.env.PGFLOW_WORKER_URL ?? "postgres://postgres@localhost:5439/pgflow_worker_node";
const db = new pg.Pool({ connectionString: URL, max: 2 });
after(() => db.end());

const sql = async (text, params = []) => (await db.query(text, params)).rows;
const name = () => "js_" + randomUUID().replaceAll("-", "").slice(0, 10);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function flow(slug, steps, opts = "") {
  await sql(`SELECT pgflow.create_flow($1${opts})`, [slug]);
  for (const [step, deps, kind] of steps) {
    await sql("SELECT pgflow.add_step($1, $2, $3::text[], step_type => $4)", [slug, step, deps, kind]);
  }
}
const start = async (slug, input) =>
  (await sql("SELECT run_id FROM pgflow.start_flow($1, $2::jsonb)", [slug, JSON.stringify(input)]))[0].run_id;

async function waitRun(runId, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [run] = await sql("SELECT status, output FROM pgflow.runs WHERE run_id = $1", [runId]);
    if (run.status !== "started") return run;
    await sleep(50);
  }
  throw new Error("run still started");
}

test("input shapes and ctx.flowInput()", async () => {
  const slug = name();
  await flow(slug, [["fetch", [], "single"], ["double", ["fetch"], "map"], ["total", ["double", "fetch"], "single"]]);
  const seen = { double: [] };
  const w = new Worker(URL, { maxPollSeconds: 1 })
    .step(slug, "fetch", async (flowInput, ctx) => { seen.fetch = [flowInput, await ctx.flowInput()]; return flowInput.numbers; })
    .step(slug, "double", (element, ctx) => { seen.double.push([ctx.taskIndex, element]); return element * 2; })
    .step(slug, "total", async (deps, ctx) => {
      seen.total = [deps, await ctx.flowInput()];
      return { sum: deps.double.reduce((a, b) => a + b, 0), count: deps.fetch.length };
    });
  await w.start();
  const run = await start(slug, { numbers: [1, 2, 3] });
  assert.deepEqual(await waitRun(run), { status: "completed", output: { total: { sum: 12, count: 3 } } });
  await w.stop();
  assert.deepEqual(seen.fetch, [{ numbers: [1, 2, 3] }, { numbers: [1, 2, 3] }], "a root step gets the run's input");
  assert.deepEqual(seen.double.sort(), [[0, 1], [1, 2], [2, 3]], "a map step gets its element");
  assert.deepEqual(seen.total, [{ double: [2, 4, 6], fetch: [1, 2, 3] }, { numbers: [1, 2, 3] }],
    "a dependent step gets its dependencies' outputs; ctx.flowInput() the run's input");
});

test("failures are retried, then fail the run with the error", async () => {
  const slug = name();
  await flow(slug, [["broken", [], "single"]], ", max_attempts => 3, base_delay => 0");
  let calls = 0;
  const w = new Worker(URL, { maxPollSeconds: 1 }).step(slug, "broken", () => { calls += 1; throw new TypeError("always"); });
  await w.start();
  const run = await start(slug, {});
  assert.equal((await waitRun(run)).status, "failed");
  await w.stop();
  assert.equal(calls, 3);
  assert.deepEqual(await sql("SELECT status, attempts_count, error_message FROM pgflow.step_tasks WHERE run_id = $1", [run]),
    [{ status: "failed", attempts_count: 3, error_message: "TypeError: always" }]);
});

test("a step without a handler fails with a clear error", async () => {
  const slug = name();
  await flow(slug, [["known", [], "single"], ["unknown", [], "single"]], ", max_attempts => 1");
  const w = new Worker(URL, { maxPollSeconds: 1 }).step(slug, "known", () => 1);
  await w.start();
  const run = await start(slug, {});
  await waitRun(run);
  await w.stop();
  assert.deepEqual(await sql("SELECT error_message FROM pgflow.step_tasks WHERE run_id = $1 AND step_slug = 'unknown'", [run]),
    [{ error_message: `Error: no handler for step "unknown" of flow "${slug}"` }]);
});

test("at most maxConcurrency tasks at once", async () => {
  const slug = name();
  await flow(slug, [["items", [], "map"]]);
  let now = 0, max = 0;
  const w = new Worker(URL, { maxConcurrency: 3, maxPollSeconds: 1 }).step(slug, "items", async (x) => {
    now += 1; max = Math.max(max, now);
    await sleep(200);
    now -= 1;
    return x;
  });
  await w.start();
  const run = await start(slug, [...Array(12).keys()]);
  assert.deepEqual(await waitRun(run), { status: "completed", output: { items: [...Array(12).keys()] } });
  await w.stop();
  assert.equal(max, 3, "3 at once, never more");
});

test("two flows share the concurrency limit", async () => {
  const slugs = [name(), name()];
  for (const slug of slugs) await flow(slug, [["items", [], "map"]]);
  let now = 0, max = 0;
  const item = async (x) => { now += 1; max = Math.max(max, now); await sleep(150); now -= 1; return x; };
  const w = new Worker(URL, { maxConcurrency: 4, maxPollSeconds: 1 });
  for (const slug of slugs) w.step(slug, "items", item);
  await w.start();
  const runs = [];
  for (const slug of slugs) runs.push(await start(slug, [...Array(8).keys()]));
  for (const run of runs) assert.equal((await waitRun(run)).status, "completed");
  await w.stop();
  assert.ok(max >= 2 && max <= 4, `at most 4 tasks at once across both flows: ${max}`);
});

test("an output JSON cannot encode fails the attempt", async () => {
  const slug = name();
  await flow(slug, [["a", [], "single"]], ", max_attempts => 1");
  const w = new Worker(URL, { maxConcurrency: 1, maxPollSeconds: 1 })
    .step(slug, "a", (input) => (input.bad ? { n: 1n } : "fine"));
  await w.start();
  const bad = await start(slug, { bad: true });
  assert.equal((await waitRun(bad)).status, "failed");
  const good = await start(slug, {});
  assert.deepEqual(await waitRun(good), { status: "completed", output: { a: "fine" } });
  await w.stop();
  assert.deepEqual(await sql("SELECT error_message FROM pgflow.step_tasks WHERE run_id = $1", [bad]),
    [{ error_message: "TypeError: Do not know how to serialize a BigInt" }]);
});

test("heartbeats, and stop() marks the worker stopped", async () => {
  const slug = name();
  await flow(slug, [["a", [], "single"]]);
  const w = new Worker(URL, { name: "hb-node", heartbeatSeconds: 0.2, maxPollSeconds: 1 }).step(slug, "a", () => 1);
  await w.start();
  const id = w.workerIds.get(slug);
  const [first] = await sql("SELECT last_heartbeat_at, queue_name, function_name FROM pgflow.workers WHERE worker_id = $1", [id]);
  assert.equal(first.queue_name, slug);
  assert.equal(first.function_name, "hb-node");
  await sleep(700);
  const [later] = await sql("SELECT last_heartbeat_at FROM pgflow.workers WHERE worker_id = $1", [id]);
  assert.ok(later.last_heartbeat_at > first.last_heartbeat_at, "the heartbeat moves last_heartbeat_at");
  await w.stop();
  assert.deepEqual(await sql("SELECT stopped_at IS NOT NULL AS stopped FROM pgflow.workers WHERE worker_id = $1", [id]),
    [{ stopped: true }]);
});

test("a waiting read wakes up on a new run", async () => {
  const slug = name();
  await flow(slug, [["a", [], "single"]]);
  const w = new Worker(URL, { maxPollSeconds: 10, pollIntervalMs: 100 }).step(slug, "a", () => "done");
  await w.start();
  await sleep(1000);
  const began = Date.now();
  const run = await start(slug, {});
  assert.equal((await waitRun(run, 5000)).status, "completed");
  const took = Date.now() - began;
  await w.stop();
  assert.ok(took < 2000, `worked within 2 s of a 10 s poll: ${took} ms`);
});

function workerProcess(slug, grace, sleepMs) {
  const script = `
    import { Worker } from ${JSON.stringify(fileURLToPath(new globalThis.URL("../index.js", import.meta.url)))};
    const w = new Worker(${JSON.stringify(URL)}, { maxPollSeconds: 2, shutdownTimeout: ${grace} });
    w.step(${JSON.stringify(slug)}, "slow", async () => {
      console.log("started");
      await new Promise((r) => setTimeout(r, ${sleepMs}));
      return "finished";
    });
    await w.run();
    console.log("stopped", w.completed, w.released);
    process.exit(0);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  let notify;
  child.stdout.on("data", (d) => { out += d; if (out.includes("started") && notify) notify(); });
  return {
    child,
    started: () => new Promise((r) => { if (out.includes("started")) r(); else notify = r; }),
    exited: () => new Promise((r) => child.on("exit", (code) => r({ code, out: out.trim() }))),
  };
}

test("SIGTERM: a started task finishes, and nothing more is read", async () => {
  const slug = name();
  await flow(slug, [["slow", [], "single"]]);
  const p = workerProcess(slug, 10, 1500);
  const first = await start(slug, {});
  await p.started();
  const exited = p.exited();
  p.child.kill("SIGTERM");
  await sleep(200);
  const second = await start(slug, {});
  const { code, out } = await exited;
  assert.equal(code, 0);
  assert.equal(out, "started\nstopped 1 0");
  assert.equal((await sql("SELECT status FROM pgflow.runs WHERE run_id = $1", [first]))[0].status, "completed");
  assert.deepEqual(await sql("SELECT status, attempts_count FROM pgflow.step_tasks WHERE run_id = $1", [second]),
    [{ status: "queued", attempts_count: 0 }]);
});

test("SIGTERM: a task still running after the grace period is released", async () => {
  const slug = name();
  await flow(slug, [["slow", [], "single"]]);
  const p = workerProcess(slug, 0.5, 30000);
  const run = await start(slug, {});
  await p.started();
  const began = Date.now();
  const exited = p.exited();
  p.child.kill("SIGTERM");
  const { code, out } = await exited;
  assert.equal(code, 0);
  assert.equal(out, "started\nstopped 0 1");
  assert.ok(Date.now() - began < 5000, "the worker did not wait for the handler");
  const [task] = await sql(`SELECT t.status, t.attempts_count, t.last_worker_id IS NULL AS no_worker,
                                   (SELECT count(*)::int FROM pgmq.read($1, 30, 10)) AS visible
                            FROM pgflow.step_tasks t WHERE t.run_id = $2`, [slug, run]);
  assert.deepEqual(task, { status: "queued", attempts_count: 0, no_worker: true, visible: 1 });
});

test("bad arguments", async () => {
  assert.throws(() => new Worker(URL, { maxConcurrency: 0 }), RangeError);
  await assert.rejects(new Worker(URL).start(), /no handlers registered/);
});
