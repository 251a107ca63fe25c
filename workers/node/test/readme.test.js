// The README's examples run: its SQL makes a flow and a run, its worker works the run.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import pg from "pg";

const URL = process.env.PGFLOW_WORKER_URL ?? "postgres://postgres@localhost:5439/pgflow_worker_node";
const readme = readFileSync(new globalThis.URL("../README.md", import.meta.url), "utf8");
const block = (language) => {
  const found = readme.match(new RegExp("```" + language + "\\n([\\s\\S]*?)```"));
  assert.ok(found, `the README has a ${language} block`);
  return found[1];
};
const db = new pg.Client({ connectionString: URL });
await db.connect();
after(() => db.end());

test("the README example works its run", async () => {
  await db.query("SELECT pgflow.delete_flow_and_data('greet_user') WHERE EXISTS (SELECT 1 FROM pgflow.flows WHERE flow_slug = 'greet_user')");
  let run;
  for (const statement of block("sql").split(";\n").filter((s) => s.trim())) {
    run = (await db.query(statement)).rows[0]?.run_id;
  }
  const index = fileURLToPath(new globalThis.URL("../index.js", import.meta.url));
  const script = block("js").replace("./pgflow-worker/index.js", index);
  const child = spawn(process.execPath, ["--input-type=module", "-e", script],
    { env: { ...process.env, DATABASE_URL: URL }, stdio: "inherit" });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  let row;
  for (const until = Date.now() + 20000; Date.now() < until;) {
    row = (await db.query("SELECT status, output FROM pgflow.runs WHERE run_id = $1", [run])).rows[0];
    if (row.status !== "started") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGTERM");
  assert.equal(await exited, 0, "the worker stops on SIGTERM");
  assert.deepEqual(row, { status: "completed", output: { greeting: "Hello, Ada (ADA)!" } });
  assert.ok(readme.includes("Hello, Ada (ADA)!"), "the README shows that output");
});
